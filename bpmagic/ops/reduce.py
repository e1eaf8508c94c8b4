"""Reductions: sum, mean, max (with axis and keepdims), argmax."""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from . import elementwise as _ew
from . import shape as _shape
from .core import Primitive, shape_error

__all__ = ["sum", "mean", "max", "min", "argmax"]


def _norm_axis(x, axis, name):
    n = len(x.shape)
    if axis is None:
        return tuple(range(n))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for a in axes:
        if not -n <= a < builtins.max(n, 1):
            raise shape_error(name, [x], f"axis {a} is out of range for {n} axes")
    return tuple(sorted({a % n if n else 0 for a in axes}))


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _kept(g, x, axes, keepdims):
    """g reshaped so that it broadcasts against x (reduced axes as size 1)."""
    return g if keepdims else _shape.reshape(g, _reduced_shape(x.shape, axes, True))


def _sum_rule(x, axis, keepdims):
    dtype = x.dtype if np.dtype(x.dtype).kind != "b" else np.dtype(np.int64)
    return _reduced_shape(x.shape, axis, keepdims), dtype


def _sum_impl(xp, x, axis, keepdims, out=None):
    return xp.asarray(xp.sum(x, axis=axis, keepdims=keepdims, out=out))


def _ufunc_reduce(ufunc):
    """Lowering on NumPy: `np.add.reduce` skips np.sum's Python wrapper (a few microseconds per call)."""

    def rule(ctx, x, out=None, axis=(), keepdims=False):
        if ctx.xp is not np or out is None:
            return None
        if tuple(axis) == tuple(range(len(ctx.inputs[0].shape))) and not keepdims:
            axis = None  # the whole array: NumPy's fastest reduction path
        # positional (array, axis, dtype, out, keepdims): keyword parsing costs a little at every call
        return f"xp.{ufunc}.reduce({x}, {axis!r}, None, {out}, {keepdims!r})"

    return rule


_sum = Primitive("sum", _sum_impl, _sum_rule, accepts_out=True, lowering=_ufunc_reduce("add"),
                 vjp=lambda g, out, x, axis, keepdims: (_shape.broadcast_to(_kept(g, x, axis, keepdims), x.shape),))


def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (all axes when None)."""
    axes = _norm_axis(x, axis, "sum")
    if not axes and not keepdims:
        return x
    return _sum(x, axis=axes, keepdims=bool(keepdims))


def mean(x, axis=None, keepdims=False):
    """Average over `axis` (all axes when None)."""
    axes = _norm_axis(x, axis, "mean")
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return sum(x, axis=axes, keepdims=keepdims) * (1.0 / builtins.max(count, 1))


def _max_vjp(g, out, x, axis, keepdims):
    # the gradient goes to the maximal entries, shared equally between ties
    hit = _ew.astype(_ew.equal(x, _kept(out, x, axis, keepdims)), g.dtype)
    count = _sum(hit, axis=axis, keepdims=True)
    return (_kept(g, x, axis, keepdims) * hit / count,)


def _nonempty_reduced(name):
    def rule(x, axis, keepdims):
        if any(x.shape[a] == 0 for a in axis):
            raise shape_error(name, [x], "cannot take the maximum of an empty axis")
        return _reduced_shape(x.shape, axis, keepdims), x.dtype

    return rule


def _max_impl(xp, x, axis, keepdims, out=None):
    return xp.asarray(xp.max(x, axis=axis, keepdims=keepdims, out=out))


_max = Primitive("max", _max_impl, _nonempty_reduced("max"), _max_vjp, accepts_out=True,
                 lowering=_ufunc_reduce("maximum"))


def max(x, axis=None, keepdims=False):
    """Largest entry over `axis`; its gradient flows to the maximal entries (shared among ties)."""
    return _max(x, axis=_norm_axis(x, axis, "max"), keepdims=bool(keepdims))


def min(x, axis=None, keepdims=False):
    """Smallest entry over `axis`."""
    return -max(-x, axis=axis, keepdims=keepdims)


def _argmax_rule(x, axis):
    return _reduced_shape(x.shape, (axis,), False), np.dtype(np.int64)


_argmax = Primitive("argmax", lambda xp, x, axis: xp.asarray(xp.argmax(x, axis=axis)).astype(np.int64),
                    _argmax_rule, differentiable=False)


def argmax(x, axis=-1):
    """Index of the largest entry along `axis` (not differentiable)."""
    return _argmax(x, axis=_norm_axis(x, axis, "argmax")[0])
