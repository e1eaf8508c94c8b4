"""Reductions: sum, mean, max, min, var, std, prod (with axis and keepdims), argmax, argmin, cumsum.

Primitives: sum and max (everything else reduces through them), argmax (an index, no gradient) and cumsum (a scan:
as a composite it would be quadratic). mean, min, var, std, prod and argmin are compositions; prod multiplies
pairwise in a tree, so its gradient is exact even where entries are zero (unlike out / x).

Reductions build on elementwise and shape (a sum's VJP broadcasts back; max's compares); neither imports this module.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from . import elementwise as _ew
from . import samples as S
from . import shape as _shape
from .core import Primitive, composite, exposes, shape_error

__all__ = ["sum", "mean", "max", "min", "argmax", "argmin", "var", "std", "prod", "cumsum", "amax", "amin", "any",
           "all", "average"]

# axis / keepdims combinations every reduction is checked on: all axes, one, several, negative, size-1
_AXES = [dict(), dict(keepdims=True), dict(axis=0), dict(axis=1, keepdims=True), dict(axis=-1),
         dict(axis=(0, 2)), dict(axis=(0, 2), keepdims=True), dict(axis=(-1, -3)), dict(axis=(-2,), keepdims=True)]


def _reduction_samples(gen=S.normal, extra=()):
    def samples(rng):
        out = [((gen(rng, 2, 3, 4),), dict(kw)) for kw in _AXES]
        out += [((gen(rng),), {}), ((gen(rng, 3, 1, 4),), dict(axis=1)), ((gen(rng, 5),), dict(axis=0))]
        return out + [((gen(rng, *shape),), dict(kw)) for shape, kw in extra]

    return samples


def _distinct(rng, *shape):
    return S.distinct(rng, shape)[0]



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


def _reduce_onnx(op_type):
    def rule(ctx, x, axis, keepdims):
        if ctx.operands[0].dtype == bool:  # NumPy sums a mask as integers
            x = ctx.cast(x, ctx.result.dtype)
        return ctx.node(op_type, [x, ctx.ints(axis)], keepdims=int(keepdims))
    return rule


_sum = Primitive("sum", _sum_impl, _sum_rule, accepts_out=True, lowering=_ufunc_reduce("add"),
                 onnx=_reduce_onnx("ReduceSum"),
                 vjp=lambda g, out, x, axis, keepdims: (_shape.broadcast_to(_kept(g, x, axis, keepdims), x.shape),))


@exposes(_sum, samples=_reduction_samples(), reference=S.jax_numpy("sum"),
         vjp_math="x̄ = broadcast_to(ḡ, x.shape) (ḡ repeated along the summed axes)")
def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (all axes when None)."""
    axes = _norm_axis(x, axis, "sum")
    if not axes and not keepdims:
        return x
    return _sum(x, axis=axes, keepdims=bool(keepdims))


@composite(samples=_reduction_samples(), reference=S.jax_numpy("mean"),
           vjp_math="x̄ = broadcast_to(ḡ, x.shape) / n, n the number of entries averaged")
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
        if builtins.any(x.shape[a] == 0 for a in axis):
            raise shape_error(name, [x], "cannot take the maximum of an empty axis")
        return _reduced_shape(x.shape, axis, keepdims), x.dtype

    return rule


def _max_impl(xp, x, axis, keepdims, out=None):
    return xp.asarray(xp.max(x, axis=axis, keepdims=keepdims, out=out))


_max = Primitive("max", _max_impl, _nonempty_reduced("max"), _max_vjp, accepts_out=True,
                 lowering=_ufunc_reduce("maximum"), onnx=_reduce_onnx("ReduceMax"))


@exposes(_max, samples=_reduction_samples(_distinct), reference=S.jax_numpy("max"),
         vjp_math="x̄ = ḡ · [x = y] / #{x = y} along the reduced axes (ties share ḡ equally)")
def max(x, axis=None, keepdims=False):
    """Largest entry over `axis`; its gradient flows to the maximal entries (shared among ties)."""
    return _max(x, axis=_norm_axis(x, axis, "max"), keepdims=bool(keepdims))


@composite(samples=_reduction_samples(_distinct), reference=S.jax_numpy("min"),
           vjp_math="x̄ = ḡ · [x = y] / #{x = y} along the reduced axes (ties share ḡ equally)")
def min(x, axis=None, keepdims=False):
    """Smallest entry over `axis`."""
    return -max(-x, axis=axis, keepdims=keepdims)


def _argmax_rule(x, axis):
    return _reduced_shape(x.shape, (axis,), False), np.dtype(np.int64)


_argmax = Primitive("argmax", lambda xp, x, axis: xp.asarray(xp.argmax(x, axis=axis)).astype(np.int64),
                    _argmax_rule, differentiable=False,
                    onnx=lambda ctx, x, axis: ctx.node("ArgMax", [x], axis=axis, keepdims=0))


def _arg_samples(rng):
    return [((_distinct(rng, 3, 4),), {}), ((_distinct(rng, 3, 4),), dict(axis=0)), ((_distinct(rng, 3, 4),), dict(axis=-1)),
            ((_distinct(rng, 2, 3, 4),), dict(axis=1)), ((np.array([1.0, 3.0, 3.0, 0.0]),), {})]  # first of ties


@exposes(_argmax, samples=_arg_samples, reference=lambda jax: lambda x, axis=None: jax.numpy.argmax(x, axis=axis),
         vjp_math="no gradient (integer output)")
def argmax(x, axis=None):
    """Index of the largest entry along `axis`; with axis=None, NumPy's index into the flattened array (not
    differentiable)."""
    if axis is None:
        x, axis = _shape.reshape(x, (_count(x, range(len(x.shape))),)), 0
    return _argmax(x, axis=_norm_axis(x, axis, "argmax")[0])


@composite(samples=_arg_samples, reference=lambda jax: lambda x, axis=None: jax.numpy.argmin(x, axis=axis),
           differentiable=False, vjp_math="no gradient (integer output)")
def argmin(x, axis=None):
    """Index of the smallest entry along `axis` (not differentiable)."""
    return argmax(-x, axis=axis)


def _count(x, axes):
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def _var_samples(rng):
    return _reduction_samples()(rng) + [((S.normal(rng, 3, 4),), dict(ddof=1)),
                                        ((S.normal(rng, 2, 3, 4),), dict(axis=(0, 2), ddof=2, keepdims=True))]


@composite(samples=_var_samples, reference=S.jax_numpy("var"), vjp_math="x̄ = 2ḡ · (x − mean(x)) / (n − ddof)")
def var(x, axis=None, ddof=0, keepdims=False):
    """Variance over `axis`: mean of squared deviations, divided by (n - ddof) instead of n when ddof is given."""
    axes = _norm_axis(x, axis, "var")
    n = _count(x, axes)
    if n - ddof <= 0:
        raise shape_error("var", [x], f"ddof={ddof} leaves no degrees of freedom for {n} entries")
    d = x - mean(x, axis=axes, keepdims=True)
    return sum(_ew.square(d), axis=axes, keepdims=keepdims) * (1.0 / (n - ddof))


def _std_samples(rng):
    """var's samples that reduce two entries or more: at zero spread std has no gradient (sqrt's is infinite)."""
    return [(args, kw) for args, kw in _var_samples(rng)
            if _count(args[0], _norm_axis(args[0], kw.get("axis"), "std")) >= 2]


@composite(samples=_std_samples, reference=S.jax_numpy("std"), vjp_math="x̄ = ḡ · (x − mean(x)) / ((n − ddof) · y)")
def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation over `axis`: sqrt(var(x, axis, ddof))."""
    return _ew.sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims))


def _prod_samples(rng):
    with_zeros = S.normal(rng, 3, 5)
    with_zeros[0, 1] = with_zeros[2, 3] = with_zeros[2, 4] = 0.0  # one zero in a row, two in another
    return _reduction_samples()(rng) + [((with_zeros,), dict(axis=1)), ((S.normal(rng, 7),), {})]


@composite(samples=_prod_samples, reference=S.jax_numpy("prod"),
           vjp_math="x̄ᵢ = ḡ · Πⱼ≠ᵢ xⱼ (exact at zeros: through the pairwise product tree)")
def prod(x, axis=None, keepdims=False):
    """Product of the entries over `axis`."""
    axes = _norm_axis(x, axis, "prod")
    rest = [a for a in range(len(x.shape)) if a not in axes]
    kept_shape = _reduced_shape(x.shape, axes, keepdims)
    # the reduced axes last, as one axis of n entries; then multiply halves pairwise until one is left
    y = _shape.transpose(x, rest + list(axes)) if axes else x
    y = _shape.reshape(y, tuple(x.shape[a] for a in rest) + (_count(x, axes),))
    while y.shape[-1] > 1:
        n = y.shape[-1]
        half = n // 2
        pairs = _shape.getitem(y, (Ellipsis, slice(0, half))) * _shape.getitem(y, (Ellipsis, slice(half, 2 * half)))
        y = _shape.concatenate([pairs, _shape.getitem(y, (Ellipsis, slice(2 * half, n)))], axis=-1) if n % 2 else pairs
    if y.shape[-1] == 0:  # the empty product is 1, as in NumPy (an empty sum gives the shape and backend)
        return sum(x, axis=axes, keepdims=keepdims) * 0.0 + 1.0
    return _shape.reshape(y, kept_shape)


# -- cumsum: a scan primitive; its VJP is the reversed scan of the cotangent -------------------------------------
def _flip(x, axis):
    return _shape.getitem(x, (slice(None),) * axis + (slice(None, None, -1),))


_cumsum = Primitive("cumsum", lambda xp, x, axis: xp.cumsum(x, axis=axis), lambda x, axis: (x.shape, x.dtype),
                    lambda g, out, x, axis: (_flip(_cumsum(_flip(g, axis), axis=axis), axis),),
                    onnx=lambda ctx, x, axis: ctx.node("CumSum", [x, ctx.const(np.int64(axis))]))


def _cumsum_samples(rng):
    return [((S.normal(rng, 3, 4),), dict(axis=1)), ((S.normal(rng, 3, 4),), dict(axis=0)),
            ((S.normal(rng, 2, 3, 4),), dict(axis=-2)), ((S.normal(rng, 2, 3),), {}), ((S.normal(rng, 5),), {})]


@exposes(_cumsum, samples=_cumsum_samples, reference=S.jax_numpy("cumsum"),
         vjp_math="x̄ᵢ = Σⱼ≥ᵢ ḡⱼ along axis (a reversed cumsum of ḡ)")
def cumsum(x, axis=None):
    """Running sums along `axis` (over the flattened array when None, as NumPy)."""
    if axis is None:
        x, axis = _shape.reshape(x, (-1,)), 0
    return _cumsum(x, axis=_norm_axis(x, axis, "cumsum")[0])


# -- NumPy's other names for these, and its boolean reductions -----------------------------------------------------
amax, amin = max, min  # np.amax and np.amin are NumPy's older names for np.max and np.min


def _bool_samples(rng):
    x = S.normal(rng, 3, 4)
    x[0] = 0.0  # a row of zeros: any() false, all() false there
    x[1] = np.abs(x[1]) + 1.0
    return [((x,), {}), ((x,), dict(axis=1)), ((x > 0,), dict(axis=0, keepdims=True)), ((x,), dict(axis=-1))]


@composite(samples=_bool_samples, reference=lambda jax: lambda x, axis=None, keepdims=False: jax.numpy.any(
    x, axis=axis, keepdims=keepdims), differentiable=False, vjp_math="no gradient (boolean output)")
def any(x, axis=None, keepdims=False):
    """Whether any entry along `axis` is non-zero (True)."""
    return _ew.greater(sum(_ew.not_equal(x, 0), axis=axis, keepdims=keepdims), 0)


@composite(samples=_bool_samples, reference=lambda jax: lambda x, axis=None, keepdims=False: jax.numpy.all(
    x, axis=axis, keepdims=keepdims), differentiable=False, vjp_math="no gradient (boolean output)")
def all(x, axis=None, keepdims=False):
    """Whether every entry along `axis` is non-zero (True)."""
    return _ew.equal(sum(_ew.equal(x, 0), axis=axis, keepdims=keepdims), 0)


def _average_samples(rng):
    return [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 3, 4),), dict(axis=1)),
            ((S.normal(rng, 3, 4),), dict(axis=0, weights=S.positive(rng, 3))),
            ((S.normal(rng, 3, 4),), dict(weights=S.positive(rng, 3, 4))),
            ((S.normal(rng, 2, 3, 4),), dict(weights=S.positive(rng, 3), axis=1, keepdims=True))]


@composite(samples=_average_samples,
           reference=lambda jax: lambda x, axis=None, weights=None, keepdims=False: jax.numpy.average(
               x, axis=axis, weights=weights, keepdims=keepdims),
           vjp_math="x̄ = ḡ · w / Σw; w̄ = ḡ · (x − y) / Σw")
def average(x, axis=None, weights=None, returned=False, keepdims=False):
    """Weighted mean along `axis` (np.average): Σ w·x / Σ w; the plain mean without weights. 1-d weights along
    one axis apply along that axis."""
    if returned:
        raise shape_error("average", [x], "returned=True is not supported on traced values; divide by "
                          "np.sum(weights, axis) yourself")
    if weights is None:
        return mean(x, axis=axis, keepdims=keepdims)
    axes = _norm_axis(x, axis, "average")
    if len(weights.shape) == 1 and len(x.shape) > 1 and len(axes) == 1:
        weights = _shape.reshape(weights, [-1 if i == axes[0] else 1 for i in range(len(x.shape))])
    weights = _shape.broadcast_to(weights, x.shape)
    return sum(x * weights, axis=axes, keepdims=keepdims) / sum(weights, axis=axes, keepdims=keepdims)
