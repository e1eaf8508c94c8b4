"""Metrics panel: each metric of the run (accuracy, a cell's Metric lines) over the steps, on a linear scale, with
its validation value at each epoch's end. Hidden for a run that measures none."""
from __future__ import annotations

import ipywidgets as widgets

from ...train.describe import format_loss
from ..dashboard import Panel
from ..static import loss_svg
from ..views import LossView, f32
from .loss import _every


class MetricsPanel(Panel):
    order = 15  # under the loss

    def __init__(self, run):
        super().__init__(run)
        plan = run.step.plan if run.step is not None else None
        self.names = list(plan.layout.metrics) if plan is not None else []
        self.views = {name: LossView(log_scale=False, label=name) for name in self.names}
        self.widget = widgets.VBox(list(self.views.values()))
        if not self.names:
            self.widget.layout.display = "none"

    def update(self, run):
        h = run.history
        steps = h.get("step", [])
        for name, view in self.views.items():
            values = h.get(name, [])
            n = min(len(steps), len(values))
            picked = list(range(0, n, _every(n)))
            if picked and picked[-1] != n - 1:
                picked.append(n - 1)
            val = [(s, v) for s, v in zip(steps, h.get(f"val_{name}") or []) if v is not None]
            last = f"{name} {format_loss(values[n - 1])}" if n else name
            with view.hold_sync():  # one message: the values and the axes that frame them arrive together
                view.steps = f32([steps[i] for i in picked])
                view.loss = f32([values[i] for i in picked])
                view.val_steps, view.val_loss = f32([s for s, _ in val]), f32([v for _, v in val])
                view.status = last + (f"  ·  validation {format_loss(val[-1][1])}" if val else "")

    def static_svg(self, width, y):
        if not self.names:
            return None
        parts, height = [], 0
        for view in self.views.values():
            elements, h = loss_svg(view, width, y + height)
            parts += elements
            height += h + 8
        return parts, height
