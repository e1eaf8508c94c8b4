/**
 * bpmagic's JupyterLab plugins: the `%%backprop` line decorated in code cells, and two commands —
 * "Insert %%backprop template" and "Show backward graph of the last run". The Graphviz renderer is in mime.ts, the
 * records that keep up with live views in records.ts.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { RangeSetBuilder } from '@codemirror/state';
import { Decoration, DecorationSet, EditorView, ViewPlugin, ViewUpdate } from '@codemirror/view';

import records from './records';

const MAGIC = /^%%backprop\b/;

/** The first line of a cell that starts with %%backprop: a tinted line and a styled magic name. */
function decorate(view: EditorView): DecorationSet {
  const builder = new RangeSetBuilder<Decoration>();
  const first = view.state.doc.line(1);
  if (MAGIC.test(first.text)) {
    builder.add(first.from, first.from, Decoration.line({ class: 'bp-backprop-line' }));
    builder.add(first.from, first.from + '%%backprop'.length, Decoration.mark({ class: 'bp-backprop-magic' }));
  }
  return builder.finish();
}

const backpropLine = ViewPlugin.fromClass(
  class {
    decorations: DecorationSet;
    constructor(view: EditorView) {
      this.decorations = decorate(view);
    }
    update(update: ViewUpdate) {
      if (update.docChanged) {
        this.decorations = decorate(update.view);
      }
    }
  },
  { decorations: v => v.decorations }
);

const decoration: JupyterFrontEndPlugin<void> = {
  id: 'bpmagic:backprop-line',
  description: 'Decorates the %%backprop line of code cells.',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  activate: (_app: JupyterFrontEnd, registry: IEditorExtensionRegistry) => {
    registry.addExtension({
      name: 'bpmagic:backprop-line',
      factory: () => EditorExtensionRegistry.createImmutableExtension(backpropLine)
    });
  }
};

export const TEMPLATE = `%%backprop --epochs 2000 --lr 0.5 --batch-size 4
# XOR: set X and Y in a cell above, e.g. X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
W1: Param = randn(2, 8) * 0.5
b1: Param = zeros(8)
W2: Param = randn(8, 1) * 0.5
b2: Param = zeros(1)
x: Input = X
y: Target = Y
h = tanh(x @ W1 + b1)
p = sigmoid(h @ W2 + b2)
loss: Loss = binary_cross_entropy(p, y)`;

export const SHOW_BACKWARD = `import bpmagic
bpmagic.last_run().backward_graph`;

const commands: JupyterFrontEndPlugin<void> = {
  id: 'bpmagic:commands',
  description: 'Commands: insert a %%backprop template; show the backward graph of the last run.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null) => {
    const enabled = () => tracker.currentWidget !== null && tracker.currentWidget === app.shell.currentWidget;

    /** A new code cell below the active one, holding `source`; run it when asked. */
    const insertBelow = async (source: string, run: boolean) => {
      const panel = tracker.currentWidget;
      if (!panel) {
        return;
      }
      const notebook = panel.content;
      NotebookActions.insertBelow(notebook);
      const cell = notebook.activeCell;
      if (!cell) {
        return;
      }
      cell.model.sharedModel.setSource(source);
      if (run) {
        await NotebookActions.run(notebook, panel.sessionContext);
      }
    };

    app.commands.addCommand('bpmagic:insert-template', {
      label: 'Insert %%backprop template',
      caption: 'Insert a code cell with a small %%backprop model (XOR) below the active cell',
      isEnabled: enabled,
      execute: () => insertBelow(TEMPLATE, false)
    });
    app.commands.addCommand('bpmagic:show-backward-graph', {
      label: 'Show backward graph of the last run',
      caption: 'Insert and run a cell that draws the backward graph of the last %%backprop run',
      isEnabled: enabled,
      execute: () => insertBelow(SHOW_BACKWARD, true)
    });
    for (const command of ['bpmagic:insert-template', 'bpmagic:show-backward-graph']) {
      palette?.addItem({ command, category: 'bpmagic' });
      app.contextMenu.addItem({ command, selector: '.jp-Notebook', rank: 90 });
    }
  }
};

export default [decoration, commands, ...records];
