/**
 * A MIME renderer for `text/vnd.graphviz`: bpmagic graphs (and any DOT) drawn in the browser, so no system
 * Graphviz is needed. Ranked after image/svg+xml: when the kernel had `dot`, its SVG is shown as is.
 */
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { dotToSvg } from './graphviz_svg';

export const GRAPHVIZ_MIME = 'text/vnd.graphviz';

export class GraphvizRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(private options: IRenderMime.IRendererOptions) {
    super();
    this.addClass('bp-graphviz');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const dot = String(model.data[this.options.mimeType] ?? '');
    try {
      const svg = await dotToSvg(dot);
      this.node.replaceChildren(svg);
    } catch (err) {
      // Bad DOT: say so and show the source rather than an empty output.
      const message = document.createElement('div');
      message.className = 'bp-graphviz-error';
      message.textContent = `Graphviz could not draw this graph: ${(err as Error).message ?? err}`;
      const source = document.createElement('pre');
      source.textContent = dot;
      this.node.replaceChildren(message, source);
    }
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true, // the SVG is sanitized: no scripts, event handlers or external links
  mimeTypes: [GRAPHVIZ_MIME],
  defaultRank: 85,
  createRenderer: options => new GraphvizRenderer(options)
};

const extension: IRenderMime.IExtension = {
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

export default extension;
