"""A run in words: its outcome in a sentence, its state in one status line, a loss as people read it.

The dashboard's status line, the magic's text progress and the graph views all describe a run the same way, so the
words live here, beside the run they describe (nothing here knows widgets).
"""
from __future__ import annotations

import bisect
import math
from typing import NamedTuple


def format_loss(loss) -> str:
    """A loss as people read it: 4 significant digits. Zero prints as 0, never -0 (a float32 cross-entropy that
    rounded to zero is -0.0), and a small loss keeps its digits (3e-6, not 0)."""
    if loss is None:
        return "-"
    loss = float(loss)
    if loss == 0:
        return "0"
    text = f"{loss:.4g}"
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text  # 3e-6 rather than 3e-06


def format_value(value) -> str:
    """A hyperparameter's value as a control shows it: the shortest exact form (0.03, 2, 1e-05), or 4 significant
    digits for a long one (a scheduled learning rate in use: 0.09998); the pace's infinity is "full speed"."""
    if value == math.inf:
        return "full speed"
    if not isinstance(value, (int, float)):
        return str(value)
    exact = repr(float(value)).removesuffix(".0")
    return exact if len(exact) <= 8 else f"{value:.4g}"


class Change(NamedTuple):
    """One hyperparameter change, at the step it took effect."""

    step: int
    name: str
    old: float
    new: float

    def __str__(self):
        unit = " steps/s" if self.name == "pace" else ""
        old, new = (format_value(v) + (unit if v != math.inf else "") for v in (self.old, self.new))
        return f"step {self.step}: {self.name} {old} → {new}"


class Changes(list):
    """run.changes(): a list of Change, shown one per line."""

    def __repr__(self):
        return "\n".join(map(str, self)) if self else "no changes"

    _repr_pretty_ = lambda self, p, cycle: p.text(repr(self))  # noqa: E731  (IPython shows the lines, not a list)


def failure(run) -> str:
    """A failed run's error, said once on a line of its own (the cell magic's and a blocking bp.fit's)."""
    return f"Training stopped after step {run.steps_done}: {run.error}"


def outcome(run, detail=True) -> str:
    """Where the run stands, in one sentence: "finished all 300 steps", "stopped at step 812 of 10000", ...
    (a failed run's error after it, unless not `detail`)."""
    status, n, total = run.status, run.steps_done, run.total_steps
    of = f" of {total}" if total is not None else ""
    if status in ("created", "running"):
        if not n:
            return "compiling the step…"
        return f"training, step {n}{of}" if total is not None else f"training until Stop, step {n}"
    if status == "paused":
        return f"paused at step {n}{of}"
    if status == "finished":
        return f"finished all {n} steps"
    if status == "stopped" and run.ended_because == "early-stopped":
        stopper = run.early_stopping
        restored = f"; the parameters of epoch {stopper.best_epoch + 1} are restored" if stopper.best_params else ""
        return f"stopped early at step {n}: {stopper.reason()}{restored}"
    if status == "stopped":
        return f"stopped at step {n}{of}"
    if status == "interrupted":
        return f"interrupted at step {n}{of} (kernel interrupt)"
    if status == "failed":
        why = "the loss or a gradient became non-finite" if run.ended_because == "non-finite" else "an error"
        said = f": {run.error}" if detail and run.error is not None else ""
        return f"failed at step {n + 1}, {why}{said}"
    return f"{status} after {n} steps"


#: the speed shown is measured over the last this many seconds (a pace change shows within a moment)
SPEED_WINDOW = 2.0


def steps_per_second(history) -> float:
    """Recent speed: steps over the last SPEED_WINDOW seconds of the history's clock (all of it when shorter)."""
    times = history.get("time") or []
    if len(times) < 2:
        return float("nan")
    end = times[-1]
    first = max(bisect.bisect_left(times, end - SPEED_WINDOW), 0)
    if first >= len(times) - 1:  # one step in the window: a slow pace
        first = len(times) - 2
    span = end - times[first]
    return (len(times) - 1 - first) / span if span > 0 else float("nan")


def status_text(run, detail=True) -> str:
    """The run in one line, as the dashboard and the text progress show it: its state first ("training",
    "paused at step N of M", "stopped at step N", ...), then step, epoch, loss, learning rate and (while it trains)
    speed and time left. An open-ended run says "until Stop" and gives no time left. Not `detail`: a failed run's
    error is left out (said on a line of its own)."""
    h = run.history
    if not h.get("step"):
        return outcome(run, detail)
    step, total = h["step"][-1], run.total_steps
    training = run.status == "running"
    if training:
        parts = ["training", f"step {step}/{total}" if total is not None else f"step {step} · until Stop"]
    else:
        parts = [outcome(run, detail)]
    scale = getattr(run, "describe_workers", None)  # a run on workers: "2 workers · global batch 256"
    if scale is not None:
        parts.append(scale())
    epochs = f"/{run.epochs}" if total is not None else ""
    parts += [f"epoch {h['epoch'][-1] + 1}{epochs}", f"loss {format_loss(h['loss'][-1])}"]
    if h.get("lr") and h["lr"][-1] is not None:
        parts.append(f"lr {h['lr'][-1]:.3g}")
    if training:
        rate = steps_per_second(h)
        if math.isfinite(rate):
            shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
            parts.append(f"{shown} step{'' if shown == '1' else 's'}/s")
            if total is not None and rate > 0:
                parts.append(f"{duration((total - len(h['step'])) / rate)} left")
    return "  ·  ".join(parts)


def duration(seconds: float) -> str:
    """A time to wait as a person reads it: "40 s", "12 min", "3.5 h", "9 days" (never "129600 s")."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.2g} {unit}" if seconds < 10 * size else f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.0f} s"
