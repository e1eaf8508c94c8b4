"""Controls: the thread-safe switchboard between a running trainer and whoever steers it.

The trainer's worker thread reads it once per step; widget callbacks, Run methods and other threads only write to
it. Hyperparameters live in the optimizer (itself thread-safe); Controls adds pause, step-once and stop.
"""
from __future__ import annotations

import threading


class Controls:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self._cond = threading.Condition()
        self._paused = False
        self._steps_allowed = 0  # steps granted while paused (Step button)
        self._stop_reason: str | None = None

    # -- writers (any thread) ------------------------------------------------------------------------------------
    def set(self, **hyper):
        """Change optimizer hyperparameters (validated; takes effect at the next step)."""
        self.optimizer.set(**hyper)

    def set_lr_multiplier(self, group, value):
        self.optimizer.set_lr_multiplier(group, value)

    def pause(self):
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self):
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def step_once(self):
        """While paused, let exactly one more step run."""
        with self._cond:
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
