"""The record that survives the kernel: a static output beside each live widget (a dashboard, a graph view).

A live widget is shown as two outputs: the widget, then its record — an image of the widget's state (text/html
with the image inline, image/svg+xml, text/plain). While the live view renders it hides the record (a style keyed
by `token`), so a live notebook shows the widget once; a notebook read without its kernel — reopened, on GitHub or
nbviewer, exported by nbconvert — shows the record, and bpmagic's JupyterLab extension hides the dead widget
output above it.

The record is brought up to date in two ways, so that it holds the final state wherever the notebook runs:
- kernel-side, by display_id (`update`): a frontend applies this only while the cell that displayed the record
  runs, which covers a blocking cell (and VS Code, nbclient, papermill);
- browser-side: the live view asks bpmagic's extension to rewrite its record output (a `bpmagic-record` event with
  the token and an SVG). The kernel sets the widget's `record` trait when a run ends — in the background too — and
  a graph view sends what it drew, laid out in the browser (no system Graphviz needed).
"""
from __future__ import annotations

import base64
import uuid
from html import escape

from traitlets import Dict, HasTraits, Unicode


def current_cell() -> str | None:
    """The msg_id of the request the calling thread works for (a notebook cell), or None outside a kernel."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        return kernel.get_parent()["header"]["msg_id"] if kernel is not None else None
    except Exception:  # no kernel, or no parent yet
        return None


class Recorded(HasTraits):
    """Traits of a live view that has a record: its token, and the newest record for the browser to write."""

    record_token = Unicode("").tag(sync=True)  # the view hides the record with this token while it is live
    record = Dict().tag(sync=True)  # {"svg", "summary"}: the browser writes it into the record output


class Record:
    def __init__(self):
        self.token = uuid.uuid4().hex
        self._handle = None
        self._cells: set = set()

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

        self._cells.add(current_cell())
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

    def show_in_waiting_cell(self, bundle: dict):
        """Called in the thread that waited for the ended run: record it there unless this cell has it."""
        if self._handle is not None and current_cell() not in self._cells:
            self.show(bundle)
