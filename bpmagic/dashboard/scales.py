"""The dashboard's axes, computed once, in Python: a browser view receives its axis as data together with the values
it frames (one message), and the static image (static.py) draws the same axis, so both show the same range, ticks
and labels. The views only map each value onto the axis they were given."""
from __future__ import annotations

import math

import numpy as np

from .numbers import number


def tick_labels(lo: float, hi: float, n: int, log: bool = True) -> list:
    """n labels for positions lo..hi (log10 positions, or values), with the fewest significant digits that keeps
    them distinct (never "2.4, 2.4")."""
    values = [(10 ** p if log else p) for p in (lo + (hi - lo) * i / (n - 1) for i in range(n))]
    for digits in range(2, 7):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == n:
            return labels
    return labels


def shown(values: np.ndarray, log: bool) -> np.ndarray:
    """Which values a chart can place: finite ones, and on a log scale positive ones."""
    return np.isfinite(values) & (values > 0) if log else np.isfinite(values)


def curve_axes(steps, values, *, log: bool, label: str, previous_steps=(), clipped=False) -> dict:
    """The loss chart's axes over every curve it draws (`values`: each curve's values, float32 as sent): {} while
    there is nothing to place, else {"x": [first, last step], "y": [lo, hi] (log10 on a log scale), "ticks": 5
    labels from the bottom up, "end": "step N", "caption": what the chart shows and what its colours mean}."""
    values = np.concatenate([np.asarray(v, np.float64).ravel() for v in values]) if len(values) else np.zeros(0)
    ok = values[shown(values, log)]
    if not len(steps) or not len(ok):
        return {}
    ys = np.log10(ok) if log else ok
    lo, hi = float(ys.min()), float(ys.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x0 = float(min(steps[0], previous_steps[0])) if len(previous_steps) else float(steps[0])
    x1 = max(float(steps[-1]), float(previous_steps[-1]) if len(previous_steps) else 0.0, x0 + 1)
    notes = (" · grey: before Reset" if len(previous_steps) else "") + (" · orange: clipped" if clipped else "")
    return {"x": [x0, x1], "y": [lo, hi], "ticks": tick_labels(lo, hi, 5, log), "end": f"step {round(x1)}",
            "caption": f"{label} ({'log scale' if log else 'linear'}) from step {round(x0)}{notes}"}


def decade_axis(values, reference: float = 0.0) -> dict:
    """The bars' log axis, in whole decades around the positive values (and the reference line): {"lo", "hi"
    (log10), "ticks": [[where in 0..1, label], ...], one per decade or per few decades, each label once}."""
    values = np.asarray(values, np.float64).ravel()
    logs = list(np.log10(values[np.isfinite(values) & (values > 0)]))
    if reference > 0:
        logs.append(math.log10(reference))
    lo = math.floor(min(logs)) if logs else -6
    hi = max(math.ceil(max(logs)), lo + 1) if logs else 1
    step = max(1, math.ceil((hi - lo) / 6))
    ticks = [[(d - lo) / (hi - lo), number(10.0 ** d) if -3 <= d < 4 else f"1e{d}"]  # a decade reads 1e-4
             for d in range(lo, hi + 1, step)]
    return {"lo": lo, "hi": hi, "ticks": ticks}


def fraction(v: float, axis: dict) -> float:
    """Where v sits on a decade axis, 0..1 (0 for a value the axis cannot place)."""
    if not (v > 0 and math.isfinite(v)):
        return 0.0
    return min(max((math.log10(v) - axis["lo"]) / (axis["hi"] - axis["lo"]), 0.0), 1.0)


def layer_lines_axes(steps, values, workers: int) -> dict:
    """The per-worker lines' axes: `values` float [layers, 1 + workers, points], the averaged gradient's norm first,
    then each worker's. {} while there is nothing to place, else {"x": [first, last step], "rows": per layer
    [lo, hi] (log10, over all its lines) or None where none can be placed, "ticks": per layer [label at hi, at lo],
    "end": "step N", "caption": what the thick and thin lines are}."""
    values = np.asarray(values, np.float64)
    if not len(steps) or values.size == 0:
        return {}
    rows, ticks = [], []
    for layer in values:
        ok = layer[shown(layer, True)]
        if not len(ok):
            rows.append(None)
            ticks.append(["", ""])
            continue
        lo, hi = float(np.log10(ok.min())), float(np.log10(ok.max()))
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        rows.append([lo, hi])
        ticks.append(tick_labels(lo, hi, 2)[::-1])
    if all(r is None for r in rows):
        return {}
    x0, x1 = float(steps[0]), max(float(steps[-1]), float(steps[0]) + 1)
    return {"x": [x0, x1], "rows": rows, "ticks": ticks, "start": f"step {round(x0)}", "end": f"step {round(x1)}",
            "caption": f"|dL/dW| per layer over time (log scale): the {workers} workers' noise partly cancels in "
                       "their average"}
