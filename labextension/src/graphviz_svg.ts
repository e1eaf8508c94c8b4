/**
 * DOT → SVG in the browser with Graphviz compiled to WebAssembly (@hpcc-js/wasm-graphviz, wasm inlined).
 * Shared by the JupyterLab MIME renderer and the anywidget graph view (bundled into it by esbuild).
 *
 * The wasm build has no fonts: it sizes labels from built-in estimates of Helvetica's metrics, while the browser
 * draws them in whatever font it resolves "Helvetica" to, so labels spilled out of their boxes. `dotToSvg` lays
 * the graph out, measures every node's label in the browser's own font, and lays it out again with node widths
 * that fit what the browser draws.
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
  return sanitizeSvg(document.importNode(svg, true));
}

// Graphviz's default node margin (0.11 in) on each side, in points; an ellipse's box is √2 times its label's
const MARGIN = 2 * 0.11 * 72;
const ROUND_SHAPES = new Set(['ellipse']);

/** Node id → width (inches) it needs for its label as this browser draws it, for the nodes drawn too narrow. */
function widthsNeeded(svg: SVGSVGElement): Map<string, number> {
  const host = document.createElement('div');
  host.style.cssText = 'position: absolute; left: -100000px; top: 0; visibility: hidden';
  host.append(svg);
  document.body.append(host);
  const needed = new Map<string, number>();
  try {
    for (const g of Array.from(svg.querySelectorAll('g.node'))) {
      const shape = g.querySelector(':scope > polygon, :scope > ellipse, :scope > path') as SVGGraphicsElement | null;
      const texts = Array.from(g.querySelectorAll('text')) as SVGTextContentElement[];
      if (!shape || !texts.length) continue;
      const label = Math.max(...texts.map(t => t.getComputedTextLength()));
      const factor = ROUND_SHAPES.has(shape.nodeName) || g.querySelectorAll(':scope > polygon').length > 1 ? Math.SQRT2 : 1;
      const need = (label + MARGIN) * factor;
      if (need > shape.getBBox().width + 0.5) {
        needed.set(titleOf(g), Math.ceil(need + 2) / 72);
      }
    }
  } finally {
    host.remove();
  }
  return needed;
}

/** `dot` with a minimum width for the nodes named (a later node statement adds to a node's attributes). */
function withWidths(dot: string, widths: Map<string, number>): string {
  const end = dot.lastIndexOf('}');
  const lines = Array.from(widths, ([id, w]) => `  "${id.replace(/["\\]/g, '\\$&')}" [width=${w.toFixed(3)}]`);
  return `${dot.slice(0, end)}${lines.join('\n')}\n}\n`;
}

/**
 * Lay out `dot` and return the drawing, every node wide enough for its label in the browser's font (throws
 * Graphviz's message on bad DOT).
 */
export async function dotToSvg(dot: string): Promise<Drawing> {
  const gv = await graphviz();
  let text = gv.layout(dot, 'svg', 'dot');
  let svg = parse(text);
  const widths = widthsNeeded(svg);
  if (widths.size) {
    text = gv.layout(withWidths(dot, widths), 'svg', 'dot');
    svg = parse(text);
  }
  return { svg, text: new XMLSerializer().serializeToString(svg) };
}
