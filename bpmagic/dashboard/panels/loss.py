"""Loss panel: training and validation loss; step, epoch, steps per second, time left."""
from __future__ import annotations

from ..dashboard import Panel
from ...train.trainer import status_text
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
        self.widget.status = status_text(run)
