"""A run's progress as text, where no widget can show it (terminal IPython, --no-dashboard): one line rewritten in
place, then what happened, in a sentence."""
from __future__ import annotations

import sys
import time

from .train.describe import failure, format_loss, status_text


class TextProgress:
    """One line, rewritten in place at most every `interval` seconds, then a summary."""

    def __init__(self, run, interval):
        self.run, self.interval, self.last, self.started = run, interval, 0.0, time.perf_counter()

    def line(self, detail=True) -> str:
        return f"{self.run.name}: {status_text(self.run, detail)}"

    def update(self):
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            sys.stdout.write("\r" + self.line())
            sys.stdout.flush()

    def finish(self, text=True):
        run = self.run
        if text:  # a failed run's error follows on a line of its own: once, not also glued into this one
            sys.stdout.write("\r" + self.line(detail=run.status != "failed") + "\n")
        h = run.history
        took = h["time"][-1] if h.get("time") else time.perf_counter() - self.started
        if run.status == "failed":
            sys.stderr.write(failure(run) + "\n")
        elif run.ended_because == "interrupted":
            print(f"Interrupted: training stopped after step {run.steps_done}; the Params are those of that step.")
        elif run.ended_because == "stopped":
            print(f"Stopped after step {run.steps_done}; the Params are those of that step.")
        else:
            first = h["loss"][0] if h.get("loss") else float("nan")
            print(f"Trained {run.steps_done} steps in {took:.1f} s: loss {format_loss(first)} -> "
                  f"{format_loss(run.loss)}. The Run is in {run.name}; the Params are updated in the namespace.")
        sys.stdout.flush()
