"""Gradient panel: per layer, the norm of its parameters' gradient and of the signal backpropagated to its
output, on a log scale with a legend, and a layers x time strip (row labels, time axis) coloured by fixed log10
bands, the same for every run, where vanishing or exploding gradients stand out."""
from __future__ import annotations

import numpy as np

from ...train.stats import GRAD_NORM, SIGNAL_NORM
from ..dashboard import Panel
from ..views import LayerBarsView

STRIP_COLUMNS = 120
# entries read per column: the strip is redrawn ~10 times a second from a history that grows by thousands of steps a
# second, so it reads a fixed number of evenly spaced steps, never the whole history (that grew quadratically and
# starved the kernel's message handling on long runs)
SAMPLES_PER_COLUMN = 16


def strip(history, layers, stat, cols=STRIP_COLUMNS):
    """float32 [layers, cols]: log10 of the LayerStat `stat` averaged over equal slices of the steps so far (from up to
    SAMPLES_PER_COLUMN evenly spaced steps per slice)."""
    n = len(history.get("step", []))
    if n == 0:
        return np.zeros((len(layers), 0), np.float32)
    cols = min(cols, n)
    take = np.unique(np.linspace(0, n - 1, min(n, cols * SAMPLES_PER_COLUMN)).astype(np.intp))
    column = take * cols // n  # intp: bincount takes the platform's index type (int32 on wasm32)
    per_column = np.bincount(column, minlength=cols)
    out = np.full((len(layers), cols), np.nan, np.float32)
    for i, layer in enumerate(layers):
        values = history.get(stat.column(layer), [])
        if len(values) < n:
            continue
        sampled = np.fromiter((values[j] for j in take), np.float64, len(take))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i] = np.bincount(column, np.log10(sampled), minlength=cols) / per_column
    return out


class GradientPanel(Panel):
    order = 20

    def __init__(self, run):
        super().__init__(run)
        self.layers = list(run.layers)
        self.widget = LayerBarsView(title="Gradient magnitude per layer (log scale)", layers=self.layers,
                                    series=[GRAD_NORM.label, SIGNAL_NORM.label])

    def update(self, run):
        h = run.history
        values = [[GRAD_NORM.latest(h, layer), SIGNAL_NORM.latest(h, layer)] for layer in self.layers]
        self.widget.show(values)
        s = strip(h, self.layers, GRAD_NORM)
        self.widget.strip_cols = s.shape[1]
        self.widget.strip_steps = len(h.get("step", []))
        self.widget.strip = s.tobytes()
