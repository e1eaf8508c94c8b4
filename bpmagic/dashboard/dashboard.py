"""Dashboard and the Panel interface that panel plugins implement.

A displayed dashboard is the live widget followed by its record, a static image of its state (bpmagic/record.py,
static.py) that is brought up to date when the run ends, so notebooks read well without the kernel.
"""
from __future__ import annotations

import threading

import ipywidgets as widgets

from .. import threads
from ..plugins import load_group
from ..record import Record, Recorded


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

    def static_svg(self, width: int, y: float):
        """(SVG elements, height) drawing this panel's state at vertical offset y, or None to leave it out of the
        dashboard's static image. The default draws the built-in browser views (loss curve, layer bars)."""
        from .static import view_svg

        return view_svg(self.widget, width, y)

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
        self.record = Record()
        # the views that hide the record while they are live; the first also writes the final record in the browser
        self._record_views = [p.widget for p in self.panels if isinstance(p.widget, Recorded)]
        for view in self._record_views:
            view.record_token = self.record.token
        self._final_recorded = False
        self._seen_version = None  # the optimizer's version last shown while paused
        self.update(run)
        run.subscribe(self.update)
        run.on_wait(lambda run: self.record.update_from_waiting_cell(self._record_bundle()))
        if _in_kernel():  # a thread, or an event-loop task where there are no threads (Pyodide)
            threads.every(0.2, self._follow_while_paused, run._done, name=f"bpmagic-dashboard-{run.name}")

    def update(self, run):
        with self._lock:  # the worker's periodic update, a button's and the final one may meet
            for p in self.panels:
                with p.widget.hold_sync():
                    p.update(run)
            if not run.ended:
                self._final_recorded = False  # trained again after a Reset: its new end is recorded too
            elif not self._final_recorded:
                self._final_recorded = True
                self.record.update(self._record_bundle(), self._record_views[0] if self._record_views else None)

    def _follow_while_paused(self):
        """Called every 0.2 s until the run ends: while paused the trainer publishes nothing, yet code may change a
        hyperparameter (run.optimizer.lr = ...): show it all the same."""
        if self.run.status != "paused":
            self._seen_version = None
            return
        version = self.run.optimizer.version
        if version != self._seen_version:
            self._seen_version = version
            self.update(self.run)

    def static_svg(self) -> str:
        """The dashboard's present state as one SVG image."""
        from .static import dashboard_svg

        return dashboard_svg(self.panels, f"bpmagic dashboard of {self.run.name!r}")

    def _record_bundle(self) -> dict:
        return self.record.bundle(self.static_svg(), f"bpmagic dashboard of {self.run.name!r}: {self.run!r}")

    def _repr_mimebundle_(self, **kwargs):
        """The live widget alone: no text for exports to show in its place (the record below is what they show)."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
        bundle.pop("text/plain", None)
        return bundle

    def _ipython_display_(self):
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self.record.show(self._record_bundle())

    def close(self):
        for p in self.panels:
            p.close()
        self.widget.close()

