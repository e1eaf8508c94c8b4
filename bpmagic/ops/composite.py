"""Composites: functions built from primitives, so their gradients come for free.

softmax, log_softmax, logsumexp, the losses and layer_norm are here rather than primitives (tinygrad's lesson:
keep the primitive set small). Each is numerically stable: they subtract the maximum before exponentiating.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import elementwise as _ew
from . import reduce as _reduce
from . import shape as _shape
from .core import composite

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "mse", "binary_cross_entropy", "layer_norm",
           "clip", "one_hot"]


@composite
def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) over `axis`, computed without overflow."""
    m = _ew.stop_gradient(_reduce.max(x, axis=axis, keepdims=True))
    out = _ew.log(_reduce.sum(_ew.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else _shape.squeeze(out, axis)


@composite
def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities along `axis`."""
    return x - logsumexp(x, axis=axis, keepdims=True)


@composite
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`: probabilities that sum to 1."""
    e = _ew.exp(x - _ew.stop_gradient(_reduce.max(x, axis=axis, keepdims=True)))
    return e / _reduce.sum(e, axis=axis, keepdims=True)


@composite
def one_hot(labels, num_classes, dtype=np.float32):
    """(…,) integer labels -> (…, num_classes) rows of 0 and 1."""
    return _ew.astype(_ew.equal(_shape.expand_dims(labels, -1), np.arange(num_classes)), dtype)


@composite
def cross_entropy(logits, labels):
    """Mean cross-entropy between (N, C) logits and integer labels (N,) or one-hot / probability rows (N, C)."""
    logp = log_softmax(logits, axis=-1)
    if np.dtype(labels.dtype).kind in "iu":
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            raise ShapeError(f"cross_entropy of {tuple(logits.shape)} and {tuple(labels.shape)}: integer labels "
                             f"must have shape {tuple(logits.shape[:-1])} (one class index per row)")
        values = getattr(labels, "value", labels)  # concrete even while tracing: check the labels we can see
        n_classes = logits.shape[-1]
        if values.size and (int(values.min()) < 0 or int(values.max()) >= n_classes):
            raise ShapeError(f"cross_entropy of {tuple(logits.shape)} and {tuple(labels.shape)}: labels must be "
                             f"class indices in [0, {n_classes}), got {int(values.min())}..{int(values.max())}")
        # a one-hot mask rather than logp[rows, labels]: its backward is a multiply, not a scatter-add
        mask = _ew.equal(_shape.expand_dims(labels, -1), np.arange(logits.shape[-1]))
        return -_reduce.mean(_reduce.sum(logp * mask, axis=-1))
    if tuple(labels.shape) != tuple(logits.shape):
        raise ShapeError(f"cross_entropy of {tuple(logits.shape)} and {tuple(labels.shape)}: one-hot targets must "
                         "have the logits' shape (or pass integer class labels)")
    return -_reduce.mean(_reduce.sum(labels * logp, axis=-1))


def _same_shape(name, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ShapeError(f"{name} of {tuple(a.shape)} and {tuple(b.shape)}: prediction and target must have the same "
                         "shape (reshape one of them, e.g. y.reshape(-1, 1))")


@composite
def mse(pred, target):
    """Mean squared error."""
    _same_shape("mse", pred, target)
    return _reduce.mean(_ew.square(pred - target))


@composite
def binary_cross_entropy(p, y, eps=1e-7):
    """Mean of -(y log p + (1 - y) log(1 - p)) for probabilities p; p is clipped to [eps, 1 - eps]."""
    _same_shape("binary_cross_entropy", p, y)
    p = clip(p, eps, 1 - eps)
    return -_reduce.mean(y * _ew.log(p) + (1 - y) * _ew.log(1 - p))


@composite
def layer_norm(x, axis=-1, eps=1e-5):
    """(x - mean) / sqrt(var + eps) over `axis` (no learned scale or shift: multiply and add params for those)."""
    mu = _reduce.mean(x, axis=axis, keepdims=True)
    d = x - mu
    var = _reduce.mean(_ew.square(d), axis=axis, keepdims=True)
    return d / _ew.sqrt(var + eps)


@composite
def clip(x, lo, hi):
    """x limited to [lo, hi]."""
    return _ew.minimum(_ew.maximum(x, lo), hi)
