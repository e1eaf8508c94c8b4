"""Gradient panel: per layer, the norm of its parameters' gradient and of the signal backpropagated to its
output, on a log scale with a legend, and a layers x time strip (row labels, time axis) coloured by fixed log10
bands, the same for every run, where vanishing or exploding gradients stand out."""
from __future__ import annotations

import math

import numpy as np

from ..dashboard import Panel
from ..views import LayerBarsView, f32

STRIP_COLUMNS = 120


def strip(history, layers, prefix, cols=STRIP_COLUMNS):
    """float32 [layers, cols]: log10 of `prefix/<layer>` averaged over equal slices of the steps so far."""
    n = len(history.get("step", []))
    if n == 0:
        return np.zeros((len(layers), 0), np.float32)
    cols = min(cols, n)
    edges = np.linspace(0, n, cols + 1).astype(int)
    out = np.full((len(layers), cols), np.nan, np.float32)
    for i, layer in enumerate(layers):
        values = np.asarray(history.get(f"{prefix}/{layer}", [])[:n], np.float64)
        if values.size < n:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(values)
            out[i] = np.add.reduceat(logs, edges[:-1]) / np.diff(edges)
    return out


def latest(history, key):
    values = history.get(key)
    return values[-1] if values else math.nan


class GradientPanel(Panel):
    order = 20

    def __init__(self, run):
        super().__init__(run)
        self.layers = list(run.layers)
        self.widget = LayerBarsView(title="Gradient magnitude per layer (log scale)", layers=self.layers,
                                    series=["gradient of the parameters |dL/dW|",
                                            "backpropagated signal |dL/d output|"])

    def update(self, run):
        h = run.history
        values = [[latest(h, f"grad_norm/{layer}"), latest(h, f"signal_norm/{layer}")] for layer in self.layers]
        self.widget.values = f32(values)
        s = strip(h, self.layers, "grad_norm")
        self.widget.strip_cols = s.shape[1]
        self.widget.strip_steps = len(h.get("step", []))
        self.widget.strip = s.tobytes()
