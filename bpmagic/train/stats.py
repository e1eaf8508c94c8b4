"""The per-layer statistics of a training step: one schema, computed by the step graph, recorded by the trainer as
history columns and read by the dashboard's panels, under the same names everywhere ("grad_norm/<layer>")."""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

import numpy as np

from .. import ops


@dataclass(frozen=True)
class LayerStat:
    """One statistic measured for every layer at every step; `column(layer)` is its key in step.last.stats and in
    run.history; `label` is how a dashboard names it."""

    name: str
    label: str

    def column(self, layer) -> str:
        return f"{self.name}/{layer}"

    def latest(self, history, layer) -> float:
        """Its value at the last recorded step (NaN before the first)."""
        values = history.get(self.column(layer))
        return values[-1] if values else math.nan


# the norm of the gradient of the layer's parameters
GRAD_NORM = LayerStat("grad_norm", "gradient of the parameters |dL/dW|")
# the norm of the signal backpropagation delivers to the layer's output (the textbook delta)
SIGNAL_NORM = LayerStat("signal_norm", "backpropagated signal |dL/d output|")
# how far one step moves the layer's parameters, relative to their size
UPDATE_RATIO = LayerStat("update_ratio", "update / weights")
LAYER_STATS = (GRAD_NORM, SIGNAL_NORM, UPDATE_RATIO)


# what the step graph computes per layer: sums of squares, cheap to reduce on the device; the norms and the ratio are
# taken from them on the host, where a layer with all-zero weights gets a NaN ratio without a warning
GRAD, UPDATE, PARAM, SIGNAL = "grad", "update", "param", "signal"
# in a data-parallel run, each worker's own gradient (before the workers meet), keyed ((WORKER_GRAD, rank), layer):
# its norm is the column "worker<rank>/grad_norm/<layer>", beside the averaged gradient's "grad_norm/<layer>"
WORKER_GRAD = "worker_grad"


def worker_column(rank: int, layer) -> str:
    return f"worker{rank}/{GRAD_NORM.column(layer)}"


def sum_of_squares(x):
    """The sum of x's squared elements, as one BLAS dot of x as a row with x as a column (two views): no temporary
    and one pass, 4x faster than x * x summed at 784x1024 (2-core machine), as fast at 2x8. A float narrower than
    float32 is summed in float32: float16's squares overflow from |x| ~ 256, far short of a run that explodes."""
    if np.dtype(x.dtype).name in ("float16", "bfloat16"):
        x = ops.astype(x, np.float32)
    if len(x.shape) == 0:
        return x * x
    return ops.reshape(ops.reshape(x, (1, -1)) @ ops.reshape(x, (-1, 1)), ())


def layer_outputs(eqns, layers: dict) -> dict:
    """layer -> the Var where that layer's parameters have all entered (z = x @ W + b): its output.

    `layers` maps a layer name to the Vars of its parameters. The adjoint at this Var is the signal that
    backpropagation delivers to the layer (the textbook delta).
    """
    owner = {v: layer for layer, vs in layers.items() for v in vs}
    deps: dict = {v: {owner[v]: {v}} for v in owner}
    found = {}
    for e in eqns:
        merged: dict = {}
        for v in e.inputs:
            for layer, vs in deps.get(v, {}).items():
                merged.setdefault(layer, set()).update(vs)
        if not merged:
            continue
        out = e.outputs[0]
        deps[out] = merged
        for layer, vs in merged.items():
            if layer not in found and len(vs) == len(layers[layer]):
                found[layer] = out
    return found


def layer_sums(layers: dict, grad_sq: dict, params: dict, new_params: dict, signals: dict) -> dict:
    """{(sum, layer): traced sum of squares}, for the step graph. `layers` maps a layer to its params' names;
    grad_sq holds each param's gradient's sum of squares (the step's guard checks those too); `signals` each
    layer's adjoint at its output, where backpropagation reached one."""
    sums = {}
    for layer, names in layers.items():
        total = functools.partial(functools.reduce, operator.add)
        sums[(GRAD, layer)] = total(grad_sq[n] for n in names)
        sums[(UPDATE, layer)] = total(sum_of_squares(new_params[n] - params[n]) for n in names)
        sums[(PARAM, layer)] = total(sum_of_squares(params[n]) for n in names)
        if layer in signals:
            signal = signals[layer]
            signal._bp_var.name = signal._bp_var.name or f"signal at layer {layer}"  # as printed and drawn
            sums[(SIGNAL, layer)] = sum_of_squares(signal)
    return sums


def from_sums(sums: dict) -> dict:
    """{(sum, layer): value} from layer_sums, as numbers -> {column: value} for every LayerStat."""
    columns = from_sum_rows(list(sums), np.asarray([list(sums.values())], np.float64))
    return {column: float(values[0]) for column, values in columns.items()}


def from_sum_rows(keys: list, rows) -> dict:
    """The same for many steps at once: `rows` [steps, len(keys)] of sums -> {column: values over the steps}."""
    at = {key: i for i, key in enumerate(keys)}
    rows = np.asarray(rows, np.float64)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for layer in dict.fromkeys(layer for _, layer in keys):
            g, u, w = (rows[:, at[(k, layer)]] for k in (GRAD, UPDATE, PARAM))
            out[GRAD_NORM.column(layer)] = np.sqrt(g)
            signal = at.get((SIGNAL, layer))
            out[SIGNAL_NORM.column(layer)] = np.sqrt(rows[:, signal]) if signal is not None else np.full(len(rows),
                                                                                                           math.nan)
            out[UPDATE_RATIO.column(layer)] = np.where(w > 0, np.sqrt(u) / np.sqrt(w), math.nan)
        for key, i in at.items():
            if isinstance(key[0], tuple) and key[0][0] == WORKER_GRAD:
                out[worker_column(key[0][1], key[1])] = np.sqrt(rows[:, i])
    return out
