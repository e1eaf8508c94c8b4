/**
 * How a live bpmagic view and bpmagic's extension keep the view's record (a static output beside it, for readers
 * without a kernel; bpmagic/record.py) up to date: the view dispatches a `bpmagic-record` event on the document
 * with its record token, an SVG and a one-line summary; the extension (records.ts) writes them into the output
 * that carries the token. No JupyterLab imports here: the widget bundles (esbuild) use this module too.
 */
export const RECORD_EVENT = 'bpmagic-record';

export interface RecordDetail {
  token: string;
  svg: string;
  summary: string;
}

/** Ask the frontend to make `svg` the record with this token (a no-op where bpmagic's extension is absent). */
export function sendRecord(detail: RecordDetail): void {
  if (!detail.token || !detail.svg) return;
  document.dispatchEvent(new CustomEvent<RecordDetail>(RECORD_EVENT, { detail }));
}

/** While a live view shows, its record would show the same thing twice: hide it, and its output's frame. */
export function hideRecord(token: string): void {
  if (!token || document.getElementById(`bpmagic-record-${token}`)) return;
  const style = document.createElement('style');
  style.id = `bpmagic-record-${token}`;
  const record = `[data-bpmagic-record="${token}"]`;
  style.textContent =
    `${record} { display: none !important; }\n` + `.jp-OutputArea-child:has(${record}) { display: none !important; }`;
  document.head.append(style);
}

/** The record's outputs, as bpmagic/record.py writes them. */
export function recordBundle(detail: RecordDetail): Record<string, string> {
  const src = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(detail.svg)));
  const img = document.createElement('img');
  img.className = 'bpmagic-record';
  img.dataset.bpmagicRecord = detail.token;
  img.src = src;
  img.alt = detail.summary;
  img.style.maxWidth = '100%';
  return { 'text/html': img.outerHTML, 'image/svg+xml': detail.svg, 'text/plain': detail.summary };
}
