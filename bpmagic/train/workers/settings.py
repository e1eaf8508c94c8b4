"""The settings the workers agree on at every meeting: the run's controls (version, pause, Step, stop, pace, Reset,
the hyperparameters, the layers' multipliers) as the vector of floats the step's allreduce carries from rank 0."""
from __future__ import annotations

import numpy as np

from ..controls import Controls


class Settings:
    """The run's settings as the vector the step's allreduce carries from rank 0 (float64): version, paused,
    steps granted while paused, stop (0, 1 stopped, 2 interrupted), pace (0: full speed), resets asked for, every
    declared hyperparameter, every layer's learning-rate multiplier."""

    FIXED = ("version", "paused", "steps", "stop", "pace", "resets")
    STOPS = (None, "stopped", "interrupted")

    def __init__(self, hypers, layers):
        self.hypers, self.layers = tuple(hypers), tuple(layers)

    @property
    def size(self) -> int:
        return len(self.FIXED) + len(self.hypers) + len(self.layers)

    def encode(self, s: dict) -> np.ndarray:
        stop = self.STOPS.index(s["stop"]) if s["stop"] in self.STOPS else 1
        return np.array([s["version"], s["paused"], s["steps"], stop, s["pace"] or 0.0, s["resets"],
                         *(float(s["hyper"][h]) for h in self.hypers),
                         *(float(s["multipliers"].get(layer, 1.0)) for layer in self.layers)], np.float64)

    def decode(self, v) -> dict:
        n = len(self.FIXED)
        return {"version": int(v[0]), "paused": bool(v[1]), "steps": int(v[2]), "stop": self.STOPS[int(v[3])],
                "pace": float(v[4]) or None, "resets": int(v[5]), "hyper": dict(zip(self.hypers, v[n:n + len(self.hypers)].tolist())),
                "multipliers": dict(zip(self.layers, v[n + len(self.hypers):].tolist()))}


def settings_of(controls: Controls, version: int, steps: int, resets: int = 0) -> dict:
    """What the notebook's Controls ask for now, as Settings encodes it."""
    hyper = controls.optimizer.hyperparameters()
    multipliers = hyper.pop("lr_multipliers", {})
    return {"version": version, "paused": controls.paused, "steps": steps, "stop": controls.stop_reason,
            "pace": controls.pace, "resets": resets, "hyper": hyper, "multipliers": multipliers}
