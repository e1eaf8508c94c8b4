"""Composites: functions built from primitives, so their gradients come for free.

softmax, log_softmax, logsumexp, the losses and layer_norm are here rather than primitives (tinygrad's lesson:
keep the primitive set small). Each is numerically stable: they subtract the maximum before exponentiating.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import elementwise as _ew
from . import reduce as _reduce
from . import samples as S
from . import shape as _shape
from .core import composite


def _axis_cases(*cases):
    """samples(rng) from (shape, kwargs) pairs, normal inputs."""
    return lambda rng: [((S.normal(rng, *shape),), dict(kw)) for shape, kw in cases]

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "mse", "binary_cross_entropy", "layer_norm",
           "clip", "one_hot"]


@composite(samples=_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((3, 4), dict(axis=1, keepdims=True)),
                             ((2, 3, 4), dict(axis=(0, 2))), ((3, 4), dict(axis=None)), ((5,), {})),
           reference=lambda jax: lambda x, axis=-1, keepdims=False: jax.scipy.special.logsumexp(
               x, axis=axis, keepdims=keepdims), numpy_name=None)
def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) over `axis`, computed without overflow."""
    m = _ew.stop_gradient(_reduce.max(x, axis=axis, keepdims=True))
    out = _ew.log(_reduce.sum(_ew.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else _shape.squeeze(out, axis)


@composite(samples=_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((2, 3, 4), dict(axis=1))),
           reference=lambda jax: jax.nn.log_softmax, numpy_name=None)
def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities along `axis`."""
    return x - logsumexp(x, axis=axis, keepdims=True)


@composite(samples=S.join(_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((2, 3, 4), dict(axis=1)),
                                    ((3, 1), dict(axis=1))),
                         lambda rng: [((30 * S.normal(rng, 2, 3),), {})]),  # large logits: no overflow
           reference=lambda jax: jax.nn.softmax, numpy_name=None)
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`: probabilities that sum to 1."""
    e = _ew.exp(x - _ew.stop_gradient(_reduce.max(x, axis=axis, keepdims=True)))
    return e / _reduce.sum(e, axis=axis, keepdims=True)


@composite(samples=lambda rng: [((np.array([0, 2, 1, 2]), 3), {}),
                                ((np.array([[1, 0], [3, 3]]), 4), dict(dtype=np.float64))],
           reference=lambda jax: lambda labels, num_classes, dtype=np.float32: jax.nn.one_hot(labels, num_classes,
                                                                                                dtype=dtype),
           differentiable=False, numpy_name=None)
def one_hot(labels, num_classes, dtype=np.float32):
    """(…,) integer labels -> (…, num_classes) rows of 0 and 1."""
    return _ew.astype(_ew.equal(_shape.expand_dims(labels, -1), np.arange(num_classes)), dtype)


def _cross_entropy_samples(rng):
    return [((S.normal(rng, 4, 3), np.array([0, 2, 1, 2])), {}),
            ((S.normal(rng, 2, 3, 4), np.array([[0, 3, 3], [1, 2, 0]])), {}),
            ((S.normal(rng, 4, 3), np.eye(3)[[0, 2, 1, 2]]), {}),  # one-hot rows, differentiated too
            ((S.normal(rng, 4, 3), S.uniform_in(rng, 0, 1, 4, 3)), {})]  # soft labels


def _cross_entropy_reference(jax):
    def cross_entropy(logits, labels):
        logp = jax.nn.log_softmax(logits, axis=-1)
        if np.dtype(labels.dtype).kind in "iu":
            labels = jax.nn.one_hot(labels, logits.shape[-1], dtype=logp.dtype)
        return -jax.numpy.mean(jax.numpy.sum(labels * logp, axis=-1))

    return cross_entropy


@composite(samples=_cross_entropy_samples, reference=_cross_entropy_reference, numpy_name=None)
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


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), S.normal(rng, 3, 4)), {}),
                                ((S.normal(rng, 5), S.normal(rng, 5)), {}),
                                ((S.normal(rng), S.normal(rng)), {})],
           reference=lambda jax: lambda p, t: jax.numpy.mean((p - t) ** 2), numpy_name=None)
def mse(pred, target):
    """Mean squared error."""
    _same_shape("mse", pred, target)
    return _reduce.mean(_ew.square(pred - target))


@composite(samples=lambda rng: [((S.uniform_in(rng, 0.05, 0.95, 3, 4), S.uniform_in(rng, 0, 1, 3, 4)), {}),
                                ((S.uniform_in(rng, 0.05, 0.95, 5), np.array([0.0, 1, 1, 0, 1])), {})],
           reference=lambda jax: lambda p, y, eps=1e-7: -jax.numpy.mean(
               y * jax.numpy.log(jax.numpy.clip(p, eps, 1 - eps))
               + (1 - y) * jax.numpy.log(1 - jax.numpy.clip(p, eps, 1 - eps))),
           numpy_name=None)
def binary_cross_entropy(p, y, eps=1e-7):
    """Mean of -(y log p + (1 - y) log(1 - p)) for probabilities p; p is clipped to [eps, 1 - eps]."""
    _same_shape("binary_cross_entropy", p, y)
    p = clip(p, eps, 1 - eps)
    return -_reduce.mean(y * _ew.log(p) + (1 - y) * _ew.log(1 - p))


def _layer_norm_reference(jax):
    def layer_norm(x, axis=-1, eps=1e-5):
        mu = x.mean(axis, keepdims=True)
        return (x - mu) / jax.numpy.sqrt(x.var(axis, keepdims=True) + eps)

    return layer_norm


@composite(samples=_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((2, 3, 4), dict(axis=(1, 2)))),
           reference=_layer_norm_reference, numpy_name=None)
def layer_norm(x, axis=-1, eps=1e-5):
    """(x - mean) / sqrt(var + eps) over `axis` (no learned scale or shift: multiply and add params for those)."""
    mu = _reduce.mean(x, axis=axis, keepdims=True)
    d = x - mu
    var = _reduce.mean(_ew.square(d), axis=axis, keepdims=True)
    return d / _ew.sqrt(var + eps)


def _clip_samples(rng):
    bands = [(-2.0, -0.7), (-0.3, 0.3), (0.7, 2.0)]  # clear of the bounds, where the gradient jumps
    return [((S.avoiding(rng, bands, 3, 4), -0.5, 0.5), {}),
            ((S.avoiding(rng, bands, 3, 4), S.uniform_in(rng, -0.55, -0.45, 3, 1), S.uniform_in(rng, 0.45, 0.55, 1, 4)),
             {})]


@composite(samples=_clip_samples, reference=S.jax_numpy("clip"))
def clip(x, lo, hi):
    """x limited to [lo, hi]."""
    return _ew.minimum(_ew.maximum(x, lo), hi)
