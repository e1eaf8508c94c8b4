"""Loss panel: training and validation loss; step, epoch, steps per second, time left."""
from __future__ import annotations

import numpy as np

from ..dashboard import Panel
from ...train.trainer import format_loss
from ..views import LossView, f32

MAX_POINTS = 1000  # the curve is downsampled so that an update stays small however long training runs


def _every(n):
    return max(1, -(-n // MAX_POINTS))


class LossPanel(Panel):
    order = 10

    def __init__(self, run):
        super().__init__(run)
        self.widget = LossView()

    def update(self, run):
        h = run.history
        steps, losses = h.get("step", []), h.get("loss", [])
        n = min(len(steps), len(losses))
        picked = list(range(0, n, _every(n)))
        if picked and picked[-1] != n - 1:
            picked.append(n - 1)  # the curve always reaches the last step
        self.widget.steps = f32([steps[i] for i in picked])
        self.widget.loss = f32([losses[i] for i in picked])
        val = h.get("val_loss") or []
        pts = [(s, v) for s, v in zip(steps, val) if v is not None]
        self.widget.val_steps = f32([s for s, _ in pts])
        self.widget.val_loss = f32([v for _, v in pts])
        self.widget.status = status_line(run)


def status_line(run) -> str:
    """One line: the run's state first ("training", "paused at step N of M", "stopped at step N of M", ...),
    then step, epoch, loss and speed."""
    h = run.history
    if not h.get("step"):
        return f"{run.name}: {run.outcome}"
    step, elapsed = h["step"][-1], max(h["time"][-1], 1e-9)
    rate = len(h["step"]) / elapsed
    left = (run.total_steps - len(h["step"])) / rate if rate > 0 else float("nan")
    loss = h["loss"][-1]
    parts = ["training", f"step {step}/{run.total_steps}"] if run.status == "running" else [run.outcome]
    parts += [f"epoch {h['epoch'][-1] + 1}/{run.epochs}", f"loss {format_loss(loss)}", f"{rate:,.0f} steps/s"]
    if run.status == "running" and np.isfinite(left):
        parts.append(f"{left:.0f} s left")
    return "  ·  ".join(parts)
