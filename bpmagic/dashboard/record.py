"""The record that survives the kernel: a static output beside each live dashboard.

A dashboard is shown as two outputs: the live widget, then its record — an image of the dashboard's state
(text/html with the image inline, image/svg+xml, text/plain). The live view hides the record while it renders (a
style keyed by `token`), so a live notebook shows the dashboard once; a notebook read without its kernel —
reopened, on GitHub or nbviewer, exported by nbconvert — shows the record. When the run ends the record is
updated in place (display_id) with the final state. A frontend applies such an update only while the cell that
displayed it is running, so a run that ends in the background is recorded again in the cell that waits for it.
"""
from __future__ import annotations

import base64
import uuid
from html import escape


def current_cell() -> str | None:
    """The msg_id of the request the calling thread works for (a notebook cell), or None outside a kernel."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        return kernel.get_parent()["header"]["msg_id"] if kernel is not None else None
    except Exception:  # no kernel, or no parent yet
        return None


class Record:
    def __init__(self):
        self.token = uuid.uuid4().hex
        self._handle = None
        self._cells: set = set()

    def bundle(self, svg: str, summary: str) -> dict:
        src = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        html = (f'<img class="bpmagic-record" data-bpmagic-record="{self.token}" src="{src}" '
                f'alt="{escape(summary, quote=True)}" style="max-width: 100%">')
        return {"text/html": html, "image/svg+xml": svg, "text/plain": summary}

    def show(self, bundle: dict):
        from IPython.display import display

        self._cells.add(current_cell())
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:  # the same dashboard displayed again: one more output with the same id, updated together
            display(bundle, raw=True, display_id=self._handle.display_id)

    def update(self, bundle: dict):
        if self._handle is not None:
            self._handle.update(bundle, raw=True)

    def show_in_waiting_cell(self, bundle: dict):
        """Called in the thread that waited for the ended run: record it there unless this cell has it."""
        if self._handle is not None and current_cell() not in self._cells:
            self.show(bundle)
