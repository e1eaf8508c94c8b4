"""Primitives that move data without arithmetic: reshape, transpose, broadcast_to, indexing, concatenate.

The NumPy shape functions further down (pad, split, flip, roll, tile, repeat, take_along_axis, tril, triu) are
composites of these: padding is a scatter into zeros (its VJP the slice back out), flips and splits are slices, roll
is two slices joined, tile and repeat are broadcasts reshaped, take_along_axis is integer indexing and tril / triu
are a `where` with a constant mask. None needs a VJP of its own.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ShapeError
from . import reduce as _reduce
from . import elementwise as _ew
from . import samples as _s
from .core import Primitive, composite, shape_error

__all__ = ["reshape", "transpose", "swapaxes", "broadcast_to", "getitem", "take", "concatenate", "stack",
           "expand_dims", "squeeze", "unbroadcast", "flatten",
           "pad", "split", "flip", "roll", "tile", "repeat", "take_along_axis", "tril", "triu"]


# -- reshape ------------------------------------------------------------------------------------------------------
def _reshape_rule(x, shape):
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
        raise shape_error("reshape", [x], f"cannot hold its {int(np.prod(x.shape))} elements in shape {shape}")
    return shape, x.dtype


_reshape = Primitive("reshape", lambda xp, x, shape: x.reshape(shape), _reshape_rule,
                     lambda g, out, x, shape: (reshape(g, x.shape),))


def _resolve_shape(old_shape, shape):
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape of {tuple(old_shape)} to {shape}: only one axis may be -1")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        total = int(np.prod(old_shape, dtype=np.int64))
        if known == 0 or total % known:
            raise ShapeError(f"reshape of {tuple(old_shape)} to {shape}: {total} elements do not fit")
        shape = tuple(total // known if s == -1 else s for s in shape)
    return shape


def reshape(x, shape):
    """x with a new shape holding the same elements (one axis may be -1)."""
    shape = _resolve_shape(x.shape, shape)
    return x if tuple(x.shape) == shape else _reshape(x, shape=shape)


def flatten(x):
    return reshape(x, (-1,))


# -- transpose -----------------------------------------------------------------------------------------------------
def _transpose_rule(x, axes):
    if sorted(axes) != list(range(len(x.shape))):
        raise shape_error("transpose", [x], f"axes {axes} are not a permutation of {len(x.shape)} axes")
    return tuple(x.shape[a] for a in axes), x.dtype


_transpose = Primitive("transpose", lambda xp, x, axes: xp.transpose(x, axes), _transpose_rule,
                       lambda g, out, x, axes: (transpose(g, tuple(np.argsort(axes).tolist())),))


def transpose(x, axes=None):
    """Permute axes (default: reverse them, as NumPy's x.T)."""
    n = len(x.shape)
    axes = tuple(reversed(range(n))) if axes is None else tuple(int(a) % n if n else int(a) for a in axes)
    return x if axes == tuple(range(n)) else _transpose(x, axes=axes)


def swapaxes(x, a, b):
    axes = list(range(len(x.shape)))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


# -- broadcasting ------------------------------------------------------------------------------------------------
def _broadcast_rule(x, shape):
    try:
        out = np.broadcast_shapes(x.shape, shape)
    except ValueError:
        out = None
    if out != tuple(shape):
        raise shape_error("broadcast_to", [x], f"cannot broadcast to {tuple(shape)}")
    return tuple(shape), x.dtype


_broadcast_to = Primitive("broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape), _broadcast_rule,
                          lambda g, out, x, shape: (unbroadcast(g, x.shape),))


def broadcast_to(x, shape):
    shape = tuple(int(s) for s in shape)
    return x if tuple(x.shape) == shape else _broadcast_to(x, shape=shape)


def unbroadcast(g, shape):
    """Sum g down to `shape`: the adjoint of broadcasting (every binary op's VJP ends with it)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = len(g.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    return reshape(_reduce.sum(g, axis=axes), shape)


def expand_dims(x, axis):
    shape = list(x.shape)
    axis = axis % (len(shape) + 1)
    shape.insert(axis, 1)
    return reshape(x, shape)


def squeeze(x, axis=None):
    if axis is None:
        return reshape(x, [s for s in x.shape if s != 1])
    axes = {a % len(x.shape) for a in ((axis,) if isinstance(axis, int) else axis)}
    return reshape(x, [s for i, s in enumerate(x.shape) if i not in axes])


# -- indexing -------------------------------------------------------------------------------------------------------
class IndexSpec(tuple):
    """A normalised index: slices, ints, None, Ellipsis, and `Slot(k)` for the k-th integer-array input."""

    def build(self, arrays):
        return tuple(arrays[i.k] if isinstance(i, Slot) else i for i in self)

    def __repr__(self):
        def one(i):
            if isinstance(i, slice):
                return ":".join("" if v is None else str(v) for v in (i.start, i.stop)) + (
                    f":{i.step}" if i.step not in (None, 1) else "")
            return {None: "None", Ellipsis: "..."}.get(i, str(i)) if not isinstance(i, Slot) else f"idx{i.k}"
        return "[" + ", ".join(one(i) for i in self) + "]"


class Slot:
    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __eq__(self, other):
        return isinstance(other, Slot) and other.k == self.k

    def __hash__(self):
        return hash(("slot", self.k))


def _split_index(idx):
    """(IndexSpec, integer-array operands) for a user's index expression."""
    items = idx if isinstance(idx, tuple) else (idx,)
    spec, arrays = [], []
    for i in items:
        if isinstance(i, (slice, type(None), type(Ellipsis))):
            spec.append(i)
        elif isinstance(i, numbers.Integral) and not isinstance(i, bool):
            spec.append(int(i))
        else:
            if isinstance(i, (list, tuple)):
                i = np.asarray(i)
            dtype = getattr(i, "dtype", None)
            if dtype is None or np.dtype(dtype).kind not in "iu":
                kind = "boolean masks give data-dependent shapes" if dtype == bool else f"got {type(i).__name__}"
                raise ShapeError(f"indexing supports ints, slices, None, ... and integer arrays ({kind}); "
                                 "use bp.where(mask, x, 0) instead of a boolean mask")
            spec.append(Slot(len(arrays)))
            arrays.append(i)
    return IndexSpec(spec), arrays


def _getitem_impl(xp, x, *arrays, spec):
    return x[spec.build(arrays)]


def _getitem_rule(x, *arrays, spec):
    probe = np.lib.stride_tricks.as_strided(np.zeros((), x.dtype), shape=x.shape, strides=(0,) * len(x.shape))
    try:
        out = probe[spec.build([np.zeros(a.shape, np.int64) for a in arrays])]
    except IndexError as e:
        raise shape_error("indexing", [x], f"{spec!r} does not fit: {e}") from None
    return out.shape, x.dtype


def _getitem_vjp(g, out, x, *arrays, spec):
    return (scatter_add(g, *arrays, spec=spec, shape=tuple(x.shape)),) + (None,) * len(arrays)


_getitem = Primitive("getitem", _getitem_impl, _getitem_rule, _getitem_vjp, nondiff_inputs=range(1, 64))


def _scatter_add_impl(xp, g, *arrays, spec, shape):
    out = xp.zeros(shape, g.dtype)
    if arrays:
        xp.add.at(out, spec.build(arrays), g)  # repeated indices accumulate, as the chain rule requires
    else:
        out[spec.build(arrays)] = g
    return out


scatter_add = Primitive(
    "scatter_add", _scatter_add_impl, lambda g, *arrays, spec, shape: (shape, g.dtype),
    lambda g, out, upd, *arrays, spec, shape: (_getitem(g, *arrays, spec=spec),) + (None,) * len(arrays),
    nondiff_inputs=range(1, 64),
    doc="zeros(shape) with `g` added at the index (repeats accumulate): the VJP of indexing.",
)


def getitem(x, idx):
    """x[idx] for ints, slices, None, ... and integer arrays; its VJP scatters (and adds) back."""
    spec, arrays = _split_index(idx)
    if all(isinstance(i, slice) and i == slice(None) for i in spec):
        return x
    return _getitem(x, *arrays, spec=spec)


def take(x, indices, axis=0):
    """x's entries at integer `indices` along `axis` (gathers rows for axis 0)."""
    idx = (slice(None),) * (axis % len(x.shape)) + (indices,)
    return getitem(x, idx)


# -- concatenate / stack ------------------------------------------------------------------------------------------
def _concat_rule(*xs, axis):
    first = xs[0].shape
    for x in xs[1:]:
        if len(x.shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(x.shape, first)) if i != axis):
            raise shape_error("concatenate", xs, f"all axes but axis {axis} must match")
    size = sum(x.shape[axis] for x in xs)
    return first[:axis] + (size,) + first[axis + 1:], np.result_type(*(x.dtype for x in xs))


def _concat_vjp(g, out, *xs, axis):
    grads, start = [], 0
    for x in xs:
        stop = start + x.shape[axis]
        grads.append(getitem(g, (slice(None),) * axis + (slice(start, stop),)))
        start = stop
    return tuple(grads)


_concatenate = Primitive("concatenate", lambda xp, *xs, axis: xp.concatenate(xs, axis=axis), _concat_rule,
                         _concat_vjp)


def concatenate(xs, axis=0):
    """Join arrays along an existing axis."""
    xs = list(xs)
    if not xs:
        raise ShapeError("concatenate needs at least one array")
    return _concatenate(*xs, axis=axis % len(xs[0].shape))


def stack(xs, axis=0):
    """Join arrays along a new axis."""
    xs = list(xs)
    if not xs:
        raise ShapeError("stack needs at least one array")
    if any(tuple(x.shape) != tuple(xs[0].shape) for x in xs):
        raise ShapeError(f"stack needs arrays of one shape, got {', '.join(str(tuple(x.shape)) for x in xs)}")
    return concatenate([expand_dims(x, axis) for x in xs], axis=axis % (len(xs[0].shape) + 1))


# -- NumPy's shape functions, as composites -----------------------------------------------------------------------
def _axes_of(x, axis, name):
    n = len(x.shape)
    axes = range(n) if axis is None else (axis,) if isinstance(axis, numbers.Integral) else axis
    out = []
    for a in axes:
        if not -n <= int(a) < max(n, 1):
            raise shape_error(name, [x], f"axis {a} is out of range for {n} axes")
        out.append(int(a) % n)
    return out


def _pad_widths(x, pad_width):
    n = len(x.shape)
    w = np.asarray(pad_width, dtype=object)
    try:
        widths = np.broadcast_to(np.asarray(pad_width, np.int64), (n, 2)) if w.size else np.zeros((n, 2), np.int64)
    except ValueError:
        raise shape_error("pad", [x], f"pad_width {pad_width!r} must be an int, (before, after), or one "
                          f"(before, after) pair per axis ({n} axes)") from None
    if (widths < 0).any():
        raise shape_error("pad", [x], f"pad_width {pad_width!r} is negative; to crop, slice instead")
    return [(int(b), int(a)) for b, a in widths]


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4), 1), {}),
                                ((_s.normal(rng, 3, 4), ((0, 2), (1, 0))), {}),
                                ((_s.normal(rng, 2, 3, 2), (1, 2)), {"constant_values": 0.5}),
                                ((_s.normal(rng, 5), ((2, 0),)), {})],
           reference=lambda jax: jax.numpy.pad,
           vjp_math="x̄ = ḡ[b₀:b₀+n₀, b₁:b₁+n₁, …] (the padding's cotangent is dropped)")
def pad(x, pad_width, mode="constant", constant_values=0):
    """x with `pad_width` (int, (before, after), or one pair per axis) entries of `constant_values` around it."""
    if mode != "constant":
        raise shape_error("pad", [x], f"mode={mode!r} is not supported; only mode='constant' (a fixed value) is")
    widths = _pad_widths(x, pad_width)
    spec = IndexSpec(slice(b, b + s) for (b, _), s in zip(widths, x.shape))
    shape = tuple(b + s + a for (b, a), s in zip(widths, x.shape))
    if constant_values == 0:
        return scatter_add(x, spec=spec, shape=shape)
    # zeros around (x - c), then + c: the value c outside and x inside, with no constant array in the graph
    return scatter_add(x - constant_values, spec=spec, shape=shape) + constant_values


@composite(samples=lambda rng: [((_s.normal(rng, 6, 2), 3), {}),
                                ((_s.normal(rng, 2, 5), [1, 3]), {"axis": 1}),
                                ((_s.normal(rng, 4, 3), [2]), {"axis": -2})],
           reference=lambda jax: jax.numpy.split,
           vjp_math="x̄ = concatenate([ḡ₁, ḡ₂, …], axis)")
def split(x, indices_or_sections, axis=0):
    """A list of pieces of x along `axis`: `n` equal pieces, or cut before each index in a list (np.split)."""
    (axis,) = _axes_of(x, axis, "split")
    size = x.shape[axis]
    if isinstance(indices_or_sections, numbers.Integral):
        n = int(indices_or_sections)
        if n < 1 or size % n:
            raise shape_error("split", [x], f"axis {axis} of size {size} does not split into {n} equal pieces; "
                              "pass the cut points as a list instead")
        cuts = [size // n * i for i in range(1, n)]
    else:
        cuts = [int(c) for c in indices_or_sections]
    bounds = [0] + [min(max(c, 0), size) for c in cuts] + [size]
    return [getitem(x, (slice(None),) * axis + (slice(lo, max(lo, hi)),)) for lo, hi in zip(bounds, bounds[1:])]


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4),), {}),
                                ((_s.normal(rng, 3, 4),), {"axis": 1}),
                                ((_s.normal(rng, 2, 3, 4),), {"axis": (0, 2)})],
           reference=lambda jax: jax.numpy.flip,
           vjp_math="x̄ = flip(ḡ, axis)")
def flip(x, axis=None):
    """x reversed along `axis` (all axes when None)."""
    axes = set(_axes_of(x, axis, "flip"))
    return getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(len(x.shape))))


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4), 1), {}),
                                ((_s.normal(rng, 3, 4), -1), {"axis": 1}),
                                ((_s.normal(rng, 3, 4), (1, 5)), {"axis": (0, 1)}),
                                ((_s.normal(rng, 5), 7), {"axis": 0})],
           reference=lambda jax: jax.numpy.roll,
           vjp_math="x̄ = roll(ḡ, −shift, axis)")
def roll(x, shift, axis=None):
    """x shifted by `shift` places along `axis`, wrapping around (flattened when axis is None), as np.roll."""
    if axis is None:
        return reshape(roll(flatten(x), shift, 0), x.shape)
    shifts = (shift,) if isinstance(shift, numbers.Integral) else tuple(shift)
    axes = _axes_of(x, axis, "roll")
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    if len(shifts) != len(axes):
        raise shape_error("roll", [x], f"{len(shifts)} shifts for {len(axes)} axes")
    for s, a in zip(shifts, axes):
        n = x.shape[a]
        s = int(s) % n if n else 0
        if s:
            head = (slice(None),) * a
            x = concatenate([getitem(x, head + (slice(n - s, None),)), getitem(x, head + (slice(0, n - s),))], a)
    return x


@composite(samples=lambda rng: [((_s.normal(rng, 2, 3), (2, 1)), {}),
                                ((_s.normal(rng, 3), 2), {}),
                                ((_s.normal(rng, 2, 3), (2, 1, 2)), {})],
           reference=lambda jax: jax.numpy.tile,
           vjp_math="x̄ = ḡ reshaped to (r₀, n₀, r₁, n₁, …) and summed over the repeat axes r")
def tile(x, reps):
    """x repeated `reps` times along each axis (np.tile)."""
    reps = (int(reps),) if isinstance(reps, numbers.Integral) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise shape_error("tile", [x], f"reps {reps} must not be negative")
    n = max(len(reps), len(x.shape))
    reps = (1,) * (n - len(reps)) + reps
    shape = (1,) * (n - len(x.shape)) + tuple(x.shape)
    interleaved = reshape(x, [d for s in shape for d in (1, s)])
    spread = broadcast_to(interleaved, [d for r, s in zip(reps, shape) for d in (r, s)])
    return reshape(spread, [r * s for r, s in zip(reps, shape)])


@composite(samples=lambda rng: [((_s.normal(rng, 2, 3), 2), {}),
                                ((_s.normal(rng, 2, 3), 3), {"axis": 1}),
                                ((_s.normal(rng, 3, 2), np.array([1, 0, 2])), {"axis": 0})],
           reference=lambda jax: jax.numpy.repeat,
           vjp_math="x̄ = ḡ with each run of copies summed back into its source entry")
def repeat(x, repeats, axis=None):
    """Each entry repeated `repeats` times (an int, or one count per entry) along `axis` (flattened when None)."""
    if axis is None:
        x, axis = flatten(x), 0
    (axis,) = _axes_of(x, axis, "repeat")
    if isinstance(repeats, numbers.Integral):
        r = int(repeats)
        if r < 0:
            raise shape_error("repeat", [x], f"repeats {r} must not be negative")
        wide = broadcast_to(expand_dims(x, axis + 1), x.shape[:axis + 1] + (r,) + x.shape[axis + 1:])
        return reshape(wide, x.shape[:axis] + (x.shape[axis] * r,) + x.shape[axis + 1:])
    counts = np.asarray(repeats, np.int64)
    if counts.shape != (x.shape[axis],) or (counts < 0).any():
        raise shape_error("repeat", [x], f"repeats must be one count >= 0 per entry of axis {axis} "
                          f"({x.shape[axis]} of them), got {counts.tolist()}")
    return take(x, np.repeat(np.arange(x.shape[axis]), counts), axis=axis)


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4), np.array([[0, 3], [1, 1], [2, 0]])), {"axis": 1}),
                                ((_s.normal(rng, 3, 4), np.array([[2, 0, 1, 1]])), {"axis": 0}),
                                ((_s.normal(rng, 3, 4), np.array([5, 0, 11])), {"axis": None})],
           reference=lambda jax: jax.numpy.take_along_axis,
           vjp_math="x̄ = zeros_like(x) with ḡ added at the indices (repeats accumulate)")
def take_along_axis(x, indices, axis):
    """x's entries at integer `indices` along `axis`, indices shaped like x (np.take_along_axis; e.g. with
    argsort or argmax(..., keepdims))."""
    if axis is None:
        x, axis = flatten(x), 0
    (axis,) = _axes_of(x, axis, "take_along_axis")
    n = len(x.shape)
    if len(indices.shape) != n:
        raise ShapeError(f"take_along_axis of {tuple(x.shape)} and indices {tuple(indices.shape)}: the indices "
                         f"need as many axes as the array ({n})")
    index = tuple(indices if i == axis else np.arange(s).reshape([-1 if j == i else 1 for j in range(n)])
                  for i, s in enumerate(x.shape))
    return getitem(x, index)


def _triangle(x, k, name, lower):
    if len(x.shape) < 2:
        raise shape_error(name, [x], "needs at least 2 axes (it keeps a triangle of the last two)")
    rows, cols = x.shape[-2:]
    keep = np.tri(rows, cols, int(k), dtype=bool) if lower else ~np.tri(rows, cols, int(k) - 1, dtype=bool)
    return _ew.where(keep, x, 0)


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4),), {}), ((_s.normal(rng, 4, 3),), {"k": -1}),
                                ((_s.normal(rng, 2, 3, 3),), {"k": 1})],
           reference=lambda jax: jax.numpy.tril, vjp_math="x̄ = tril(ḡ, k)")
def tril(x, k=0):
    """x with the entries above the k-th diagonal of its last two axes set to 0."""
    return _triangle(x, k, "tril", lower=True)


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4),), {}), ((_s.normal(rng, 4, 3),), {"k": 1}),
                                ((_s.normal(rng, 2, 3, 3),), {"k": -1})],
           reference=lambda jax: jax.numpy.triu, vjp_math="x̄ = triu(ḡ, k)")
def triu(x, k=0):
    """x with the entries below the k-th diagonal of its last two axes set to 0."""
    return _triangle(x, k, "triu", lower=False)
