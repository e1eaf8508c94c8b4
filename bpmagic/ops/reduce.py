"""Reductions: sum, mean, max, min, var, std, prod (with axis and keepdims), argmax, argmin, cumsum, cumprod, the
order statistics (median, quantile, percentile) and the counts (count_nonzero, isin, searchsorted).

Primitives: sum and max (everything else reduces through them), argmax (an index, no gradient) and cumsum (a scan:
as a composite it would be quadratic). mean, min, var, std, prod and argmin are compositions; prod multiplies
pairwise in a tree, so its gradient is exact even where entries are zero (unlike out / x), and cumprod is a scan of
multiplications for the same reason. The order statistics sort, then take and interpolate: their gradient goes to
the entries they select.

Reductions build on elementwise and shape (a sum's VJP broadcasts back; max's compares); neither imports this module.
"""
from __future__ import annotations

import builtins
import math
import numbers

import numpy as np

from . import elementwise as _ew
from . import samples as S
from . import shape as _shape
from .core import Primitive, composite, exposes, shape_error

__all__ = ["sum", "mean", "max", "min", "argmax", "argmin", "var", "std", "prod", "cumsum", "amax", "amin", "any",
           "all", "average", "count_nonzero", "cumprod", "quantile", "percentile", "median", "isin", "searchsorted"]

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


PAIRWISE_FROM = 1024  # a row this long or longer is summed pairwise (64 x 100000 float32: error 3.8e-3, BLAS 9.4e-3)


def _sum_lowering(ctx, x, out=None, axis=(), keepdims=False):
    """On NumPy, the sum of a float matrix over its rows or its columns is its product with a vector of ones
    (BLAS gemv): 2-11x faster than add.reduce, whose loop over a short axis is set up again for every row (64x10:
    2.2 -> 0.6 us; 3200x32 over rows: 51 -> 4.6 us). As exact over the rows (added one by one either way); along a
    row NumPy adds pairwise, which a long row needs: rows of PAIRWISE_FROM or more keep add.reduce."""
    a = ctx.inputs[0]
    if (ctx.xp is np and out is not None and ctx.is_pool_buffer(out) and len(a.shape) == 2 and 0 not in a.shape
            and len(axis) == 1 and np.dtype(a.dtype) in (np.float32, np.float64)
            and (axis[0] == 0 or a.shape[1] < PAIRWISE_FROM)):
        n, dtype = a.shape[axis[0]], np.dtype(a.dtype)
        shape = (1, n) if keepdims and axis[0] == 0 else (n, 1) if keepdims else (n,)
        ones = ctx.bind(f"_ones_{'x'.join(map(str, shape))}_{dtype.name}", lambda: np.ones(shape, dtype))
        return f"xp.dot({ones}, {x}, {out})" if axis[0] == 0 else f"xp.dot({x}, {ones}, {out})"
    return _ufunc_reduce("add")(ctx, x, out=out, axis=axis, keepdims=keepdims)


def _reduce_onnx(op_type):
    def rule(ctx, x, axis, keepdims):
        if ctx.operands[0].dtype == bool:  # NumPy sums a mask as integers
            x = ctx.cast(x, ctx.result.dtype)
        return ctx.node(op_type, [x, ctx.ints(axis)], keepdims=int(keepdims))
    return rule


_sum = Primitive("sum", _sum_impl, _sum_rule, accepts_out=True, lowering=_sum_lowering,
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


# -- counts --------------------------------------------------------------------------------------------------------
@composite(samples=_bool_samples, reference=lambda jax: lambda x, axis=None, keepdims=False: jax.numpy.count_nonzero(
    x, axis=axis, keepdims=keepdims), differentiable=False, vjp_math="no gradient (integer output)")
def count_nonzero(x, axis=None, keepdims=False):
    """How many entries along `axis` are non-zero (True)."""
    return sum(_ew.not_equal(x, 0), axis=axis, keepdims=keepdims)


def _isin_samples(rng):
    x = rng.integers(0, 6, (3, 4)).astype(np.float64)
    return [((x, np.array([1.0, 4.0, 9.0])), {}), ((x, np.array([[0.0], [5.0]])), {"invert": True}),
            ((np.arange(5), [1, 3]), {})]


@composite(samples=_isin_samples, reference=lambda jax: lambda e, t, invert=False: jax.numpy.isin(
    e, np.asarray(t), invert=invert), differentiable=False, vjp_math="no gradient (boolean output)")
def isin(element, test_elements, assume_unique=False, invert=False):
    """True where an entry of `element` equals one of `test_elements` (False with invert=True)."""
    element = element if hasattr(element, "shape") else np.asarray(element)
    tests = _shape.reshape(test_elements if hasattr(test_elements, "shape") else np.asarray(test_elements), (-1,))
    hit = any(_ew.equal(_shape.expand_dims(element, -1), tests), axis=-1)
    return _ew.equal(hit, False) if invert else hit


def _searchsorted_samples(rng):
    a = np.array([-1.0, 0.0, 0.5, 2.0, 3.0])
    return [((a, np.array([-2.0, 0.0, 0.7, 3.0, 9.0])), {}), ((a, np.array([[0.5, 2.0], [3.5, -1.0]])),
            {"side": "right"}), ((np.array([3.0, -1.0, 2.0]), 2.5), {"sorter": np.array([1, 2, 0])})]


@composite(samples=_searchsorted_samples, reference=lambda jax: lambda a, v, side="left", sorter=None:
           jax.numpy.searchsorted(a if sorter is None else a[sorter], v, side=side), differentiable=False,
           vjp_math="no gradient (integer output)")
def searchsorted(a, v, side="left", sorter=None):
    """Where each v would go in the sorted 1-d array a to keep it sorted: the number of entries of a below v
    (side="left"), or at most v (side="right"). `sorter`: the indices that sort a, when a is not sorted."""
    if len(a.shape) != 1:
        raise shape_error("searchsorted", [a], "needs a sorted 1-d array to search")
    if side not in ("left", "right"):
        raise shape_error("searchsorted", [a], f"side must be 'left' or 'right', got {side!r}")
    if sorter is not None:
        a = _shape.take(a, sorter)
    v = v if hasattr(v, "shape") else np.asarray(v)
    below = (_ew.less if side == "left" else _ew.less_equal)(a, _shape.expand_dims(v, -1))
    return sum(below, axis=-1)


# -- cumprod: a scan of multiplications ------------------------------------------------------------------------------
def _cumprod_samples(rng):
    with_zero = S.normal(rng, 3, 5)
    with_zero[1, 2] = 0.0
    return [((S.normal(rng, 3, 4),), dict(axis=1)), ((S.normal(rng, 3, 4),), dict(axis=0)),
            ((with_zero,), dict(axis=1)), ((S.normal(rng, 2, 3),), {}), ((S.normal(rng, 7),), {})]


@composite(samples=_cumprod_samples, reference=S.jax_numpy("cumprod"),
           vjp_math="x̄ᵢ = Σⱼ≥ᵢ ḡⱼ · Πₖ≤ⱼ,ₖ≠ᵢ xₖ (exact at zeros: through the products)")
def cumprod(x, axis=None):
    """Running products along `axis` (over the flattened array when None): NumPy's cumprod, the array API's
    cumulative_prod. Its gradient is exact where entries are 0 (the scan multiplies, it never divides)."""
    if axis is None:
        x, axis = _shape.reshape(x, (-1,)), 0
    (axis,) = _norm_axis(x, axis, "cumprod")
    n, head, shift = x.shape[axis], (slice(None),) * axis, 1
    while shift < n:  # Hillis and Steele's scan: after the step with shift s, each entry holds the last 2s products
        ones = np.ones(x.shape[:axis] + (shift,) + x.shape[axis + 1:], x.dtype)
        x = x * _shape.concatenate([ones, _shape.getitem(x, head + (slice(0, n - shift),))], axis)
        shift *= 2
    return x


# -- order statistics -------------------------------------------------------------------------------------------
_QUANTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint")


def _order_statistic(name, x, q, axis, method, keepdims):
    """Quantile q (a number or a fixed array in [0, 1]) of x along `axis`: sort, then take or interpolate between
    the neighbouring order statistics, as NumPy's default methods do. q's axes come first in the result."""
    if getattr(q, "_bp_trace", None) is not None:
        raise shape_error(name, [x], "q must be numbers or a fixed array, not a traced value")
    if method not in _QUANTILE_METHODS:
        raise shape_error(name, [x], f"method={method!r} is not supported; use one of {', '.join(_QUANTILE_METHODS)}")
    q = np.asarray(q, np.float64)
    if not np.all((q >= 0) & (q <= 1)):
        raise shape_error(name, [x], f"quantiles must be in [0, 1] (percentiles in [0, 100]), got {q.tolist()}")
    axes = _norm_axis(x, axis, name)
    n = _count(x, axes)
    if n == 0:
        raise shape_error(name, [x], "cannot take an order statistic of no entries")
    rest = [a for a in range(len(x.shape)) if a not in axes]
    # the reduced axes last, as one axis of n entries, sorted
    y = _shape.transpose(x, rest + list(axes)) if axes else x
    y = _shape.sort(_shape.reshape(y, tuple(x.shape[a] for a in rest) + (n,)), axis=-1)
    position = q * (n - 1)
    lo = np.floor(position).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    pick = {"lower": lo, "higher": np.ceil(position).astype(np.int64), "nearest": np.around(position).astype(np.int64)}
    if method in pick:
        out = _shape.take(y, pick[method], axis=-1)
    else:
        weight = np.full(position.shape, 0.5) if method == "midpoint" else position - lo
        out = _shape.take(y, lo, axis=-1) * (1.0 - weight) + _shape.take(y, hi, axis=-1) * weight
    # as NumPy: a NaN anywhere along the axis makes the result NaN (sorting alone would move it out of the way)
    if np.dtype(x.dtype).kind == "f":
        has_nan = any(_ew.not_equal(y, y), axis=-1)
        out = _ew.where(_shape.reshape(has_nan, tuple(has_nan.shape) + (1,) * q.ndim), math.nan, out)
    kept = _reduced_shape(x.shape, axes, keepdims)
    if q.ndim:  # q's axes first, then the kept ones
        out = _shape.moveaxis(out, tuple(range(len(rest), len(rest) + q.ndim)), tuple(range(q.ndim)))
    return _shape.reshape(out, q.shape + kept)


def _quantile_samples(scale=1.0):
    def samples(rng):
        d = lambda *shape: S.distinct(rng, shape)[0]  # noqa: E731  (no ties: the gradient's entry is unique)
        # several q: a list, held fixed (a float array among the arguments would be differentiated)
        return [((d(7), 0.5 * scale), {}), ((d(6), 0.25 * scale), {}), ((d(3, 5), [0.1 * scale, 0.9 * scale]),
                {"axis": 1}), ((d(2, 3, 4), 0.7 * scale), {"axis": (0, 2), "keepdims": True}),
                ((d(3, 4), 0.4 * scale), {"axis": 0, "method": "lower"}),
                ((d(3, 4), 0.4 * scale), {"axis": 0, "method": "higher"}),
                ((d(5, 2), [0.1 * scale, 0.62 * scale]), {"axis": 0, "method": "nearest"}),
                ((d(6), 0.3 * scale), {"method": "midpoint"}), ((d(4), 1.0 * scale), {})]

    return samples


@composite(samples=_quantile_samples(),
           reference=lambda jax: lambda x, q, axis=None, method="linear", keepdims=False: jax.numpy.quantile(
               x, np.asarray(q), axis=axis, method=method, keepdims=keepdims),
           vjp_math="x̄ = ḡ · (1 − t) to the order statistic below the quantile and ḡ · t to the one above (t the "
                    "fraction between them)")
def quantile(x, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False):
    """The q-th quantile(s) of x along `axis`, q in [0, 1] (np.quantile): the sorted entries interpolated
    linearly at position q · (n − 1), or by `method` ("lower", "higher", "nearest", "midpoint")."""
    return _order_statistic("quantile", x, q, axis, method, keepdims)


@composite(samples=_quantile_samples(100.0),
           reference=lambda jax: lambda x, q, axis=None, method="linear", keepdims=False: jax.numpy.percentile(
               x, np.asarray(q), axis=axis, method=method, keepdims=keepdims),
           vjp_math="as quantile at q / 100")
def percentile(x, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False):
    """The q-th percentile(s) of x along `axis`, q in [0, 100] (np.percentile)."""
    return _order_statistic("percentile", x, np.asarray(q, np.float64) / 100.0, axis, method, keepdims)


@composite(samples=lambda rng: [((S.distinct(rng, (7,))[0],), {}), ((S.distinct(rng, (6,))[0],), {}),
                                ((S.distinct(rng, (3, 4))[0],), {"axis": 1}),
                                ((S.distinct(rng, (2, 3, 4))[0],), {"axis": (0, 2), "keepdims": True})],
           reference=lambda jax: lambda x, axis=None, keepdims=False: jax.numpy.median(x, axis=axis,
                                                                                       keepdims=keepdims),
           vjp_math="x̄ = ḡ to the middle entry (½ḡ to each of the two middle ones for an even count)")
def median(x, axis=None, out=None, overwrite_input=False, keepdims=False):
    """The middle value of x along `axis`: of the sorted entries, the middle one, or the mean of the two middle
    ones (np.median)."""
    return _order_statistic("median", x, 0.5, axis, "linear", keepdims)
