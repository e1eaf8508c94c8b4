/**
 * Records that keep up with their live views (see record_protocol.ts): a `bpmagic-record` event rewrites the output
 * that carries its token, in whichever open notebook holds it, so a saved notebook holds the view's final state —
 * also for a run that ended in the background, after its cell had finished. A stylesheet hides a dead widget output
 * (its model is gone: a reopened notebook) when a record follows it.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { RECORD_EVENT, RecordDetail, recordBundle } from '../shared/record_protocol';

function rewrite(tracker: INotebookTracker, detail: RecordDetail): boolean {
  const marker = `data-bpmagic-record="${detail.token}"`;
  let found = false;
  tracker.forEach(panel => {
    for (const cell of panel.content.widgets) {
      if (cell.model.type !== 'code') continue;
      const outputs = (cell.model as any).outputs;
      for (let i = 0; i < outputs.length; i++) {
        const output = outputs.get(i);
        const html = output.data['text/html'];
        if (typeof html === 'string' && html.includes(marker)) {
          if (output.data['image/svg+xml'] !== detail.svg) {
            output.setData({ data: recordBundle(detail) });
          }
          found = true;
        }
      }
    }
  });
  return found;
}

const records: JupyterFrontEndPlugin<void> = {
  id: 'bpmagic:records',
  description: "Keeps each live view's static record up to date in the notebook, so saved notebooks show it.",
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    document.addEventListener(RECORD_EVENT, event => {
      const detail = (event as CustomEvent<RecordDetail>).detail;
      if (detail && typeof detail.token === 'string' && typeof detail.svg === 'string') {
        rewrite(tracker, detail);
      }
    });
  }
};

export default [records];
