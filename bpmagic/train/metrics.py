"""Metrics: numbers a run reports beside its loss, computed by the compiled step (accuracy, a learner's own), and
early stopping on them.

A model reports a metric with `report(name, value)` (a cell's `acc: Metric = ...` does): while the training step is
traced, the value becomes an output of the step graph, measured like the statistics (a history column); while the
model is evaluated (validation), the value is collected for the `val_<name>` column. `accuracy` needs no line in the
model: it is read from the classification loss's own inputs (cross_entropy's logits and classes, or
binary_cross_entropy's probabilities and labels).
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

from ..errors import BackpropError

_collected: contextvars.ContextVar = contextvars.ContextVar("bpmagic_metrics", default=None)

#: metrics a run can add by name (--metrics accuracy)
BUILT_IN = ("accuracy",)


def report(name: str, value):
    """Report `value` (a scalar) as this evaluation's metric `name`; returns the value."""
    found = _collected.get()
    if found is not None:
        shape = tuple(getattr(value, "shape", ()))
        if shape != ():
            raise BackpropError(f"the Metric {name} must be a scalar, but it has shape {shape}; reduce it, e.g. "
                                f"mean(...)")
        found[name] = value
    return value


@contextlib.contextmanager
def collecting():
    """Within this block, report() collects into the dict it yields (name -> value)."""
    found: dict = {}
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


def classification_inputs(trace, start: int = 0):
    """(loss, scores, target): the classification loss ("cross_entropy" or "binary_cross_entropy") of the model
    traced in `trace` (from equation `start` on) and the tracers of its two inputs (logits or probabilities, and the
    classes or labels); None when the model has none."""
    tracers = trace.tracers
    for loss in ("cross_entropy", "binary_cross_entropy"):
        scope = [e for e in trace.eqns[start:] if e.scope and e.scope[0] == loss]
        if not scope:
            continue
        made = {o for e in scope for o in e.outputs}
        outside = list(dict.fromkeys(v for e in scope for v in e.inputs
                                     if v in tracers and v not in made and v not in trace.consts))
        if len(outside) >= 2:
            return loss, tracers[outside[0]], tracers[outside[1]]
    return None


def accuracy_from(trace, start: int = 0):
    """The classification accuracy of the model traced in `trace` (from equation `start` on), read from its loss's
    inputs: the fraction of the batch whose highest logit is the target class (cross_entropy), or whose probability
    is on the target's side of 0.5 (binary_cross_entropy). None when the model has no classification loss."""
    from .. import ops

    found = classification_inputs(trace, start)
    if found is None:
        return None
    loss, scores, target = found
    if loss == "binary_cross_entropy":
        return ops.mean(ops.astype(ops.equal(scores > 0.5, target > 0.5), scores.dtype))
    if len(target.shape) == len(scores.shape):  # one-hot (or soft) targets: their highest entry is the class
        target = ops.argmax(target, axis=-1)
    hit = ops.equal(ops.argmax(scores, axis=-1), target)
    return ops.mean(ops.astype(hit, scores.dtype))


def evaluate(step, params: dict, batch, names=()) -> dict:
    """The model's loss and metrics on `batch` (validation), evaluated as a drawing is — dropout off, nothing
    updated: {"loss": ..., metric: ...} as numbers; `names` are the built-in metrics asked for (accuracy)."""
    from ..tracing import new_trace

    backend = step.backend
    with new_trace(backend) as tr, collecting() as found:
        traced = {n: tr.new_input(a, name=n) for n, a in params.items()}
        loss, _ = step.call_loss(traced, [tr.new_input(b) for b in batch])
        values = {"loss": loss, **found}
        if "accuracy" in names:
            values["accuracy"] = accuracy_from(tr)
    return {k: float(backend.to_numpy(getattr(v, "value", v))) for k, v in values.items() if v is not None}


class EarlyStopping:
    """Ends a run when `monitor` has not improved for `patience` epochs: a loss is better lower, any other metric
    higher. Optionally keeps the parameters of the best epoch, to restore them at the end."""

    def __init__(self, patience: int, monitor: str = "val_loss", restore_best: bool = False):
        if isinstance(patience, bool) or int(patience) != patience or patience < 1:
            raise BackpropError(f"early stopping's patience is a whole number of epochs, at least 1; got {patience!r}")
        self.patience, self.monitor, self.restore_best = int(patience), monitor, restore_best
        self.lower_is_better = monitor.endswith("loss")
        self.best, self.best_epoch, self.best_params = None, None, None

    def restart(self):
        self.best, self.best_epoch, self.best_params = None, None, None

    def epoch_ended(self, epoch: int, value: float, params: dict, to_host) -> bool:
        """Note the monitored `value` of `epoch` (0-based); True when the run should stop."""
        if value is None or not math.isfinite(value):
            return False
        better = self.best is None or (value < self.best if self.lower_is_better else value > self.best)
        if better:
            self.best, self.best_epoch = value, epoch
            if self.restore_best:
                self.best_params = {n: np.array(to_host(p)) for n, p in params.items()}
        return epoch - self.best_epoch >= self.patience

    def reason(self) -> str:
        return (f"{self.monitor} did not improve for {self.patience} epochs (best {self.best:.4g} after epoch "
                f"{self.best_epoch + 1})")
