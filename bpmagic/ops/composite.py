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
           "clip", "one_hot", "huber", "l1", "nll", "kl_div", "cosine_similarity"]


@composite(samples=_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((3, 4), dict(axis=1, keepdims=True)),
                             ((2, 3, 4), dict(axis=(0, 2))), ((3, 4), dict(axis=None)), ((5,), {})),
           reference=lambda jax: lambda x, axis=-1, keepdims=False: jax.scipy.special.logsumexp(
               x, axis=axis, keepdims=keepdims), numpy_name=None, vjp_math="x̄ = ḡ · softmax(x) = ḡ · e^(x − y)")
def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) over `axis`, computed without overflow."""
    m = _ew.stop_gradient(_reduce.max(x, axis=axis, keepdims=True))
    out = _ew.log(_reduce.sum(_ew.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else _shape.squeeze(out, axis)


@composite(samples=_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((2, 3, 4), dict(axis=1))),
           reference=lambda jax: jax.nn.log_softmax, numpy_name=None, vjp_math="x̄ = ḡ − softmax(x) · Σ ḡ")
def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities along `axis`."""
    return x - logsumexp(x, axis=axis, keepdims=True)


@composite(samples=S.join(_axis_cases(((3, 4), {}), ((3, 4), dict(axis=0)), ((2, 3, 4), dict(axis=1)),
                                    ((3, 1), dict(axis=1))),
                         lambda rng: [((30 * S.normal(rng, 2, 3),), {})]),  # large logits: no overflow
           reference=lambda jax: jax.nn.softmax, numpy_name=None, vjp_math="x̄ = y ⊙ (ḡ − Σ ḡ ⊙ y)")
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`: probabilities that sum to 1."""
    e = _ew.exp(x - _ew.stop_gradient(_reduce.max(x, axis=axis, keepdims=True)))
    return e / _reduce.sum(e, axis=axis, keepdims=True)


@composite(samples=lambda rng: [((np.array([0, 2, 1, 2]), 3), {}),
                                ((np.array([[1, 0], [3, 3]]), 4), dict(dtype=np.float64))],
           reference=lambda jax: lambda labels, num_classes, dtype=np.float32: jax.nn.one_hot(labels, num_classes,
                                                                                                dtype=dtype),
           differentiable=False, numpy_name=None, vjp_math="no gradient (integer input)")
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


@composite(samples=_cross_entropy_samples, reference=_cross_entropy_reference, numpy_name=None,
           vjp_math="x̄ = ḡ · (softmax(x) − t) / N, t the one-hot (or given, rows summing to 1) targets; "
                    "probability targets get t̄ = −ḡ · log_softmax(x) / N")
def cross_entropy(logits, labels):
    """Mean cross-entropy between (N, C) logits and integer labels (N,) or one-hot / probability rows (N, C)."""
    if np.dtype(labels.dtype).kind in "iu":
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            raise ShapeError(f"cross_entropy of {tuple(logits.shape)} and {tuple(labels.shape)}: integer labels "
                             f"must have shape {tuple(logits.shape[:-1])} (one class index per row)")
        values = getattr(labels, "value", labels)  # concrete even while tracing: check the labels we can see
        n_classes = logits.shape[-1]
        if values.size and (int(values.min()) < 0 or int(values.max()) >= n_classes):
            raise ShapeError(f"cross_entropy of {tuple(logits.shape)} and {tuple(labels.shape)}: labels must be "
                             f"class indices in [0, {n_classes}), got {int(values.min())}..{int(values.max())}")
        # -log p[label] = logsumexp(x) - x[label], each row's mask summing to 1: a shorter backward (softmax / N
        # minus the mask / N) than through log_softmax; a one-hot mask rather than x[rows, labels]: its backward is
        # a multiply, not a scatter-add
        lse = logsumexp(logits, axis=-1)  # first: the logits are the composite's first operand (metrics.py reads it)
        mask = _ew.equal(_shape.expand_dims(labels, -1), np.arange(logits.shape[-1]))
        return _reduce.mean(lse - _reduce.sum(logits * mask, axis=-1))
    if tuple(labels.shape) != tuple(logits.shape):
        raise ShapeError(f"cross_entropy of {tuple(logits.shape)} and {tuple(labels.shape)}: one-hot targets must "
                         "have the logits' shape (or pass integer class labels)")
    return -_reduce.mean(_reduce.sum(labels * log_softmax(logits, axis=-1), axis=-1))


def _same_shape(name, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ShapeError(f"{name} of {tuple(a.shape)} and {tuple(b.shape)}: prediction and target must have the same "
                         "shape (reshape one of them, e.g. y.reshape(-1, 1))")


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), S.normal(rng, 3, 4)), {}),
                                ((S.normal(rng, 5), S.normal(rng, 5)), {}),
                                ((S.normal(rng), S.normal(rng)), {})],
           reference=lambda jax: lambda p, t: jax.numpy.mean((p - t) ** 2), numpy_name=None,
           vjp_math="p̄ = 2ḡ · (p − t) / n, t̄ = −p̄")
def mse(pred, target):
    """Mean squared error."""
    _same_shape("mse", pred, target)
    return _reduce.mean(_ew.square(pred - target))


@composite(samples=lambda rng: [((S.uniform_in(rng, 0.05, 0.95, 3, 4), S.uniform_in(rng, 0, 1, 3, 4)), {}),
                                ((S.uniform_in(rng, 0.05, 0.95, 5), np.array([0.0, 1, 1, 0, 1])), {})],
           reference=lambda jax: lambda p, y, eps=1e-7: -jax.numpy.mean(
               y * jax.numpy.log(jax.numpy.clip(p, eps, 1 - eps))
               + (1 - y) * jax.numpy.log(1 - jax.numpy.clip(p, eps, 1 - eps))),
           numpy_name=None,
           vjp_math="p̄ = ḡ · (p − y) / (n · p(1 − p)) inside (eps, 1 − eps), 0 where clipped; ȳ = ḡ · log((1 − p) "
                    "/ p) / n")
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
           reference=_layer_norm_reference, numpy_name=None,
           vjp_math="x̄ = (ḡ − mean(ḡ) − y · mean(ḡ · y)) / √(var + eps) over axis")
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
             {}),
            ((S.avoiding(rng, bands, 3, 4), -0.5, None), {}), ((S.avoiding(rng, bands, 3, 4), None, 0.5), {}),
            ((S.avoiding(rng, bands, 3, 4),), {"min": -0.5, "max": 0.5})]


def _clip_reference(jax):
    def clip(x, lo=None, hi=None, *, min=None, max=None):
        return jax.numpy.clip(x, lo if lo is not None else min, hi if hi is not None else max)
    return clip


@composite(samples=_clip_samples, reference=_clip_reference,
           vjp_math="x̄ = ḡ · [lo < x < hi] for number bounds; a traced lo or hi gets the ḡ where it binds (and "
                    "half of it where x equals it)")
def clip(x, lo=None, hi=None, *, min=None, max=None):
    """x limited to [lo, hi]; a bound of None leaves that side open. `min=` and `max=` are the same bounds by
    the names NumPy 2 and PyTorch give them."""
    lo, hi = (min if lo is None else lo), (max if hi is None else hi)
    if lo is None and hi is None:
        raise ShapeError("clip needs a lower bound, an upper bound or both (np.clip(x, 0, None) keeps x >= 0)")
    # against a number, maximum's and minimum's VJPs break no ties: the backward is ḡ · [x > lo] · [x < hi]
    if lo is not None:
        x = _ew.maximum(x, lo)
    return x if hi is None else _ew.minimum(x, hi)


# -- more losses ---------------------------------------------------------------------------------------------------
def _huber_ref(jax):
    def huber(pred, target, delta=1.0):
        d = jax.numpy.abs(pred - target)
        return jax.numpy.mean(jax.numpy.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta)))
    return huber


@composite(samples=lambda rng: [((S.avoiding(rng, [(-3.0, -1.2), (-0.8, 0.8), (1.2, 3.0)], 3, 4),
                                  np.zeros((3, 4))), {}),
                                ((S.avoiding(rng, [(-2.0, -0.6), (-0.4, 0.4), (0.6, 2.0)], 5),
                                  np.zeros(5)), {"delta": 0.5})],
           reference=_huber_ref, numpy_name=None,
           vjp_math="p̄ = ḡ · clip(p − t, −δ, δ) / n")
def huber(pred, target, delta=1.0):
    """Mean Huber loss: ½d² where |d| ≤ delta, else delta·(|d| − ½delta), with d = pred − target."""
    _same_shape("huber", pred, target)
    d = pred - target
    a = _ew.abs(d)
    return _reduce.mean(_ew.where(a <= delta, 0.5 * _ew.square(d), delta * (a - 0.5 * delta)))


@composite(samples=lambda rng: [((S.away0(rng, 3, 4), np.zeros((3, 4))), {}),
                                ((S.away0(rng, 5) + 1.0, np.ones(5)), {})],
           reference=lambda jax: lambda p, t: jax.numpy.mean(jax.numpy.abs(p - t)), numpy_name=None,
           vjp_math="p̄ = ḡ · sign(p − t) / n")
def l1(pred, target):
    """Mean absolute error."""
    _same_shape("l1", pred, target)
    return _reduce.mean(_ew.abs(pred - target))


def _nll_ref(jax):
    def nll(logp, labels):
        return -jax.numpy.mean(jax.numpy.take_along_axis(logp, labels[..., None], axis=-1))
    return nll


@composite(samples=lambda rng: [((S.normal(rng, 4, 3), np.array([0, 2, 1, 2])), {}),
                                ((S.normal(rng, 2, 3, 5), np.array([[0, 4, 4], [1, 2, 0]])), {})],
           reference=_nll_ref, numpy_name=None,
           vjp_math="x̄ = −ḡ · onehot(labels) / n")
def nll(logp, labels):
    """Mean negative log-likelihood of integer `labels` under log-probabilities `logp` (…, C), e.g. from
    log_softmax: nll(log_softmax(z), y) is cross_entropy(z, y)."""
    if tuple(labels.shape) != tuple(logp.shape[:-1]) or np.dtype(labels.dtype).kind not in "iu":
        raise ShapeError(f"nll of {tuple(logp.shape)} and {tuple(labels.shape)}: the labels must be integer class "
                         f"indices of shape {tuple(logp.shape[:-1])} (one per row)")
    mask = _ew.equal(_shape.expand_dims(labels, -1), np.arange(logp.shape[-1]))
    return -_reduce.mean(_reduce.sum(_ew.where(mask, logp, 0.0), axis=-1))


def _kl_ref(jax):
    def kl_div(logq, p):
        jnp = jax.numpy
        plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
        return jnp.sum(plogp - p * logq) / (logq.shape[0] if logq.ndim > 1 else 1)
    return kl_div


def _kl_samples(rng):
    p = rng.dirichlet(np.ones(4), size=3)
    return [((S.normal(rng, 3, 4), p), {}), ((S.normal(rng, 5), rng.dirichlet(np.ones(5))), {})]


@composite(samples=_kl_samples, reference=_kl_ref, numpy_name=None,
           vjp_math="(log q)‾ = −ḡ · p / n, p̄ = ḡ · (log p + 1 − log q) / n")
def kl_div(logq, p):
    """KL(p ‖ q) = Σ p (log p − log q), summed over the last axis and averaged over the rows (the leading axis):
    `logq` are log-probabilities (e.g. log_softmax(z)), `p` the target probabilities. Terms with p = 0 count 0."""
    _same_shape("kl_div", logq, p)
    positive = p > 0
    plogp = _ew.where(positive, p * _ew.log(_ew.where(positive, p, 1.0)), 0.0)
    rows = logq.shape[0] if len(logq.shape) > 1 else 1
    return _reduce.sum(plogp - p * logq) * (1.0 / rows)


def _cos_ref(jax):
    def cosine_similarity(a, b, axis=-1, eps=1e-8):
        jnp = jax.numpy
        na = jnp.sqrt(jnp.sum(a * a, axis=axis))
        nb = jnp.sqrt(jnp.sum(b * b, axis=axis))
        return jnp.sum(a * b, axis=axis) / jnp.maximum(na * nb, eps)
    return cosine_similarity


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), S.normal(rng, 3, 4)), {}),
                                ((S.normal(rng, 2, 3), S.normal(rng, 2, 3)), {"axis": 0}),
                                ((S.normal(rng, 3, 4), S.normal(rng, 4)), {})],
           reference=_cos_ref, numpy_name=None,
           vjp_math="ā = ḡ · (b / (‖a‖‖b‖) − s · a / ‖a‖²), b̄ likewise, with s the similarity")
def cosine_similarity(a, b, axis=-1, eps=1e-8):
    """a·b / max(‖a‖‖b‖, eps) along `axis` (broadcasting a and b): 1 for the same direction, −1 for opposite."""
    na = _ew.sqrt(_reduce.sum(a * a, axis=axis))
    nb = _ew.sqrt(_reduce.sum(b * b, axis=axis))
    return _reduce.sum(a * b, axis=axis) / _ew.maximum(na * nb, eps)
