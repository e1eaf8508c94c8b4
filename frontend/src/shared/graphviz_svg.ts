/**
 * DOT → SVG in the browser with Graphviz compiled to WebAssembly (@hpcc-js/wasm-graphviz, wasm inlined).
 * Shared by the JupyterLab MIME renderer and the anywidget graph view (bundled into it by esbuild).
 *
 * The wasm build has no fonts: it sizes labels from built-in estimates of Helvetica's metrics, while the browser
 * draws them in whatever font it resolves "Helvetica" to (DejaVu Sans on many Linux machines: digits 14% and "×"
 * 40% wider), so node labels spilled out of their boxes and edge labels ran into each other. `dotToSvg` lays the
 * graph out, measures every label in the browser's own font, and lays it out again with room for what the browser
 * draws: wider nodes, and edge labels laid out in a larger font size, then drawn in their own.
 */
import type { Graphviz } from '@hpcc-js/wasm-graphviz';

let loading: Promise<Graphviz> | null = null;

/** One Graphviz instance per page: compiling the wasm module costs ~100 ms, so do it once, lazily. */
export function graphviz(): Promise<Graphviz> {
  if (!loading) {
    loading = import('@hpcc-js/wasm-graphviz').then(m => m.Graphviz.load());
  }
  return loading;
}

/**
 * Remove what could run code or leave the page: DOT from an untrusted notebook may carry URL/href attributes,
 * which Graphviz turns into links. Drawings need neither scripts nor external links.
 */
export function sanitizeSvg(svg: SVGSVGElement): SVGSVGElement {
  svg.querySelectorAll('script, foreignObject, iframe').forEach(n => n.remove());
  for (const node of [svg, ...Array.from(svg.querySelectorAll('*'))]) {
    for (const attr of Array.from(node.attributes)) {
      const name = attr.name.toLowerCase();
      const isLink = name === 'href' || name.endsWith(':href');
      if (name.startsWith('on') || (isLink && !attr.value.startsWith('#'))) {
        node.removeAttribute(attr.name);
      }
    }
  }
  return svg;
}

/** The Graphviz id (its <title>) of every node or edge group in a drawing: "e3", "in0->e3". */
export function titleOf(group: Element): string {
  return group.querySelector(':scope > title')?.textContent ?? '';
}

/** A laid-out drawing: the sanitized <svg> element and its text (the static record an output can keep). */
export interface Drawing {
  svg: SVGSVGElement;
  text: string;
}

function parse(text: string): SVGSVGElement {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const svg = doc.documentElement as unknown as SVGSVGElement;
  if (svg.nodeName !== 'svg') {
    throw new Error('Graphviz produced no SVG');
  }
  const drawing = sanitizeSvg(document.importNode(svg, true));
  // glyphs at their exact, unhinted widths: a label measures the same at every zoom (hinted, a 10 pt label grew
  // by a few pixels at some scales and spilled out of the box made for it)
  drawing.setAttribute('text-rendering', 'geometricPrecision');
  return drawing;
}

// Graphviz's default node margin (0.11 in) on each side, in points; an ellipse's box is √2 times its label's
const MARGIN = 2 * 0.11 * 72;
const ROUND_SHAPES = new Set(['ellipse']);
// room to spare, so that a label's own width never touches its neighbour's (points; a fraction of the font size)
const SPARE = 2;
const EDGE_SPARE = 0.06;

/**
 * The width of a node's outline, and whether it is round (an ellipse, or a polygon with more than four corners,
 * where the label's box needs √2 times the room). A node with a tooltip or link has its outline one level down.
 */
export function nodeBox(g: Element): { width: number; round: boolean } | null {
  const shapes = Array.from(g.querySelectorAll('polygon, ellipse, path')) as SVGGraphicsElement[];
  if (!shapes.length) return null; // plaintext: a cluster's title
  const width = Math.max(...shapes.map(s => s.getBBox().width));
  const polygons = shapes.filter(s => s.nodeName === 'polygon').length;
  const round = shapes.some(s => ROUND_SHAPES.has(s.nodeName)) || polygons > 1;
  return { width, round };
}

/** What Graphviz's layout (its JSON output) reserved for each edge's label: edge title → text widths, in order. */
interface Reserved {
  edges: Map<string, { tail: string; head: string; widths: number[] }>;
  /** every edge is the only one between its two nodes: re-stating an edge in a strict graph amends it */
  amendable: boolean;
  directed: boolean;
}

interface GraphvizJson {
  directed?: boolean;
  objects?: { name: string }[];
  edges?: { tail: number; head: number; _ldraw_?: { op: string; width?: number }[] }[];
}

function reservedByLayout(json: GraphvizJson): Reserved {
  const name = (gvid: number) => json.objects?.[gvid]?.name ?? '';
  const directed = json.directed !== false;
  const edges = new Map<string, { tail: string; head: string; widths: number[] }>();
  const pairs = new Set<string>();
  let amendable = true;
  for (const e of json.edges ?? []) {
    const [tail, head] = [name(e.tail), name(e.head)];
    const title = `${tail}${directed ? '->' : '--'}${head}`;
    const pair = directed || tail <= head ? `${tail}\u0000${head}` : `${head}\u0000${tail}`;
    if (pairs.has(pair)) amendable = false;
    pairs.add(pair);
    const widths = (e._ldraw_ ?? []).filter(op => op.op === 'T').map(op => op.width ?? 0);
    edges.set(title, { tail, head, widths });
  }
  return { edges, amendable, directed };
}

/** What the browser needs that the layout did not reserve. */
interface Needs {
  /** node id → width (inches) for its label as this browser draws it, for the nodes drawn too narrow */
  widths: Map<string, number>;
  /** edge title → [tail, head, font size to lay its label out with, its own font size] */
  edgeFonts: Map<string, [string, string, number, number]>;
}

function needs(svg: SVGSVGElement, reserved: Reserved): Needs {
  const host = document.createElement('div');
  host.style.cssText = 'position: absolute; left: -100000px; top: 0; visibility: hidden';
  host.append(svg);
  document.body.append(host);
  const widths = new Map<string, number>();
  const edgeFonts = new Map<string, [string, string, number, number]>();
  try {
    for (const g of Array.from(svg.querySelectorAll('g.node'))) {
      const box = nodeBox(g);
      const texts = Array.from(g.querySelectorAll('text')) as SVGTextContentElement[];
      if (!box || !texts.length) continue;
      const label = Math.max(...texts.map(t => t.getComputedTextLength()));
      const need = (label + MARGIN + SPARE) * (box.round ? Math.SQRT2 : 1);
      if (need > box.width + 0.5) {
        widths.set(titleOf(g), Math.ceil(need) / 72);
      }
    }
    for (const g of Array.from(svg.querySelectorAll('g.edge'))) {
      const texts = Array.from(g.querySelectorAll('text')) as SVGTextContentElement[];
      const edge = reserved.edges.get(titleOf(g));
      if (!texts.length || !edge || edge.widths.length !== texts.length) continue;
      const ratio = Math.max(...texts.map((t, i) => t.getComputedTextLength() / Math.max(edge.widths[i], 1)));
      const size = parseFloat(texts[0].getAttribute('font-size') ?? '');
      if (ratio > 1 && Number.isFinite(size)) {
        edgeFonts.set(titleOf(g), [edge.tail, edge.head, +(size * ratio * (1 + EDGE_SPARE)).toFixed(2), size]);
      }
    }
  } finally {
    host.remove();
  }
  return { widths, edgeFonts };
}

const quoted = (id: string) => `"${id.replace(/"/g, '\\"')}"`;

/**
 * `dot` amended: a minimum width for the nodes named (a later node statement adds to a node's attributes) and a
 * font size for the edge labels named (a later edge statement adds to an edge's attributes in a strict graph).
 */
function amended(dot: string, fix: Needs, directed: boolean): string {
  const lines = Array.from(fix.widths, ([id, w]) => `  ${quoted(id)} [width=${w.toFixed(3)}]`);
  const arrow = directed ? '->' : '--';
  for (const [tail, head, size] of fix.edgeFonts.values()) {
    lines.push(`  ${quoted(tail)} ${arrow} ${quoted(head)} [fontsize=${size}]`);
  }
  const end = dot.lastIndexOf('}');
  const body = `${dot.slice(0, end)}${lines.join('\n')}\n}\n`;
  // "strict" before the graph's keyword, after any comments (no-op where it is strict already)
  return fix.edgeFonts.size
    ? body.replace(/^((?:\s|\/\/[^\n]*\n|#[^\n]*\n|\/\*[\s\S]*?\*\/)*)(?=(?:di)?graph\b)/i, '$1strict ')
    : body;
}

/** Edge labels laid out in a larger font size are drawn in their own. */
function restoreEdgeFonts(svg: SVGSVGElement, edgeFonts: Needs['edgeFonts']): void {
  for (const g of Array.from(svg.querySelectorAll('g.edge'))) {
    const fix = edgeFonts.get(titleOf(g));
    if (!fix) continue;
    for (const t of Array.from(g.querySelectorAll('text'))) t.setAttribute('font-size', fix[3].toFixed(2));
  }
}

/**
 * Lay out `dot` and return the drawing, every node wide enough for its label and every edge label given the room
 * it takes in the browser's font (throws Graphviz's message on bad DOT).
 */
export async function dotToSvg(dot: string): Promise<Drawing> {
  const gv = await graphviz();
  let svg = parse(gv.layout(dot, 'svg', 'dot'));
  const reserved = reservedByLayout(JSON.parse(gv.layout(dot, 'json', 'dot')) as GraphvizJson);
  const fix = needs(svg, reserved);
  if (!reserved.amendable) fix.edgeFonts.clear(); // several edges between two nodes: keep their layout
  if (fix.widths.size || fix.edgeFonts.size) {
    svg = parse(gv.layout(amended(dot, fix, reserved.directed), 'svg', 'dot'));
    restoreEdgeFonts(svg, fix.edgeFonts);
  }
  return { svg, text: new XMLSerializer().serializeToString(svg) };
}
