"""Gradient panel: per layer, the norm of its parameters' gradient and of the signal backpropagated to its
output, on a log scale with a legend, and a layers x time strip (row labels, time axis) coloured by fixed log10
bands, the same for every run, where vanishing or exploding gradients stand out. A run on workers adds, per layer
over time, each worker's own gradient norm as thin lines around the averaged gradient's: averaging narrows the
spread."""
from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter

import ipywidgets as widgets
import numpy as np

from ...train.stats import GRAD_NORM, SIGNAL_NORM, worker_column
from ..dashboard import Panel
from ..views import LayerBarsView, LayerLinesView

STRIP_COLUMNS = 120
# entries read per column: the strip is redrawn ~10 times a second from a history that grows by thousands of steps a
# second, so it reads a fixed number of evenly spaced steps, never the whole history (that grew quadratically and
# starved the kernel's message handling on long runs)
SAMPLES_PER_COLUMN = 16


def strip(history, layers, stat, cols=STRIP_COLUMNS):
    """float32 [layers, cols]: log10 of the LayerStat `stat` averaged over equal slices of the steps so far (from up to
    SAMPLES_PER_COLUMN evenly spaced steps per slice)."""
    # a run on workers relays its statistics a moment after its steps: the strip ends where every layer's column does
    n = min([len(history.get("step", []))] + [len(history[c]) for c in map(stat.column, layers) if history.get(c)])
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


LINE_POINTS = 300  # steps per line: read evenly spaced from the history, like the strip's samples


def worker_lines(history, layers, workers: int, points=LINE_POINTS):
    """(steps [p], values float32 [layers, 1 + workers, p]): per layer the averaged gradient's norm, then each
    worker's (history columns "grad_norm/<layer>", "worker<r>/grad_norm/<layer>"), at up to `points` evenly spaced
    steps that always reach the last one. A value not yet recorded (the relay extends column after column) is NaN."""
    steps = history.get("step", [])
    n = len(steps)
    take = np.unique(np.linspace(0, n - 1, min(n, points)).astype(np.intp)).tolist() if n else []
    out = np.full((len(layers), 1 + workers, len(take)), np.nan, np.float32)
    for i, layer in enumerate(layers):
        for j, column in enumerate([GRAD_NORM.column(layer)] + [worker_column(r, layer) for r in range(workers)]):
            values = history.get(column) or []
            have = bisect_left(take, len(values))  # the sampled steps this column has reached
            out[i, j, :have] = _picked(values, take[:have])  # None (nothing measured) reads NaN
    return np.asarray(_picked(steps, take), np.float32), out


def _picked(values, indices) -> tuple:
    """values[k] for each k, in C (itemgetter): 10 times a second, for every layer and worker."""
    if len(indices) == 0:
        return ()
    picked = itemgetter(*indices)(values)
    return picked if len(indices) > 1 else (picked,)


class GradientPanel(Panel):
    order = 20

    def __init__(self, run):
        super().__init__(run)
        self.layers = list(run.layers)
        self.bars = self.widget = LayerBarsView(title="Gradient magnitude per layer (log scale)", layers=self.layers,
                                                series=[GRAD_NORM.label, SIGNAL_NORM.label])
        self.workers = getattr(run, "workers", 1)  # a run on workers (WorkersRun) says how many
        self.lines = None
        if self.workers > 1:
            self.lines = LayerLinesView(
                title=f"Gradient per worker over time ({self.workers} workers)", layers=self.layers,
                workers=self.workers, series=[f"averaged over the {self.workers} workers: the update's",
                                              "each worker's own, on its share of the batch"])
            self.widget = widgets.VBox([self.bars, self.lines])

    def update(self, run):
        h = run.history
        with self.bars.hold_sync():  # each view's changes in one message
            values = [[GRAD_NORM.latest(h, layer), SIGNAL_NORM.latest(h, layer)] for layer in self.layers]
            self.bars.show(values)
            s = strip(h, self.layers, GRAD_NORM)
            self.bars.strip_cols = s.shape[1]
            self.bars.strip_steps = len(h.get("step", []))
            self.bars.strip = s.tobytes()
        if self.lines is not None:
            with self.lines.hold_sync():
                self.lines.show(*worker_lines(h, self.layers, self.workers))

    def static_svg(self, width: int, y: float):
        from ..static import bars_svg, lines_svg

        elements, height = bars_svg(self.bars, width, y)
        if self.lines is None:
            return elements, height
        more, more_height = lines_svg(self.lines, width, y + height + 8)
        return elements + more, height + 8 + more_height

    def close(self):
        for view in (self.bars, self.lines):
            if view is not None:
                view.close()
        super().close()
