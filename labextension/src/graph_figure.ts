/**
 * A graph figure: a laid-out drawing fitted to its output's width, with zoom (buttons, Ctrl/⌘ + wheel) and pan
 * (drag, wheel), and — when the DOT comes with a variant whose composites are open — a click on a composite
 * (cross_entropy, softmax, ...) opens it, a button closes it again. Used by the MIME renderer and the anywidget
 * graph view, so it carries its own CSS.
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
  private dot = '';
  private expanded = '';
  private open = false;
  private drawn = 0;
  private scale = 1;
  private tx = 0;
  private ty = 0;
  private fitted = true; // follow the output's width until the user zooms
  private size = { width: 0, height: 0 };
  svg: SVGSVGElement | null = null;

  constructor(private options: FigureOptions = {}) {
    injectCss();
    this.node.className = 'bp-figure';
    this.tools.className = 'bp-figure-tools';
    this.viewport.className = 'bp-figure-viewport';
    const zoomOut = button('−', 'zoom-out', 'zoom out (Ctrl/⌘ + wheel)');
    const zoomIn = button('+', 'zoom-in', 'zoom in (Ctrl/⌘ + wheel)');
    const fit = button('fit width', 'fit', "fit the graph to the output's width");
    const actual = button('1:1', 'actual', 'full size');
    zoomOut.onclick = () => this.zoomAt(1 / 1.25);
    zoomIn.onclick = () => this.zoomAt(1.25);
    fit.onclick = () => this.fit();
    actual.onclick = () => this.zoomAt(1 / this.scale);
    this.toggle.onclick = () => void this.setOpen(!this.open);
    this.zoomLabel.className = 'bp-figure-zoom';
    this.tools.append(zoomOut, zoomIn, fit, actual, this.zoomLabel, this.toggle);
    this.node.append(this.tools, this.viewport);
    this.listen();
    new ResizeObserver(() => {
      if (this.fitted) this.fit();
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

  /** Scale to the output's width (never above full size) and show the top of the graph. */
  fit(): void {
    const width = this.viewport.clientWidth || this.size.width;
    this.scale = Math.min(1, width / Math.max(this.size.width, 1));
    this.tx = (width - this.size.width * this.scale) / 2;
    this.ty = 0;
    this.fitted = true;
    // tall graphs scroll within 80% of the window's height; short ones take only their own
    const height = Math.min(this.size.height * this.scale, Math.max(320, window.innerHeight * 0.8));
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
    this.fitted = false;
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
