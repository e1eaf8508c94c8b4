/**
 * MIME renderers for graphs drawn in the browser, so no system Graphviz is needed:
 * - `application/vnd.bpmagic.graph+json` ({dot, expanded}): bpmagic's graph outputs, ranked before image/svg+xml so
 *   JupyterLab shows the zoomable figure; the SVG in the same output is the static record for other viewers. When
 *   the kernel had no `dot` to make that SVG, the renderer adds the one it drew to the output, so a saved notebook
 *   carries it (GitHub, nbviewer, nbconvert, a notebook reopened without bpmagic).
 * - `text/vnd.graphviz`: any DOT (and .gv / .dot files), ranked after image/svg+xml.
 */
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { GraphFigure } from '../shared/graph_figure';
import type { Drawing } from '../shared/graphviz_svg';

export const GRAPHVIZ_MIME = 'text/vnd.graphviz';
export const GRAPH_MIME = 'application/vnd.bpmagic.graph+json';
const SVG_MIME = 'image/svg+xml';

interface GraphData {
  dot?: string;
  expanded?: string | null;
}

export class GraphvizRenderer extends Widget implements IRenderMime.IRenderer {
  private model: IRenderMime.IMimeModel | null = null;
  private readonly figure = new GraphFigure({ onDrawn: (d, open) => this.record(d, open) });

  constructor(private options: IRenderMime.IRendererOptions) {
    super();
    this.addClass('bp-graphviz');
    this.node.append(this.figure.node);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.model = model;
    const value = model.data[this.options.mimeType];
    const data: GraphData = typeof value === 'string' ? { dot: value } : ((value ?? {}) as GraphData);
    try {
      await this.figure.show(String(data.dot ?? ''), String(data.expanded ?? ''));
    } catch {
      // the figure says what Graphviz could not draw; show the DOT under it rather than an empty output
      const source = document.createElement('pre');
      source.textContent = String(data.dot ?? '');
      this.figure.node.append(source);
    }
  }

  /** Keep the drawing (as first shown, composites closed) in the output when it has no static image yet. */
  private record(drawing: Drawing, open: boolean): void {
    const model = this.model;
    if (!model || open || this.options.mimeType !== GRAPH_MIME || model.data[SVG_MIME]) return;
    // setData re-renders this output with the same DOT: GraphFigure.show sees nothing new and keeps the view
    model.setData({ data: { ...model.data, [SVG_MIME]: drawing.text } });
  }
}

export const graphRendererFactory: IRenderMime.IRendererFactory = {
  safe: true, // the SVG is sanitized: no scripts, event handlers or external links
  mimeTypes: [GRAPH_MIME],
  defaultRank: 45,
  createRenderer: options => new GraphvizRenderer(options)
};

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [GRAPHVIZ_MIME],
  defaultRank: 85,
  createRenderer: options => new GraphvizRenderer(options)
};

const graphs: IRenderMime.IExtension = {
  id: 'bpmagic:graph-renderer',
  description: "Renders bpmagic's graph outputs: fitted, zoomable, composites open on click (wasm Graphviz).",
  rendererFactory: graphRendererFactory,
  rank: 45,
  dataType: 'json'
};

const dot: IRenderMime.IExtension = {
  id: 'bpmagic:graphviz-renderer',
  description: 'Renders text/vnd.graphviz (DOT) with Graphviz compiled to WebAssembly.',
  rendererFactory,
  rank: 85,
  dataType: 'string',
  fileTypes: [
    { name: 'graphviz', mimeTypes: [GRAPHVIZ_MIME], extensions: ['.gv', '.dot'], iconClass: 'jp-MaterialIcon jp-ImageIcon' }
  ],
  documentWidgetFactoryOptions: {
    name: 'Graphviz drawing',
    primaryFileType: 'graphviz',
    fileTypes: ['graphviz'],
    defaultFor: ['graphviz']
  }
};

export default [graphs, dot];
