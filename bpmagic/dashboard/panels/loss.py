"""Loss panel: training and validation loss (and, faintly, the attempt before the last Reset), the steps where
gradient clipping engaged; step, epoch, steps per second, time left."""
from __future__ import annotations

from ..dashboard import Panel
from ...train.describe import status_text
from ..views import LossView, f32

MAX_POINTS = 1000  # the curve is downsampled so that an update stays small however long training runs


def _every(n):
    return max(1, -(-n // MAX_POINTS))


class LossPanel(Panel):
    order = 10

    def __init__(self, run):
        super().__init__(run)
        self.widget = LossView()
        self._previous = None
        self._clipped, self._clip_seen = [], 0  # the steps where clipping engaged, read so far

    def _clip_marks(self, history):
        """The steps where clipping engaged, read incrementally (a long run's history is not read again 10 times a
        second), at most MAX_POINTS of them shown."""
        clipped, steps = history.get("clipped") or [], history.get("step", [])
        n = min(len(clipped), len(steps))
        if n < self._clip_seen:  # a Reset started the history again
            self._clipped, self._clip_seen = [], 0
        self._clipped += [steps[i] for i in range(self._clip_seen, n) if clipped[i]]
        self._clip_seen = n
        return self._clipped[::_every(len(self._clipped))]

    def update(self, run):
        h = run.history
        self.widget.steps, self.widget.loss = _curve(h)
        val = h.get("val_loss") or []
        pts = [(s, v) for s, v in zip(h.get("step", []), val) if v is not None]
        self.widget.val_steps = f32([s for s, _ in pts])
        self.widget.val_loss = f32([v for _, v in pts])
        self.widget.clipped_steps = f32(self._clip_marks(h))
        previous = run.previous_attempts[-1] if run.previous_attempts else None
        if previous is not self._previous:  # an earlier attempt no longer changes: drawn once
            self._previous = previous
            self.widget.previous_steps, self.widget.previous_loss = _curve(previous or {})
        self.widget.status = status_text(run)


def _curve(history):
    """(steps, losses) as float32 buffers, downsampled to MAX_POINTS, always reaching the last step."""
    steps, losses = history.get("step", []), history.get("loss", [])
    n = min(len(steps), len(losses))
    picked = list(range(0, n, _every(n)))
    if picked and picked[-1] != n - 1:
        picked.append(n - 1)
    return f32([steps[i] for i in picked]), f32([losses[i] for i in picked])

