"""The record that survives the kernel: a static output beside each live widget (a dashboard, a graph view).

A live widget is shown as two outputs: the widget, then its record — an image of the widget's state (text/html
with the image inline, image/svg+xml, text/plain). While the live view renders it hides the record (a style keyed
by `token`), so a live notebook shows the widget once; a notebook read without its kernel — reopened, on GitHub or
nbviewer, exported by nbconvert — shows the record, and bpmagic's JupyterLab extension hides the dead widget
output above it.

The record is brought up to date in two ways, so that it holds the final state wherever the notebook runs:
- kernel-side, by display_id (`update`): JupyterLab applies this only while the cell that displayed the record
  runs, which covers a blocking cell; nbclient and papermill apply it to the record wherever it is, when it comes
  from the cell that is running (a later cell that waits for a background run: `update_from_waiting_cell`);
- browser-side: the live view asks bpmagic's extension to rewrite its record output (a `bpmagic-record` event with
  the token and an SVG). The kernel sets the widget's `record` trait when a run ends — in the background too — and
  a graph view sends what it drew, laid out in the browser (no system Graphviz needed).
"""
from __future__ import annotations

import base64
import uuid
from html import escape

from traitlets import Dict, HasTraits, Unicode


class Recorded(HasTraits):
    """Traits of a live view that has a record: its token, and the newest record for the browser to write."""

    record_token = Unicode("").tag(sync=True)  # the view hides the record with this token while it is live
    record = Dict().tag(sync=True)  # {"svg", "summary"}: the browser writes it into the record output


class Record:
    def __init__(self):
        self.token = uuid.uuid4().hex
        self._handle = None

    def bundle(self, svg: str | None, summary: str) -> dict:
        """The record's outputs: the image when there is one, else the summary until the browser draws it."""
        if svg is None:
            html = f'<pre class="bpmagic-record" data-bpmagic-record="{self.token}">{escape(summary)}</pre>'
            return {"text/html": html, "text/plain": summary}
        src = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        html = (f'<img class="bpmagic-record" data-bpmagic-record="{self.token}" src="{src}" '
                f'alt="{escape(summary, quote=True)}" style="max-width: 100%">')
        return {"text/html": html, "image/svg+xml": svg, "text/plain": summary}

    def show(self, bundle: dict):
        from IPython.display import display

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:  # the same widget displayed again: one more output with the same id, updated together
            display(bundle, raw=True, display_id=self._handle.display_id)

    def update(self, bundle: dict, view: Recorded | None = None):
        """The record now shows `bundle`: kernel-side by display_id, and through `view` in the browser."""
        if self._handle is not None:
            self._handle.update(bundle, raw=True)
        if view is not None and "image/svg+xml" in bundle:
            view.record = {"svg": bundle["image/svg+xml"], "summary": bundle["text/plain"]}

    def update_from_waiting_cell(self, bundle: dict):
        """Called in the thread that waited for the ended run (a later cell): the record takes the final state by
        its display_id. The worker's own update is parented to the cell that started the run, which nbclient and
        papermill no longer listen to once another cell runs; this one is parented to the waiting cell, and they
        apply it to the record wherever it is. Never a second record: one dashboard, one image."""
        if self._handle is not None:
            self._handle.update(bundle, raw=True)
