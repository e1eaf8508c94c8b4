"""The per-layer statistics of a training step: one schema, computed by the step graph, recorded by the trainer as
history columns and read by the dashboard's panels, under the same names everywhere ("grad_norm/<layer>")."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerStat:
    """One statistic measured for every layer at every step; `column(layer)` is its key in step.last.stats and in
    run.history."""

    name: str
    meaning: str

    def column(self, layer) -> str:
        return f"{self.name}/{layer}"

    def latest(self, history, layer) -> float:
        """Its value at the last recorded step (NaN before the first)."""
        values = history.get(self.column(layer))
        return values[-1] if values else math.nan


GRAD_NORM = LayerStat("grad_norm", "|dL/dW|: the norm of the gradient of the layer's parameters")
SIGNAL_NORM = LayerStat("signal_norm", "|dL/d output|: the norm of the signal backpropagation delivers to the "
                                       "layer's output (the textbook delta)")
UPDATE_RATIO = LayerStat("update_ratio", "|update| / |W|: how far one step moves the layer's parameters, relative "
                                         "to their size")
LAYER_STATS = (GRAD_NORM, SIGNAL_NORM, UPDATE_RATIO)


# what the step graph computes per layer: sums of squares, cheap to reduce on the device; the norms and the ratio are
# taken from them on the host, where a layer with all-zero weights can get a NaN ratio without a warning
SUMS = ("grad", "update", "param", "signal")


def from_sums(sums: dict) -> dict:
    """{(sum, layer): value} (sum in SUMS; "signal" only for layers the backward pass reaches) -> {column: value}
    for every LayerStat."""
    out = {}
    for layer in dict.fromkeys(layer for _, layer in sums):
        g, u, w = (sums[(k, layer)] for k in ("grad", "update", "param"))
        out[GRAD_NORM.column(layer)] = math.sqrt(g)
        signal = sums.get(("signal", layer))
        out[SIGNAL_NORM.column(layer)] = math.sqrt(signal) if signal is not None else math.nan
        out[UPDATE_RATIO.column(layer)] = math.sqrt(u) / math.sqrt(w) if w > 0 else math.nan
    return out
