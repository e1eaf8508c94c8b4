"""Learning-rate schedules: the factor the learning rate is multiplied by at each step, as optax's schedule
functions compute it (checked against them in tests/train/test_schedules.py).

A schedule scales the learning rate set (by the cell's --lr, code or the dashboard): the value in use at step n is
lr × factor(n). A learner's change while a schedule runs sets the value in use at that step, so the schedule goes on
from there, scaled: the control shows the value in use and the schedule's part in it ("cosine ×0.43"), and the
history has both ("lr", in use; "lr_set", as set). Reduce-on-plateau's factor falls as the run goes: it watches
the validation loss (or the training loss's mean over each epoch) and divides the learning rate when it stops
improving.
"""
from __future__ import annotations

import math

from ..errors import BackpropError


class Schedule:
    """The factor of the learning rate at each step (1-based): factor(n)."""

    name = "constant"
    needs_length = False  # cosine and one-cycle shape the whole run: they need its length

    def start(self, total_steps: int | None):
        """Bind to a run of `total_steps` steps (None: until stopped)."""
        if self.needs_length and total_steps is None:
            raise BackpropError(f"the {self.name} schedule spans the whole run: give the run a length (--steps or "
                                "--epochs; it cannot train until Stop)")
        self.total = total_steps
        return self

    def factor(self, step: int) -> float:
        return 1.0

    def epoch_ended(self, epoch: int, value: float | None):
        """The monitored number at an epoch's end (reduce-on-plateau reads it)."""

    def describe(self) -> str:
        return self.name

    def __repr__(self):
        return f"<{self.describe()} schedule>"


class StepDecay(Schedule):
    """lr × decay^⌊(n − 1) / every⌋: a drop every `every` steps (optax.exponential_decay(staircase=True))."""

    name = "step"

    def __init__(self, every: int, decay: float = 0.5):
        self.every, self.decay = _positive_int("every", every), _between("decay", decay, 0, 1, lo_open=True)

    def factor(self, step):
        return self.decay ** ((step - 1) // self.every)

    def describe(self):
        return f"step ×{self.decay:g} every {self.every}"


class Exponential(Schedule):
    """lr × decay^((n − 1) / every): a smooth decay, by `decay` every `every` steps (optax.exponential_decay)."""

    name = "exponential"

    def __init__(self, every: int, decay: float = 0.5):
        self.every, self.decay = _positive_int("every", every), _between("decay", decay, 0, 1, lo_open=True)

    def factor(self, step):
        return self.decay ** ((step - 1) / self.every)

    def describe(self):
        return f"exponential ×{self.decay:g} per {self.every}"


class Cosine(Schedule):
    """A linear warm-up from 0 over `warmup` steps, then a cosine from lr down to lr × `final` at the run's last
    step (optax.warmup_cosine_decay_schedule(0, lr, warmup, total, lr × final))."""

    name = "cosine"
    needs_length = True

    def __init__(self, warmup: int = 0, final: float = 0.0):
        self.warmup, self.final = _nonnegative_int("warmup", warmup), _between("final", final, 0, 1)

    def start(self, total_steps):
        super().start(total_steps)
        if self.warmup >= total_steps:
            raise BackpropError(f"the warm-up ({self.warmup} steps) is as long as the run ({total_steps} steps) or "
                                "longer: shorten --warmup or train longer")
        return self

    def factor(self, step):
        count = step - 1
        if count < self.warmup:
            return count / self.warmup
        done = min(count - self.warmup, self.total - self.warmup) / (self.total - self.warmup)
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * done))

    def describe(self):
        return f"cosine, warm-up {self.warmup}" if self.warmup else "cosine"


class OneCycle(Schedule):
    """Smith's one cycle: up from lr / div_factor to lr over the first `pct_start` of the run, then down to
    lr / (div_factor × final_div_factor), both halves cosine (optax.cosine_onecycle_schedule)."""

    name = "onecycle"
    needs_length = True

    def __init__(self, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.pct_start = _between("pct_start", pct_start, 0, 1, lo_open=True, hi_open=True)
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)

    def factor(self, step):
        count, up = step - 1, int(self.pct_start * self.total)
        lo, end = 1 / self.div_factor, 1 / (self.div_factor * self.final_div_factor)
        if count <= up:
            a, b, t = lo, 1.0, count / max(up, 1)
        else:
            a, b, t = 1.0, end, min((count - up) / max(self.total - up, 1), 1.0)
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))

    def describe(self):
        return "one-cycle"


class Plateau(Schedule):
    """Reduce on plateau: the factor is multiplied by `factor` when the monitored number (the validation loss, else
    the training loss's mean over an epoch) has not improved by a relative `rtol` for `patience` epochs
    (optax.contrib.reduce_on_plateau, with one value per epoch)."""

    name = "plateau"

    def __init__(self, factor: float = 0.1, patience: int = 10, rtol: float = 1e-4):
        self.reduce = _between("factor", factor, 0, 1, lo_open=True, hi_open=True)
        self.patience, self.rtol = _positive_int("patience", patience), rtol
        self.scale, self.best, self.waited = 1.0, math.inf, 0

    def start(self, total_steps):
        self.scale, self.best, self.waited = 1.0, math.inf, 0
        return super().start(total_steps)

    def factor(self, step):
        return self.scale

    def epoch_ended(self, epoch, value):
        if value is None or not math.isfinite(value):
            return
        if value < (1 - self.rtol) * self.best:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited == self.patience:
            self.scale *= self.reduce
            self.waited = 0

    def describe(self):
        return f"plateau ×{self.reduce:g} after {self.patience}"


SCHEDULES = {s.name: s for s in (Schedule, StepDecay, Exponential, Cosine, OneCycle, Plateau)}


def make_schedule(name: str, **options) -> Schedule:
    """A schedule by name (constant, step, exponential, cosine, onecycle, plateau) with its options."""
    if name not in SCHEDULES:
        raise BackpropError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    try:
        return SCHEDULES[name](**options)
    except TypeError as e:
        raise BackpropError(f"the {name} schedule: {e}") from None


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise BackpropError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def _nonnegative_int(name, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise BackpropError(f"{name} must be a whole number of steps (0 or more), got {value!r}")
    return int(value)


def _between(name, value, lo, hi, lo_open=False, hi_open=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BackpropError(f"{name} must be a number, got {value!r}") from None
    if not ((lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)):
        raise BackpropError(f"{name} must be between {lo:g} and {hi:g}{' (not included)' if lo_open or hi_open else ''}"
                            f", got {value!r}")
    return v
