"""Controls: the thread-safe switchboard between a running trainer and whoever steers it.

The trainer's worker thread reads it once per step; widget callbacks, Run methods and other threads only write to
it. Hyperparameters live in the optimizer (itself thread-safe); Controls adds pause, step-once and stop.

Why the trainer gives the interpreter up between steps: every control message is handled by the kernel's own
threads (shell channel, subshell, IOPub), each of which needs the interpreter lock several times per message, and a
tight loop of small steps holds that lock until Python's switch interval (5 ms) forces it off. Measured on 2 cores
(bench/controls.py, xor size): a message cost ~40 ms. So every millisecond the trainer steps aside for a moment
(`time.sleep(0)`, ~50 us of timer slack), which brings one message's effect to ~5 ms; and while writes arrive in a
burst (a slider dragged, a flood of messages) it sleeps a few milliseconds between steps, so the kernel keeps up
with the traffic (10,000 messages in 32-41 s instead of more than 120 s).
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


class Stale(ValueError):
    """A value from outside was decided on an older value than the one in use: it was not set."""


class Controls:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self._cond = threading.Condition()
        self._paused = False
        self._steps_allowed = 0  # steps granted while paused (Step button)
        self._stop_reason: str | None = None
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

    # -- values from outside (the dashboard, any comm client): checked here and nowhere else ------------------------
    def offer_range(self, control: str, lo: float, hi: float):
        """Values `offer`ed for `control` ("lr", "momentum", ..., or "lr_multiplier/<layer>") must lie in [lo, hi]."""
        self._ranges[control] = (float(lo), float(hi))

    def offered_range(self, control: str) -> tuple:
        return self._ranges[control]

    def offer(self, control: str, raw, expected: float | None = None) -> float:
        """A value from outside for `control`: a real number inside its offered range is set and returned;
        anything else (a string, a list, None, a bool, NaN, ±inf, a huge integer, out of range) raises ValueError
        and changes nothing. A message from a browser is data, not code: it must never reach the optimizer raw.
        With `expected` (the value the sender was showing), the value is set only if the control still holds it
        (else Stale): a value decided before a newer one arrived from code never overwrites it."""
        if control not in self._ranges:
            raise ValueError(f"there is no control {control!r}")
        lo, hi = self._ranges[control]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"{raw!r} is not a number")
        try:
            value = float(raw)
        except OverflowError:
            raise ValueError(f"{raw!r} is outside {lo:g} … {hi:g}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{value!r} is outside {lo:g} … {hi:g}")
        self._note_write()
        if expected is not None:
            if not self.optimizer.set_if(control, expected, value):
                raise Stale(f"{control} changed meanwhile; {value!r} was not set")
        elif control.startswith("lr_multiplier/"):
            self.optimizer.set_lr_multiplier(control[len("lr_multiplier/"):], value)
        else:
            self.optimizer.set(**{control: value})
        return value

    def _note_write(self):
        # rejected values count too: what matters is the traffic the kernel's threads must handle
        now = time.monotonic()
        if now - self._last_write < BURST_GAP:
            self._burst_until = now + BURST_TAIL
        self._last_write = now

    def pause(self):
        self._note_write()
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self):
        self._note_write()
        with self._cond:
            self._paused = False
            self._steps_allowed = 0
            self._cond.notify_all()

    def step_once(self):
        """While paused, let exactly one more step run."""
        self._note_write()
        with self._cond:
            if self._paused:  # Step clicks while running must not bank steps for a later pause
                self._steps_allowed += 1
            self._cond.notify_all()

    def stop(self, reason: str = "stopped"):
        """End training at the next step boundary."""
        with self._cond:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._cond.notify_all()

    # -- state ------------------------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def snapshot(self) -> dict:
        hyper = self.optimizer.hyperparameters()
        return {**hyper, "paused": self._paused, "stopping": self._stop_reason is not None}

    # -- the trainer's side -------------------------------------------------------------------------------------------
    def wait_for_next_step(self) -> bool:
        """Called by the worker before each step: blocks while paused; False once training must stop."""
        now = time.monotonic()  # outside the lock (see the module's docstring)
        if now < self._burst_until:
            time.sleep(YIELD)
        elif now - self._last_yield > YIELD_EVERY:
            time.sleep(0)  # ~50 us (the OS's timer slack): a window for the kernel's threads
            self._last_yield = now
        with self._cond:
            while True:
                if self._stop_reason is not None:
                    return False
                if not self._paused:
                    return True
                if self._steps_allowed > 0:
                    self._steps_allowed -= 1
                    return True
                self._cond.wait()
