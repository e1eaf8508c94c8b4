"""Dashboard and the Panel interface that panel plugins implement."""
from __future__ import annotations

import threading

import ipywidgets as widgets

from ..plugins import load_group


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        return False


class Panel:
    """A dashboard panel. Subclasses build `self.widget` in __init__ and refresh it in update(run).

    update() runs on the trainer's thread, at most ~10 times a second; it must only set widget traits.
    `order` sorts panels; `wide` panels take a whole row.
    """

    order = 100
    wide = False

    def __init__(self, run):
        self.run = run
        self.widget: widgets.Widget = widgets.HTML("")
        self.live_widgets: list = []  # widgets whose browser messages must apply while a cell runs

    def update(self, run):
        pass

    def close(self):
        self.widget.close()


class Dashboard:
    """All panels for one Run, laid out in a grid; `display(dashboard)` shows it."""

    def __init__(self, run, panels=None):
        self.run = run
        classes = panels if panels is not None else sorted(load_group("bpmagic.panels").values(),
                                                          key=lambda c: getattr(c, "order", 100))
        self.panels = [cls(run) for cls in classes]
        self._lock = threading.Lock()
        boxes = []
        for p in self.panels:
            p.widget.layout.width = "100%" if p.wide else "49%"
            p.widget.layout.min_width = "320px"
            boxes.append(p.widget)
        self.widget = widgets.Box(boxes, layout=widgets.Layout(display="flex", flex_flow="row wrap",
                                                               justify_content="space-between", width="100%"))
        self.widget.add_class("bpmagic-dashboard")
        if _in_kernel():
            from .. import live_comms

            for p in self.panels:
                for w in p.live_widgets:
                    live_comms.make_live(w)
        self.update(run)
        run.subscribe(self.update)

    def update(self, run):
        with self._lock:  # the worker's periodic update and a final update may meet
            for p in self.panels:
                with p.widget.hold_sync():
                    p.update(run)

    def close(self):
        for p in self.panels:
            p.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
