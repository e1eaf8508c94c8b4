"""Neural-network primitives: convolution and pooling (through sliding windows), embedding, dropout.

conv2d and the pools are compositions over one pair of linear primitives, `unfold` (im2col: every kernel-sized
window as a column) and its adjoint `fold` (col2im: add the windows back). Each is the other's VJP, so convolutions
are differentiable to any order and their backward graphs read as the textbook formulas.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import elementwise as _ew
from . import linalg as _linalg
from . import reduce as _reduce
from . import samples as S
from . import shape as _shape
from .core import Primitive, composite, exposes, shape_error

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "embedding", "dropout", "uniform", "unfold", "fold", "pad2d"]


def _out_size(size, k, stride):
    return (size - k) // stride + 1


# -- unfold / fold -----------------------------------------------------------------------------------------------
def _unfold_impl(xp, x, kernel, stride):
    """(N, C, H, W) -> (N, C, kh, kw, OH, OW) windows (a copy, so later ops see a plain array)."""
    kh, kw = kernel
    n, c, h, w = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    out = xp.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return out


def _unfold_rule(x, kernel, stride):
    if len(x.shape) != 4:
        raise shape_error("unfold", [x], "expects an (N, C, H, W) array")
    n, c, h, w = x.shape
    kh, kw = kernel
    if h < kh or w < kw:
        raise shape_error("unfold", [x], f"the {kh}x{kw} window is larger than the {h}x{w} image")
    return (n, c, kh, kw, _out_size(h, kh, stride), _out_size(w, kw, stride)), x.dtype


def _fold_impl(xp, cols, image_shape, stride):
    n, c, kh, kw, oh, ow = cols.shape
    out = xp.zeros((n, c) + tuple(image_shape), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
    return out


def _conv_reference(jax):
    def conv(x, w, stride=1, padding=0):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                            dimension_numbers=("NCHW", "OIHW", "NCHW"))

    return conv


def _unfold_reference(jax):
    def windows(x, kernel, stride):
        oh, ow = _out_size(x.shape[2], kernel[0], stride), _out_size(x.shape[3], kernel[1], stride)
        rows = [[x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for j in range(kernel[1])]
                for i in range(kernel[0])]
        return jax.numpy.stack([jax.numpy.stack(r, axis=2) for r in rows], axis=2)

    return windows


def _fold_reference(jax):
    def fold(cols, image_shape, stride):
        # the adjoint of unfold, by JAX's own transposition of the windows above
        x0 = jax.numpy.zeros(cols.shape[:2] + tuple(image_shape), cols.dtype)
        _, pullback = jax.vjp(lambda x: _unfold_reference(jax)(x, cols.shape[2:4], stride), x0)
        return pullback(cols)[0]

    return fold


unfold = Primitive("unfold", _unfold_impl, _unfold_rule,
                   lambda g, out, x, kernel, stride: (fold(g, image_shape=tuple(x.shape[2:]), stride=stride),),
                   doc="Sliding windows (im2col): (N, C, H, W) -> (N, C, kh, kw, OH, OW).", numpy_name=None,
                   samples=lambda rng: [((S.normal(rng, 1, 2, 3, 3),), dict(kernel=(2, 2), stride=1)),
                                        ((S.normal(rng, 1, 1, 5, 5),), dict(kernel=(2, 3), stride=2))],
                   reference=_unfold_reference)
fold = Primitive("fold", _fold_impl, lambda cols, image_shape, stride: (cols.shape[:2] + tuple(image_shape),
                                                                        cols.dtype),
                 lambda g, out, cols, image_shape, stride: (unfold(g, kernel=tuple(cols.shape[2:4]),
                                                                   stride=stride),),
                 doc="The adjoint of unfold (col2im): adds each window back into the image.", numpy_name=None,
                 samples=lambda rng: [((S.normal(rng, 1, 1, 2, 2, 2, 2),), dict(image_shape=(3, 3), stride=1)),
                                      ((S.normal(rng, 1, 2, 2, 2, 2, 2),), dict(image_shape=(4, 4), stride=2)),
                                      ((S.normal(rng, 1, 1, 2, 2, 2, 2),), dict(image_shape=(5, 5), stride=2))],
                 reference=_fold_reference)


def _pad_impl(xp, x, padding):
    p = padding
    return xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


pad2d = Primitive("pad2d", _pad_impl,
                  lambda x, padding: (tuple(x.shape[:2]) + tuple(s + 2 * padding for s in x.shape[2:]), x.dtype),
                  lambda g, out, x, padding: (_shape.getitem(
                      g, (slice(None), slice(None), slice(padding, padding + x.shape[2]),
                          slice(padding, padding + x.shape[3]))),),
                  doc="Zero padding of the two spatial axes of an (N, C, H, W) array.", numpy_name=None,
                  samples=lambda rng: [((S.normal(rng, 1, 2, 3, 3),), dict(padding=1)),
                                       ((S.normal(rng, 2, 1, 2, 2),), dict(padding=2))],
                  reference=lambda jax: lambda x, padding: jax.numpy.pad(
                      x, ((0, 0), (0, 0), (padding, padding), (padding, padding))))


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)


# -- convolution and pooling ---------------------------------------------------------------------------------------
@composite(samples=lambda rng: [
    ((S.normal(rng, 2, 2, 4, 4), S.normal(rng, 3, 2, 2, 2)), {}),
    ((S.normal(rng, 1, 2, 5, 5), S.normal(rng, 2, 2, 3, 3)), dict(stride=2, padding=1)),
    ((S.normal(rng, 1, 1, 4, 4), S.normal(rng, 2, 1, 3, 3)), dict(stride=1, padding=1)),
    ((S.normal(rng, 1, 3, 4, 5), S.normal(rng, 2, 3, 2, 3)), dict(stride=2)),
    ((S.normal(rng, 2, 3, 2, 2), S.normal(rng, 4, 3, 1, 1)), {})], reference=_conv_reference, numpy_name=None)
def conv2d(x, w, stride=1, padding=0):
    """2-d cross-correlation, as in PyTorch: x is (N, C, H, W), w is (out, C, kh, kw) -> (N, out, OH, OW)."""
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ShapeError(f"conv2d of {tuple(x.shape)} and {tuple(w.shape)}: x must be (N, C, H, W) and w must be "
                         "(out_channels, in_channels, kh, kw)")
    if x.shape[1] != w.shape[1]:
        raise ShapeError(f"conv2d of {tuple(x.shape)} and {tuple(w.shape)}: x has {x.shape[1]} channels but w "
                         f"expects {w.shape[1]}")
    stride, padding = int(stride), int(padding)
    if padding:
        x = pad2d(x, padding=padding)
    cols = unfold(x, kernel=tuple(w.shape[2:]), stride=stride)  # (N, C, kh, kw, OH, OW)
    n, c, kh, kw, oh, ow = cols.shape
    cols = _shape.reshape(cols, (n, c * kh * kw, oh * ow))
    out = _linalg.matmul(_shape.reshape(w, (w.shape[0], c * kh * kw)), cols)  # (N, out, OH*OW)
    return _shape.reshape(out, (n, w.shape[0], oh, ow))


def _pool_windows(x, kernel_size, stride, name):
    if len(x.shape) != 4:
        raise ShapeError(f"{name} of {tuple(x.shape)}: expects an (N, C, H, W) array")
    k = _pair(kernel_size)
    s = k[0] if stride is None else int(stride)
    cols = unfold(x, kernel=k, stride=s)
    n, c, kh, kw, oh, ow = cols.shape
    return _shape.reshape(cols, (n, c, kh * kw, oh, ow))


def _pool_reference(init, op, scale=False):
    def reference(jax):
        def pool(x, kernel_size, stride=None):
            k = _pair(kernel_size)
            s = k[0] if stride is None else int(stride)
            out = jax.lax.reduce_window(x, init, getattr(jax.lax, op), (1, 1) + k, (1, 1, s, s), "VALID")
            return out / (k[0] * k[1]) if scale else out

        return pool

    return reference


def _distinct(rng, *shape):
    return S.distinct(rng, shape)[0]


@composite(samples=lambda rng: [((_distinct(rng, 1, 2, 4, 4), 2), {}),
                                ((_distinct(rng, 1, 1, 4, 4), 2), dict(stride=1)),
                                ((_distinct(rng, 2, 1, 3, 4), (2, 3)), dict(stride=1)),
                                ((_distinct(rng, 1, 1, 5, 5), 3), dict(stride=2))],
           reference=_pool_reference(-float("inf"), "max"), numpy_name=None)
def max_pool2d(x, kernel_size, stride=None):
    """Largest value in each window (stride defaults to the window size)."""
    return _reduce.max(_pool_windows(x, kernel_size, stride, "max_pool2d"), axis=2)


@composite(samples=lambda rng: [((S.normal(rng, 1, 2, 4, 4), 2), {}), ((S.normal(rng, 1, 1, 4, 4), 2), dict(stride=1)),
                                ((S.normal(rng, 1, 2, 5, 5), 3), dict(stride=2))],
           reference=_pool_reference(0.0, "add", scale=True), numpy_name=None)
def avg_pool2d(x, kernel_size, stride=None):
    """Average of each window (stride defaults to the window size)."""
    return _reduce.mean(_pool_windows(x, kernel_size, stride, "avg_pool2d"), axis=2)


# -- embedding -----------------------------------------------------------------------------------------------------
@composite(samples=lambda rng: [((S.normal(rng, 5, 3), np.array([[0, 2, 0], [4, 0, 1]])), {}),
                                ((S.normal(rng, 5, 3), np.array([3, 3, 3])), {})],
           reference=lambda jax: lambda table, ids: table[ids], numpy_name=None)
def embedding(table, ids):
    """Rows of `table` (vocab, dim) for integer `ids` of any shape -> ids.shape + (dim,)."""
    if len(table.shape) != 2:
        raise ShapeError(f"embedding of {tuple(table.shape)}: the table must be 2-d (vocabulary, dimension)")
    return _shape.take(table, ids, axis=0)


# -- randomness ---------------------------------------------------------------------------------------------------
def _uniform_impl(xp, key, shape, dtype):
    # Philox is counter-based: the same key gives the same numbers on every machine and backend
    bits = np.random.Generator(np.random.Philox(key=int(key))).random(shape, dtype=np.float64)
    return xp.asarray(bits.astype(dtype))


_uniform = Primitive("uniform", _uniform_impl, lambda key, shape, dtype: (tuple(shape), np.dtype(dtype)),
                     effects=("random",), differentiable=False,
                     doc="Uniform [0, 1) numbers, reproducible from an integer key.")


def _philox(key, shape, dtype):
    return np.random.Generator(np.random.Philox(key=int(key))).random(shape, dtype=np.float64).astype(dtype)


# randomness has no JAX twin: the reference is NumPy's Philox itself, which the draw must reproduce on every backend
@exposes(_uniform, samples=lambda rng: [((np.int64(3), (3, 4)), {}), ((np.int64(7), (5,)), dict(dtype=np.float64))],
         reference=lambda jax: lambda key, shape, dtype=np.float32: jax.numpy.asarray(_philox(key, shape, dtype)),
         numpy_name=None)
def uniform(key, shape, dtype=np.float32):
    """Uniform [0, 1) numbers of `shape`, the same for the same integer `key`."""
    key = key if hasattr(key, "_bp_trace") else np.asarray(key, np.int64)
    return _uniform(key, shape=tuple(shape), dtype=np.dtype(dtype))


def _dropout_reference(jax):
    def dropout(x, rate, key):
        keep = _philox(key, x.shape, x.dtype) >= rate
        return jax.numpy.where(keep, x * (1.0 / (1.0 - rate)), 0.0)

    return dropout


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), 0.5), dict(key=7)), ((S.normal(rng, 3, 4), 0.25), dict(key=1)),
                                ((S.normal(rng, 2, 3), 0.0), dict(key=3))],
           reference=_dropout_reference, numpy_name=None)
def dropout(x, rate, key):
    """Zero each entry with probability `rate` and scale the rest by 1/(1 - rate); reproducible by `key`."""
    if not 0 <= rate < 1:
        raise ShapeError(f"dropout rate must be in [0, 1), got {rate}")
    if rate == 0:
        return x
    keep = _ew.greater_equal(uniform(key, x.shape, x.dtype), rate)
    return _ew.where(keep, x * (1.0 / (1.0 - rate)), 0.0)
