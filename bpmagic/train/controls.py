"""Controls: the thread-safe switchboard between a running training loop and whoever steers it.

The loop reads it once per step boundary; widget callbacks, Run methods and other threads only write to it.
Hyperparameters live in the optimizer (itself thread-safe); Controls adds what belongs to the run: pause, step-once,
stop, reset, and the pace (steps per second: full speed by default, slow enough to watch when asked).

Every write counts as a change that a waiting driver wakes up for (`wait_for_change`), so Pause, Step, Stop, Reset
and a new pace act at once, even while the loop waits out a slow pace.

Why the worker thread gives the interpreter up between steps (`breathe`): every control message is handled by the
kernel's own threads (shell channel, subshell, IOPub), each of which needs the interpreter lock several times per
message, and a tight loop of small steps holds that lock until Python's switch interval (5 ms) forces it off.
Measured on 2 cores (bench/controls.py, xor size): a message cost ~40 ms. So every millisecond the trainer steps
aside for a moment (`time.sleep(0)`, ~50 us of timer slack), which brings one message's effect to ~5 ms; and while
writes arrive in a burst (a slider dragged, a flood of messages) it sleeps a few milliseconds between steps, so the
kernel keeps up with the traffic (10,000 messages in 32-41 s instead of more than 120 s).
"""
from __future__ import annotations

import math
import threading
import time

#: writes closer together than this make a burst ...
BURST_GAP = 0.05
#: ... which lasts this long after its last write; meanwhile the trainer sleeps YIELD seconds between steps
BURST_TAIL = 0.1
YIELD = 0.005
#: otherwise the trainer releases the interpreter this often (~5% of training time at the smallest sizes)
YIELD_EVERY = 0.001

#: what the loop is told at a step boundary besides "wait this many seconds" (the pace) and 0 ("step now")
STOP, RESET, PAUSED = "stop", "reset", "paused"


class Stale(ValueError):
    """A value from outside was decided on an older value than the one in use: it was not set."""


def check_pace(value) -> float | None:
    """A pace as the loop uses it: None (full speed) or a positive, finite number of steps per second."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"pace must be a number of steps per second (or None for full speed), got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"pace {value!r} is too large; use None for full speed") from None
    if v == math.inf:
        return None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"pace must be a positive number of steps per second (or None for full speed), got {value!r}")
    return v


class Controls:
    def __init__(self, optimizer, pace=None):
        self.optimizer = optimizer
        self._cond = threading.Condition()
        self._writes = 0  # counts every write: what wait_for_change waits for
        self._paused = False
        self._steps_allowed = 0  # steps granted while paused (Step button)
        self._stop_reason: str | None = None
        self._reset = False
        self._pace = check_pace(pace)
        self._last_step_at = float("-inf")
        self._last_write = float("-inf")
        self._burst_until = float("-inf")
        self._last_yield = float("-inf")
        self._ranges: dict = {}  # control -> (lo, hi): what a value from outside may be (see offer())

    # -- writers (any thread) ------------------------------------------------------------------------------------
    def set(self, **hyper):
        """Change optimizer hyperparameters (validated; takes effect at the next step)."""
        self._note_write()
        self.optimizer.set(**hyper)

    def set_lr_multiplier(self, group, value):
        self._note_write()
        self.optimizer.set_lr_multiplier(group, value)

    @property
    def pace(self) -> float | None:
        """Steps per second the run may take at most; None: as fast as it can."""
        return self._pace

    @pace.setter
    def pace(self, value):
        value = check_pace(value)
        self._changed(lambda: setattr(self, "_pace", value))

    # -- values from outside (the dashboard, any comm client): checked here and nowhere else ------------------------
    def offer_range(self, control: str, lo: float, hi: float):
        """Values `offer`ed for `control` ("lr", "momentum", ..., "lr_multiplier/<layer>" or "pace") must lie in
        [lo, hi]; for "pace", 0 is offered too and means full speed."""
        self._ranges[control] = (float(lo), float(hi))

    def offered_range(self, control: str) -> tuple:
        return self._ranges[control]

    def offer(self, control: str, raw, expected: float | None = None, in_use: bool = False) -> float:
        """A value from outside for `control`: a real number inside its offered range is set and returned;
        anything else (a string, a list, None, a bool, NaN, ±inf, a huge integer, out of range) raises ValueError
        and changes nothing. A message from a browser is data, not code: it must never reach the optimizer raw.
        With `expected` (the value the sender was showing), the value is set only if the control still holds it
        (else Stale): a value decided before a newer one arrived from code never overwrites it. With `in_use`, the
        value is the one to use at the coming step (a scheduled learning rate: the schedule goes on from it)."""
        if control not in self._ranges:
            raise ValueError(f"there is no control {control!r}")
        lo, hi = self._ranges[control]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"{raw!r} is not a number")
        try:
            value = float(raw)
        except OverflowError:
            raise ValueError(f"{raw!r} is outside {lo:g} … {hi:g}") from None
        full_speed = control == "pace" and value == 0
        if not (full_speed or math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{value!r} is outside {lo:g} … {hi:g}")
        self._note_write()
        if control == "pace":
            if not self._set_pace_if(expected, None if full_speed else value):
                raise Stale(f"the pace changed meanwhile; {value!r} was not set")
        elif in_use:
            self.optimizer.set_in_use(control, value)
        elif expected is not None:
            if not self.optimizer.set_if(control, expected, value):
                raise Stale(f"{control} changed meanwhile; {value!r} was not set")
        elif control.startswith("lr_multiplier/"):
            self.optimizer.set_lr_multiplier(control[len("lr_multiplier/"):], value)
        else:
            self.optimizer.set(**{control: value})
        return value

    def _set_pace_if(self, expected, pace) -> bool:
        """Set the pace if it still is `expected` (as the dashboard shows it: 0 for full speed), or always."""
        with self._cond:
            if expected is not None and (self._pace or 0.0) != expected:
                return False
            self._pace = pace
            self._writes += 1
            self._cond.notify_all()
        return True

    def _note_write(self):
        # rejected values count too: what matters is the traffic the kernel's threads must handle
        now = time.monotonic()
        if now - self._last_write < BURST_GAP:
            self._burst_until = now + BURST_TAIL
        self._last_write = now

    def _changed(self, change):
        """Apply `change` under the lock and wake whoever waits for a change."""
        self._note_write()
        with self._cond:
            change()
            self._writes += 1
            self._cond.notify_all()

    def pause(self):
        self._changed(lambda: setattr(self, "_paused", True))

    def resume(self):
        def go():
            self._paused, self._steps_allowed = False, 0

        self._changed(go)

    def step_once(self):
        """While paused, let exactly one more step run."""
        def grant():
            if self._paused:  # Step clicks while running must not bank steps for a later pause
                self._steps_allowed += 1

        self._changed(grant)

    def stop(self, reason: str = "stopped"):
        """End training at the next step boundary."""
        def end():
            if self._stop_reason is None:
                self._stop_reason = reason

        self._changed(end)

    def reset(self):
        """Start the run over at the next step boundary (Run.reset)."""
        self._changed(lambda: setattr(self, "_reset", True))

    def restart(self):
        """Called when a run starts (again): no stop or reset pending, no steps banked; paused stays as it is."""
        def clear():
            self._stop_reason, self._reset, self._steps_allowed = None, False, 0
            self._last_step_at = float("-inf")

        self._changed(clear)

    # -- state ------------------------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def snapshot(self) -> dict:
        hyper = self.optimizer.hyperparameters()
        return {**hyper, "paused": self._paused, "stopping": self._stop_reason is not None, "pace": self._pace}

    # -- the loop's side ----------------------------------------------------------------------------------------------
    def next_action(self):
        """What the loop does at a step boundary: STOP, RESET, PAUSED (nothing until a control changes), a number
        of seconds to wait before the next step may start (the pace), or 0: step now (and the step is counted)."""
        with self._cond:
            if self._stop_reason is not None:
                return STOP
            if self._reset:
                self._reset = False
                return RESET
            now = time.monotonic()
            if self._paused:
                if self._steps_allowed == 0:
                    return PAUSED
                self._steps_allowed -= 1  # a Step while paused runs at once, whatever the pace
            elif self._pace is not None:
                wait = self._last_step_at + 1.0 / self._pace - now
                if wait > 0:
                    return wait
            self._last_step_at = now
            return 0

    def wait_for_change(self, timeout: float | None = None):
        """Block until a control is written (or `timeout` seconds pass): how a driver waits out a pause or a pace."""
        with self._cond:
            seen = self._writes
            self._cond.wait_for(lambda: self._writes != seen, timeout)

    @property
    def writes(self) -> int:
        """How many times a control was written (an asyncio driver polls this instead of blocking)."""
        return self._writes

    def breathe(self):
        """Between steps in a worker thread: give the kernel's threads the interpreter for a moment (see the
        module's docstring)."""
        now = time.monotonic()
        if now < self._burst_until:
            time.sleep(YIELD)
        elif now - self._last_yield > YIELD_EVERY:
            time.sleep(0)  # ~50 us (the OS's timer slack): a window for the kernel's threads
            self._last_yield = now
