/**
 * A graph figure: a laid-out drawing fitted to its output, with zoom (buttons, Ctrl/⌘ + wheel) and pan (drag,
 * wheel), and — when the DOT comes with a variant whose composites are open — a click on a composite
 * (cross_entropy, softmax, ...) opens it, a button closes it again. Used by the MIME renderer and the anywidget
 * graph view, so it carries its own CSS.
 *
 * A learner must see the whole graph, or see that there is more. So the drawing is scaled to the output's width
 * and to a box no taller than most of the window (never above full size): the whole graph when that keeps its
 * labels readable (at least READABLE of full size); a graph too tall for that is shown from its top at the
 * readable scale, the box's cut edge shaded, and a bar under the box says how many nodes are below (or above, or
 * aside, once zoomed or panned), how to reach them, and offers the whole graph at whatever scale fits.
 */
import { Drawing, dotToSvg, titleOf } from './graphviz_svg';

const CSS = `
.bp-figure { position: relative; }
.bp-figure-tools { display: flex; gap: 4px; align-items: center; margin: 2px 0 4px;
  font: 12px var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color2, #666); }
.bp-figure-tools button { padding: 1px 8px; cursor: pointer; font-size: 12px; }
.bp-figure-viewport { position: relative; overflow: hidden; width: 100%; cursor: grab; touch-action: none;
  border: 1px solid var(--jp-border-color2, #e0e0e0); background: var(--jp-layout-color0, #fff); }
.bp-figure-viewport.bp-dragging { cursor: grabbing; }
.bp-figure-viewport::before, .bp-figure-viewport::after { content: ''; position: absolute; left: 0; right: 0;
  height: 18px; z-index: 1; pointer-events: none; display: none; }
.bp-figure-viewport::before { top: 0; background: linear-gradient(rgba(0, 0, 0, 0.22), transparent); }
.bp-figure-viewport::after { bottom: 0; background: linear-gradient(transparent, rgba(0, 0, 0, 0.22)); }
.bp-figure-viewport.bp-more-above::before, .bp-figure-viewport.bp-more-below::after { display: block; }
.bp-figure-more { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; padding: 3px 8px;
  font: 12px var(--jp-ui-font-family, sans-serif); color: #5d4037; background: #fff3e0;
  border: 1px solid #ffb74d; border-top: none; }
.bp-figure-more[hidden] { display: none; }
.bp-figure-more b { font-weight: 600; }
.bp-figure-more button { padding: 1px 8px; cursor: pointer; font-size: 12px; }
.bp-figure-viewport > svg { position: absolute; left: 0; top: 0; transform-origin: 0 0; max-width: none; }
.bp-figure g.node.bp-composite { cursor: zoom-in; }
.bp-figure g.cluster.bp-flash > path, .bp-figure g.cluster.bp-flash > polygon { stroke: #e65100; stroke-width: 3px; }
.bp-figure-error { color: var(--jp-error-color1, #b3261e); }
`;

function injectCss(): void {
  if (document.getElementById('bp-figure-css')) return;
  const style = document.createElement('style');
  style.id = 'bp-figure-css';
  style.textContent = CSS;
  document.head.append(style);
}

function button(text: string, action: string, title: string): HTMLButtonElement {
  const b = document.createElement('button');
  b.textContent = text;
  b.dataset.action = action;
  b.title = title;
  return b;
}

/** The drawing's size in CSS pixels (Graphviz writes points). */
function naturalSize(svg: SVGSVGElement): { width: number; height: number } {
  const box = svg.viewBox.baseVal;
  const px = (attr: string, fallback: number) => {
    const v = svg.getAttribute(attr) ?? '';
    const n = parseFloat(v);
    return Number.isFinite(n) ? (v.endsWith('pt') ? (n * 4) / 3 : n) : fallback;
  };
  return { width: px('width', box?.width ?? 300), height: px('height', box?.height ?? 150) };
}

/** Below this fraction of full size, a fitted drawing's 10 pt labels would be under 8 px: too small to read. */
export const READABLE = 0.6;

/** The tallest box a figure takes before its drawing scrolls inside it: most of the window, never tiny. */
function maxHeight(): number {
  return Math.max(320, Math.round(window.innerHeight * 0.75));
}

type Fit = 'readable' | 'whole' | null;
type Side = 'below' | 'above' | 'right' | 'left';
const SIDES: [Side, string, string][] = [
  ['below', '↓', 'below'],
  ['above', '↑', 'above'],
  ['right', '→', 'to the right'],
  ['left', '←', 'to the left']
];

export interface FigureOptions {
  /** Called after each drawing is shown (the open or closed variant), with what was drawn. */
  onDrawn?: (drawing: Drawing, open: boolean) => void;
}

export class GraphFigure {
  readonly node = document.createElement('div');
  private readonly tools = document.createElement('div');
  private readonly viewport = document.createElement('div');
  private readonly toggle = button('open composites', 'toggle', 'draw the operations inside each composite');
  private readonly zoomLabel = document.createElement('span');
  private readonly more = document.createElement('div');
  private readonly moreText = document.createElement('span');
  private moreFrame = 0;
  private dot = '';
  private expanded = '';
  private open = false;
  private drawn = 0;
  private scale = 1;
  private tx = 0;
  private ty = 0;
  private fitted: Fit = 'readable'; // refit when the output's width changes, until the user zooms
  private size = { width: 0, height: 0 };
  svg: SVGSVGElement | null = null;

  constructor(private options: FigureOptions = {}) {
    injectCss();
    this.node.className = 'bp-figure';
    this.tools.className = 'bp-figure-tools';
    this.viewport.className = 'bp-figure-viewport';
    const zoomOut = button('−', 'zoom-out', 'zoom out (Ctrl/⌘ + wheel)');
    const zoomIn = button('+', 'zoom-in', 'zoom in (Ctrl/⌘ + wheel)');
    const fit = button('fit', 'fit', 'fit the graph to the output, as first shown');
    const actual = button('1:1', 'actual', 'full size');
    zoomOut.onclick = () => this.zoomAt(1 / 1.25);
    zoomIn.onclick = () => this.zoomAt(1.25);
    fit.onclick = () => this.fit();
    actual.onclick = () => this.zoomAt(1 / this.scale);
    this.toggle.onclick = () => void this.setOpen(!this.open);
    this.zoomLabel.className = 'bp-figure-zoom';
    this.tools.append(zoomOut, zoomIn, fit, actual, this.zoomLabel, this.toggle);
    this.more.className = 'bp-figure-more';
    this.more.hidden = true;
    const whole = button('show the whole graph', 'whole', 'the whole graph in the box (then zoom: Ctrl/⌘ + wheel)');
    whole.onclick = () => this.fit('whole');
    this.more.append(this.moreText, whole);
    this.node.append(this.tools, this.viewport, this.more);
    this.listen();
    new ResizeObserver(() => {
      if (this.fitted) this.fit(this.fitted);
    }).observe(this.viewport);
  }

  /** Draw `dot`; `expanded` is the same graph with its composites open ('' when it has none). */
  async show(dot: string, expanded = ''): Promise<void> {
    if (dot === this.dot && expanded === this.expanded) return;
    this.dot = dot;
    this.expanded = expanded;
    this.toggle.style.display = expanded ? '' : 'none';
    await this.setOpen(this.open && !!expanded);
  }

  async setOpen(open: boolean, focus?: string): Promise<void> {
    this.open = open;
    this.toggle.textContent = open ? 'close composites' : 'open composites';
    const id = ++this.drawn;
    let drawing: Drawing;
    try {
      drawing = await dotToSvg(open ? this.expanded : this.dot);
    } catch (err) {
      if (id !== this.drawn) return;
      this.svg = null;
      const message = document.createElement('pre');
      message.className = 'bp-figure-error';
      message.textContent = `Graphviz could not draw this graph: ${(err as Error).message ?? err}`;
      this.viewport.replaceChildren(message);
      this.viewport.style.height = 'auto';
      throw err;
    }
    if (id !== this.drawn) return; // a newer drawing was asked for while this one was laid out
    const svg = drawing.svg;
    this.size = naturalSize(svg);
    svg.setAttribute('width', String(this.size.width));
    svg.setAttribute('height', String(this.size.height));
    for (const g of Array.from(svg.querySelectorAll('g.node.bp-composite'))) {
      g.addEventListener('click', () => void this.setOpen(true, titleOf(g)));
    }
    this.svg = svg;
    this.viewport.replaceChildren(svg);
    this.node.dataset.open = String(open);
    this.fit();
    if (focus) this.focusCluster(focus);
    this.options.onDrawn?.(drawing, open);
  }

  /**
   * Scale to the output's width and the box's height (never above full size) and show the top of the graph:
   * 'readable' (the default) shrinks a tall graph no further than READABLE, 'whole' as far as it takes.
   */
  fit(how: 'readable' | 'whole' = 'readable'): void {
    const width = this.viewport.clientWidth || this.size.width;
    const tallest = maxHeight();
    const byWidth = Math.min(1, width / Math.max(this.size.width, 1));
    const whole = Math.min(byWidth, tallest / Math.max(this.size.height, 1));
    this.scale = how === 'whole' ? whole : Math.max(whole, Math.min(byWidth, READABLE));
    this.tx = (width - this.size.width * this.scale) / 2;
    this.ty = 0;
    this.fitted = how;
    // short graphs take only their own height
    const height = Math.min(this.size.height * this.scale, tallest);
    this.viewport.style.height = `${Math.ceil(height) + 2}px`;
    this.apply();
  }

  /** Zoom by `factor` around a point of the viewport (its centre by default). */
  zoomAt(factor: number, x?: number, y?: number): void {
    const w = this.viewport.clientWidth, h = this.viewport.clientHeight;
    const cx = x ?? w / 2, cy = y ?? h / 2;
    const next = Math.min(8, Math.max(0.05, this.scale * factor));
    this.tx = cx - ((cx - this.tx) * next) / this.scale;
    this.ty = cy - ((cy - this.ty) * next) / this.scale;
    this.scale = next;
    this.fitted = null;
    this.apply();
  }

  /** Pan so that `element` (a node or cluster of the drawing) sits in the middle of the viewport. */
  centerOn(element: Element): void {
    if (!this.svg) return;
    const box = (element as SVGGraphicsElement).getBoundingClientRect();
    const view = this.viewport.getBoundingClientRect();
    this.tx += view.left + view.width / 2 - (box.left + box.width / 2);
    this.ty += view.top + view.height / 2 - (box.top + box.height / 2);
    this.apply();
  }

  private focusCluster(node: string): void {
    // collapsed composite "c12" is drawn open as cluster "cluster_open12" (both named after its first equation)
    const cluster = Array.from(this.svg?.querySelectorAll('g.cluster') ?? []).find(
      g => titleOf(g) === `cluster_open${node.slice(1)}`
    );
    if (!cluster) return;
    cluster.classList.add('bp-flash');
    this.centerOn(cluster);
    setTimeout(() => cluster.classList.remove('bp-flash'), 1500);
  }

  /** Keep some of the drawing in view: never pan it out of the viewport (no blank screens). */
  private apply(): void {
    const w = this.viewport.clientWidth, h = this.viewport.clientHeight;
    const sw = this.size.width * this.scale, sh = this.size.height * this.scale;
    this.tx = sw <= w ? Math.min(Math.max(this.tx, 0), w - sw) : Math.min(Math.max(this.tx, w - sw), 0);
    this.ty = sh <= h ? Math.min(Math.max(this.ty, 0), h - sh) : Math.min(Math.max(this.ty, h - sh), 0);
    if (this.svg) {
      this.svg.style.transform = `translate(${this.tx}px, ${this.ty}px) scale(${this.scale})`;
    }
    this.zoomLabel.textContent = `${Math.round(this.scale * 100)}%`;
    this.node.dataset.scale = this.scale.toFixed(3);
    cancelAnimationFrame(this.moreFrame);
    this.moreFrame = requestAnimationFrame(() => this.showMore());
  }

  /** The bar under the box: which parts of the drawing are out of the box, and where; hidden when all shows. */
  private showMore(): void {
    const view = this.viewport.getBoundingClientRect();
    const drawn = this.svg?.getBoundingClientRect();
    const beyond = (r: DOMRect, side: Side) =>
      side === 'below' ? r.bottom > view.bottom + 1 : side === 'above' ? r.top < view.top - 1
        : side === 'right' ? r.right > view.right + 1 : r.left < view.left - 1;
    // a cluster's title is no node of the graph
    const nodes = Array.from(this.svg?.querySelectorAll('g.node:not(.bp-cluster-title)') ?? []).map(g =>
      g.getBoundingClientRect()
    );
    const parts: string[] = [];
    let vertical = false;
    for (const [side, arrow, place] of SIDES) {
      const cut = !!drawn && view.width > 0 && beyond(drawn, side);
      if (side === 'above' || side === 'below') this.viewport.classList.toggle(`bp-more-${side}`, cut);
      if (!cut) continue;
      vertical ||= side === 'above' || side === 'below';
      const n = nodes.filter(r => beyond(r, side)).length;
      parts.push(`${arrow} ${n ? `${n} ${n === 1 ? 'node' : 'nodes'}` : 'more'} ${place}`);
    }
    this.more.hidden = parts.length === 0;
    this.node.dataset.more = parts.join(' · ');
    if (parts.length) {
      const what = document.createElement('b');
      what.textContent = `Part of the graph is outside this box: ${parts.join(' · ')}.`;
      const how = vertical ? 'scroll with the wheel or drag the graph' : 'drag the graph';
      this.moreText.replaceChildren(what, ` To see it, ${how}, or:`);
    }
  }

  private listen(): void {
    const vp = this.viewport;
    vp.addEventListener(
      'wheel',
      event => {
        const rect = vp.getBoundingClientRect();
        if (event.ctrlKey || event.metaKey) {
          event.preventDefault();
          this.zoomAt(Math.exp(-event.deltaY / 300), event.clientX - rect.left, event.clientY - rect.top);
          return;
        }
        const before = [this.tx, this.ty];
        this.tx -= event.deltaX;
        this.ty -= event.deltaY;
        this.apply();
        // at the drawing's edge the page scrolls on, instead of the wheel being swallowed
        if (before[0] !== this.tx || before[1] !== this.ty) event.preventDefault();
      },
      { passive: false }
    );
    let drag: { x: number; y: number; tx: number; ty: number; moved: boolean } | null = null;
    vp.addEventListener('pointerdown', event => {
      drag = { x: event.clientX, y: event.clientY, tx: this.tx, ty: this.ty, moved: false };
    });
    vp.addEventListener('pointermove', event => {
      if (!drag) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return; // a click, not a drag
      if (!drag.moved) {
        drag.moved = true;
        vp.setPointerCapture(event.pointerId);
        vp.classList.add('bp-dragging');
      }
      this.tx = drag.tx + dx;
      this.ty = drag.ty + dy;
      this.apply();
    });
    const end = () => {
      drag = null;
      vp.classList.remove('bp-dragging');
    };
    vp.addEventListener('pointerup', end);
    vp.addEventListener('pointercancel', end);
  }
}
