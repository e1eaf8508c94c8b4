"""Primitives that move data without arithmetic: reshape, transpose, broadcast_to, indexing, concatenate.

The NumPy shape functions further down (pad, split, flip, roll, tile, repeat, take_along_axis, tril, triu) are
composites of these: padding is a scatter into zeros (its VJP the slice back out), flips and splits are slices, roll
is two slices joined, tile and repeat are broadcasts reshaped, take_along_axis is integer indexing and tril / triu
are a `where` with a constant mask. None needs a VJP of its own.

This module builds on elementwise (for `where`, and `unbroadcast`, the VJP of broadcast_to) and on nothing else of
ops/: reductions build on it, not it on them.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ShapeError
from . import elementwise as _ew
from . import samples as S
from .core import Primitive, composite, exposes, shape_error

__all__ = ["reshape", "transpose", "swapaxes", "broadcast_to", "getitem", "take", "concatenate", "stack",
           "expand_dims", "squeeze", "flatten",
           "pad", "split", "flip", "roll", "tile", "repeat", "take_along_axis", "tril", "triu",
           "ravel", "hstack", "vstack", "moveaxis", "diff", "fliplr", "flipud", "sort", "argsort", "diagonal",
           "atleast_1d", "atleast_2d", "atleast_3d", "array_split", "vsplit", "hsplit", "dsplit", "column_stack",
           "dstack", "diag", "append", "rot90", "rollaxis", "unstack", "broadcast_arrays", "meshgrid",
           "matrix_transpose", "gradient", "asarray"]


# -- reshape ------------------------------------------------------------------------------------------------------
def _reshape_rule(x, shape):
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
        raise shape_error("reshape", [x], f"cannot hold its {int(np.prod(x.shape))} elements in shape {shape}")
    return shape, x.dtype


_reshape = Primitive("reshape", lambda xp, x, shape: x.reshape(shape), _reshape_rule,
                     lambda g, out, x, shape: (reshape(g, x.shape),),
                     lowering=lambda ctx, x, out=None, shape=(): f"{x}.reshape({shape!r})",  # a view, no call
                     onnx=lambda ctx, x, shape: ctx.node("Reshape", [x, ctx.ints(shape)]))


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


def _cases(*cases):
    """samples(rng) from (shapes of normal inputs, kwargs) pairs."""
    return lambda rng: [(tuple(S.normal(rng, *sh) for sh in shapes), dict(kw)) for shapes, kw in cases]


@exposes(_reshape, samples=_cases(([(2, 3, 4)], dict(shape=(6, 4))), ([(2, 3, 4)], dict(shape=(-1,))),
                                  ([(2, 3, 4)], dict(shape=(4, -1))), ([(2, 3, 4)], dict(shape=(2, 1, 12, 1))),
                                  ([()], dict(shape=(1, 1)))),
         reference=S.jax_numpy("reshape"), vjp_math="x̄ = reshape(ḡ, x.shape)")
def reshape(x, shape, order="C"):
    """x with a new shape holding the same elements (one axis may be -1). order="F" reads and writes the
    elements with the first index changing fastest, as NumPy's (a transpose on either side of the reshape)."""
    if order == "F":
        shape = _resolve_shape(x.shape, shape)
        return transpose(reshape(transpose(x), shape[::-1]))
    if order not in ("C", "A", "K"):
        raise shape_error("reshape", [x], f"order={order!r}: use 'C' or 'F'")
    shape = _resolve_shape(x.shape, shape)
    return x if tuple(x.shape) == shape else _reshape(x, shape=shape)


@composite(samples=_cases(([(3, 4)], {}), ([(2, 3, 4)], {}), ([(2, 3)], dict(order="F"))),
           reference=lambda jax: jax.numpy.ravel, numpy_name=None, vjp_math="x̄ = reshape(ḡ, x.shape)")
def flatten(x, order="C"):
    """x as one axis (ndarray.flatten): rows one after another, or columns with order="F"."""
    return reshape(x, (-1,), order)


@composite(samples=_cases(([(3, 4)], {}), ([(2, 3, 4)], {}), ([(2, 3)], dict(order="F"))),
           reference=lambda jax: jax.numpy.ravel, vjp_math="x̄ = reshape(ḡ, x.shape)")
def ravel(x, order="C"):
    """x as one axis (np.ravel; the same as flatten)."""
    return reshape(x, (-1,), order)


# -- transpose -----------------------------------------------------------------------------------------------------
def _transpose_rule(x, axes):
    if sorted(axes) != list(range(len(x.shape))):
        raise shape_error("transpose", [x], f"axes {axes} are not a permutation of {len(x.shape)} axes")
    return tuple(x.shape[a] for a in axes), x.dtype


def _transpose_lowering(ctx, x, out=None, axes=()):
    if tuple(axes) == tuple(reversed(range(len(axes)))):
        return f"{x}.T"  # the attribute is cheaper than the call
    return f"{x}.transpose({axes!r})"


_transpose = Primitive("transpose", lambda xp, x, axes: xp.transpose(x, axes), _transpose_rule,
                       lambda g, out, x, axes: (transpose(g, tuple(np.argsort(axes).tolist())),),
                       lowering=_transpose_lowering,
                       onnx=lambda ctx, x, axes: ctx.node("Transpose", [x], perm=list(axes)))


@exposes(_transpose, samples=_cases(([(2, 3, 4)], {}), ([(3, 4)], {}), ([(2, 3, 4)], dict(axes=(1, 0, 2))),
                                    ([(2, 3, 4)], dict(axes=(2, 0, 1))), ([(2, 3, 4)], dict(axes=(-1, 0, 1)))),
         reference=S.jax_numpy("transpose"), vjp_math="x̄ = transpose(ḡ, argsort(axes))")
def transpose(x, axes=None):
    """Permute axes (default: reverse them, as NumPy's x.T)."""
    n = len(x.shape)
    axes = tuple(reversed(range(n))) if axes is None else tuple(int(a) % n if n else int(a) for a in axes)
    return x if axes == tuple(range(n)) else _transpose(x, axes=axes)


@composite(samples=lambda rng: [((S.normal(rng, 2, 3, 4), 0, 2), {}), ((S.normal(rng, 2, 3, 4), -1, -2), {})],
           reference=S.jax_numpy("swapaxes"), vjp_math="x̄ = swapaxes(ḡ, a, b)")
def swapaxes(x, a, b):
    """x with axes a and b exchanged."""
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
                          lambda g, out, x, shape: (_ew.unbroadcast(g, x.shape),),
                          onnx=lambda ctx, x, shape: ctx.node("Expand", [x, ctx.ints(shape)]))


@exposes(_broadcast_to, samples=_cases(([(3, 1)], dict(shape=(2, 3, 4))), ([()], dict(shape=(3,))),
                                       ([(4,)], dict(shape=(2, 3, 4))), ([(1, 4)], dict(shape=(3, 4)))),
         reference=S.jax_numpy("broadcast_to"),
         vjp_math="x̄ = unbroadcast(ḡ, x.shape) (summed over the broadcast axes)")
def broadcast_to(x, shape):
    """x repeated along new or size-1 axes to `shape` (NumPy's broadcasting, made explicit)."""
    shape = tuple(int(s) for s in shape)
    return x if tuple(x.shape) == shape else _broadcast_to(x, shape=shape)


@composite(samples=_cases(([(3, 4)], dict(axis=0)), ([(3, 4)], dict(axis=-1)), ([(3, 4)], dict(axis=1))),
           reference=S.jax_numpy("expand_dims"), vjp_math="x̄ = squeeze(ḡ, axis)")
def expand_dims(x, axis):
    """x with a new axis of size 1 at `axis`."""
    shape = list(x.shape)
    axis = axis % (len(shape) + 1)
    shape.insert(axis, 1)
    return reshape(x, shape)


@composite(samples=_cases(([(3, 1, 4, 1)], {}), ([(3, 1, 4, 1)], dict(axis=1)), ([(3, 1, 4, 1)], dict(axis=(1, 3))),
                          ([(3, 1, 4, 1)], dict(axis=-1))),
           reference=S.jax_numpy("squeeze"), vjp_math="x̄ = reshape(ḡ, x.shape)")
def squeeze(x, axis=None):
    """x without its size-1 axes (or only those in `axis`)."""
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


def _getitem_onnx(ctx, x, *arrays, spec):
    """Basic indexing as one Slice, then a Gather per integer (or one integer array), then Unsqueeze for each None."""
    shape = ctx.operands[0].shape
    items = list(spec)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        items[at:at + 1] = [slice(None)] * (len(shape) - used)
    items += [slice(None)] * (len(shape) - sum(1 for i in items if i is not None))
    if sum(isinstance(i, Slot) for i in items) > 1:
        return None  # NumPy's rules for several index arrays: not mapped (the exporter says so)
    axis, starts, ends, axes, steps = 0, [], [], [], []
    for i in items:
        if i is None:
            continue
        if isinstance(i, slice) and i != slice(None):
            start, stop, step = i.indices(shape[axis])
            if step < 0 and stop < 0:
                stop = -(2 ** 62)  # "before index 0": ONNX would read -1 as the last entry
            starts.append(start), ends.append(stop), axes.append(axis), steps.append(step)
        axis += 1
    if axes:
        x = ctx.node("Slice", [x, ctx.ints(starts), ctx.ints(ends), ctx.ints(axes), ctx.ints(steps)])
    consumed = [i for i in items if i is not None]
    for a in reversed(range(len(consumed))):  # from the last axis, so earlier axes keep their numbers
        i = consumed[a]
        if isinstance(i, Slot):
            x = ctx.node("Gather", [x, ctx.cast(arrays[i.k], np.int64)], axis=a)
        elif isinstance(i, int):
            x = ctx.node("Gather", [x, ctx.const(np.int64(i))], axis=a)
    new_axes, position = [], 0
    for i in items:
        if i is None:
            new_axes.append(position)
            position += 1
        elif isinstance(i, slice):
            position += 1
        elif isinstance(i, Slot):
            position += len(ctx.operands[1 + i.k].shape)
    return ctx.node("Unsqueeze", [x, ctx.ints(new_axes)]) if new_axes else x


def _getitem_lowering(ctx, x, *arrays, out=None, spec=()):
    if arrays or not spec:
        return None
    return f"{x}{spec!r}"  # ints, slices, None, ...: the subscript itself (a view), cheaper than a call


_getitem = Primitive("getitem", _getitem_impl, _getitem_rule, _getitem_vjp, nondiff_inputs=range(1, 64),
                     lowering=_getitem_lowering, onnx=_getitem_onnx)


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
    jax=lambda jax, g, *arrays, spec, shape: jax.numpy.zeros(shape, g.dtype).at[spec.build(arrays)].add(g),
    doc="zeros(shape) with `g` added at the index (repeats accumulate): the VJP of indexing.",
)


_REPEATED = np.array([0, 2, 0, 1, 2, 2])


def _getitem_samples(rng):
    """Basic indexing (ints, slices with steps and negative bounds, None, ...), then integer arrays with repeats
    (the VJP scatter-adds: repeats must accumulate), broadcasting index arrays and arrays split by a slice."""
    x34, x53, x35, x234 = S.normal(rng, 3, 4), S.normal(rng, 5, 3), S.normal(rng, 3, 5), S.normal(rng, 2, 3, 4)
    idx = [(x34, 1), (x34, -1), (x34, (1, -2)), (S.normal(rng, 4, 3), slice(1, 3)), (x53, slice(None, None, 2)),
           (x53, slice(None, None, -1)), (x53, slice(-3, -1)), (x35, (slice(None), slice(-1, 0, -2))),
           (x35, (1, slice(None, None, 2))), (x34, (None, slice(None), 1)), (x234, (Ellipsis, 1)),
           (S.normal(rng, 2, 3), (Ellipsis, None)), (x234, (0, Ellipsis, slice(1, 3))),
           (S.normal(rng, 3, 1), (slice(None), 0)),
           (x34, _REPEATED), (x34, np.array([-1, 0, -1, 2, -3])), (x34, [1, 1, 0]), (x34, np.array([[0, 2], [2, 2]])),
           (x34, (slice(None), np.array([3, 0, 3]))), (x34, (_REPEATED, slice(1, None))),
           (x34, (np.array([0, 2, 0, 0]), np.array([1, 3, 1, 1]))), (x34, (np.array([[0], [2]]), np.array([1, 0, 1]))),
           (x234, (np.array([1, 0, 1]), slice(None), np.array([3, 3, 0])))]
    return [((x.copy(), i), {}) for x, i in idx]


def _getitem_reference(jax):
    return lambda x, idx: jax.numpy.asarray(x)[tuple(np.asarray(i) if isinstance(i, list) else i for i in idx)
                                               if isinstance(idx, tuple) else
                                               (np.asarray(idx) if isinstance(idx, list) else idx)]


@exposes(_getitem, samples=_getitem_samples, reference=_getitem_reference, numpy_name=None,
         vjp_math="x̄ = zeros_like(x) with ḡ added at idx (scatter-add: repeated indices accumulate)")
def getitem(x, idx):
    """x[idx] for ints, slices, None, ... and integer arrays; its VJP scatters (and adds) back."""
    spec, arrays = _split_index(idx)
    if all(isinstance(i, slice) and i == slice(None) for i in spec):
        return x
    return _getitem(x, *arrays, spec=spec)


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), _REPEATED), {}),
                                ((S.normal(rng, 3, 4), np.array([3, 1, 1])), dict(axis=1)),
                                ((S.normal(rng, 2, 3, 2), np.array([[0, 1], [1, 1]])), dict(axis=-1)),
                                ((S.normal(rng, 3, 4), np.array([[0, 11], [5, 5]])), dict(axis=None))],
           reference=lambda jax: lambda x, indices, axis=None: jax.numpy.take(x, indices, axis=axis),
           vjp_math="x̄ = zeros_like(x) with ḡ added at the indices along axis (repeats accumulate)")
def take(x, indices, axis=None):
    """x's entries at integer `indices` along `axis` (rows for axis=0); by default (axis=None) of the flattened
    array, as in NumPy."""
    if axis is None:
        x, axis = reshape(x, (int(np.prod(x.shape, dtype=np.int64)),)), 0
    idx = (slice(None),) * (axis % len(x.shape)) + (indices,)
    return getitem(x, idx)


# -- concatenate / stack ------------------------------------------------------------------------------------------
def _as_array(x):
    """A traced value or an array as it is; a Python number or list as NumPy's array of it (np.hstack's rule)."""
    return x if hasattr(x, "shape") else np.asarray(x)


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


def _concat_impl(xp, *xs, axis, out=None):
    return xp.concatenate(xs, axis=axis) if out is None else xp.concatenate(xs, axis=axis, out=out)


def _concat_lowering(ctx, *xs, out=None, axis=0):
    return None if out is None else f"xp.concatenate(({', '.join(xs)}{',' * (len(xs) == 1)}), {axis!r}, {out})"


_concatenate = Primitive("concatenate", _concat_impl, _concat_rule, _concat_vjp, accepts_out=True,
                         lowering=_concat_lowering,
                         onnx=lambda ctx, *xs, axis: ctx.node("Concat", ctx.cast_to_result(xs), axis=axis))


@exposes(_concatenate, samples=lambda rng: [
    (([S.normal(rng, 2, 3), S.normal(rng, 1, 3), S.normal(rng, 3, 3)],), dict(axis=0)),
    (([S.normal(rng, 2, 1), S.normal(rng, 2, 3), S.normal(rng, 2, 2)],), dict(axis=1)),
    (([S.normal(rng, 2, 2, 3), S.normal(rng, 2, 2, 1)],), dict(axis=-1)),
    (([S.normal(rng, 2, 2), S.normal(rng, 3)],), dict(axis=None))],
    reference=S.jax_numpy("concatenate"), vjp_math="x̄ᵢ = the slice of ḡ along axis that xᵢ occupies")
def concatenate(xs, axis=0):
    """Join arrays along an existing axis (flattened first when axis is None, as NumPy)."""
    xs = [_as_array(x) for x in xs]
    if not xs:
        raise ShapeError("concatenate needs at least one array")
    if axis is not None and any(not x.shape for x in xs):
        raise shape_error("concatenate", xs, "a number (0-d array) has no axis to join along: use np.hstack or "
                          "np.stack, or make it 1-d (np.atleast_1d)")
    if axis is None:
        xs, axis = [reshape(x, (-1,)) for x in xs], 0
    (axis,) = _axes_of(xs[0], axis, "concatenate")
    return _concatenate(*xs, axis=axis)


@composite(samples=lambda rng: [(([S.normal(rng, 2, 3) for _ in range(3)],), {}),
                                (([S.normal(rng, 2, 3), S.normal(rng, 2, 3)],), dict(axis=1)),
                                (([S.normal(rng, 2, 3), S.normal(rng, 2, 3)],), dict(axis=-1)),
                                (([S.normal(rng), S.normal(rng)],), {})],
           reference=S.jax_numpy("stack"), vjp_math="x̄ᵢ = ḡ at index i along axis")
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


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), 1), {}),
                                ((S.normal(rng, 3, 4), ((0, 2), (1, 0))), {}),
                                ((S.normal(rng, 2, 3, 2), (1, 2)), {"constant_values": 0.5}),
                                ((S.normal(rng, 5), ((2, 0),)), {})],
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


def _pieces(x, cuts, axis):
    """x cut before each index in `cuts` along `axis` (Python's slicing: a negative cut counts from the end)."""
    bounds = [0, *cuts, x.shape[axis]]
    return [getitem(x, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(bounds, bounds[1:])]


def _split(x, indices_or_sections, axis, name, equal=True):
    (axis,) = _axes_of(x, axis, name)
    size = x.shape[axis]
    if not isinstance(indices_or_sections, numbers.Integral):
        return _pieces(x, [int(c) for c in indices_or_sections], axis)
    n = int(indices_or_sections)
    if n < 1 or equal and size % n:
        raise shape_error(name, [x], f"axis {axis} of size {size} does not split into {n} equal pieces; "
                          "pass the cut points as a list instead, or use np.array_split")
    # array_split: the first size % n pieces are one longer
    lengths = [size // n + (i < size % n) for i in range(n)]
    return _pieces(x, np.cumsum(lengths)[:-1].tolist(), axis)


@composite(samples=lambda rng: [((S.normal(rng, 6, 2), 3), {}),
                                ((S.normal(rng, 2, 5), [1, 3]), {"axis": 1}),
                                ((S.normal(rng, 4, 3), [2]), {"axis": -2}),
                                ((S.normal(rng, 5, 2), [3, 3]), {})],
           reference=lambda jax: jax.numpy.split,
           vjp_math="x̄ = concatenate([ḡ₁, ḡ₂, …], axis)")
def split(x, indices_or_sections, axis=0):
    """A list of pieces of x along `axis`: `n` equal pieces, or cut before each index in a list (np.split)."""
    return _split(x, indices_or_sections, axis, "split")


@composite(samples=lambda rng: [((S.normal(rng, 7, 2), 3), {}), ((S.normal(rng, 2, 5), 2), {"axis": 1}),
                                ((S.normal(rng, 4, 3), [1, 3]), {})],
           reference=lambda jax: jax.numpy.array_split,
           vjp_math="x̄ = concatenate([ḡ₁, ḡ₂, …], axis)")
def array_split(x, indices_or_sections, axis=0):
    """As split, but `n` pieces need not be equal: the first (size mod n) are one entry longer (np.array_split)."""
    return _split(x, indices_or_sections, axis, "array_split", equal=False)


def _split_along(name, axis, min_ndim):
    def fn(x, indices_or_sections):
        if len(x.shape) < min_ndim:
            raise shape_error(name, [x], f"needs at least {min_ndim} axes")
        return _split(x, indices_or_sections, 0 if name == "hsplit" and len(x.shape) == 1 else axis, name)

    return fn


@composite(samples=lambda rng: [((S.normal(rng, 4, 3), 2), {}), ((S.normal(rng, 5, 2, 2), [1, 4]), {})],
           reference=lambda jax: jax.numpy.vsplit, vjp_math="x̄ = concatenate([ḡ₁, ḡ₂, …], 0)")
def vsplit(x, indices_or_sections):
    """split along axis 0 (rows), for arrays of 2 axes or more (np.vsplit)."""
    return _split_along("vsplit", 0, 2)(x, indices_or_sections)


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), 2), {}), ((S.normal(rng, 6), [2]), {})],
           reference=lambda jax: jax.numpy.hsplit, vjp_math="x̄ = concatenate([ḡ₁, ḡ₂, …], 1)")
def hsplit(x, indices_or_sections):
    """split along axis 1 (columns), or axis 0 of a 1-d array (np.hsplit)."""
    return _split_along("hsplit", 1, 1)(x, indices_or_sections)


@composite(samples=lambda rng: [((S.normal(rng, 2, 2, 4), 2), {}), ((S.normal(rng, 1, 2, 5), [1, 3]), {})],
           reference=lambda jax: jax.numpy.dsplit, vjp_math="x̄ = concatenate([ḡ₁, ḡ₂, …], 2)")
def dsplit(x, indices_or_sections):
    """split along axis 2 (depth), for arrays of 3 axes or more (np.dsplit)."""
    return _split_along("dsplit", 2, 3)(x, indices_or_sections)


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {}),
                                ((S.normal(rng, 3, 4),), {"axis": 1}),
                                ((S.normal(rng, 2, 3, 4),), {"axis": (0, 2)})],
           reference=lambda jax: jax.numpy.flip,
           vjp_math="x̄ = flip(ḡ, axis)")
def flip(x, axis=None):
    """x reversed along `axis` (all axes when None)."""
    axes = set(_axes_of(x, axis, "flip"))
    return getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(len(x.shape))))


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), 1), {}),
                                ((S.normal(rng, 3, 4), -1), {"axis": 1}),
                                ((S.normal(rng, 3, 4), (1, 5)), {"axis": (0, 1)}),
                                ((S.normal(rng, 5), 7), {"axis": 0})],
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


@composite(samples=lambda rng: [((S.normal(rng, 2, 3), (2, 1)), {}),
                                ((S.normal(rng, 3), 2), {}),
                                ((S.normal(rng, 2, 3), (2, 1, 2)), {})],
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


@composite(samples=lambda rng: [((S.normal(rng, 2, 3), 2), {}),
                                ((S.normal(rng, 2, 3), 3), {"axis": 1}),
                                ((S.normal(rng, 3, 2), np.array([1, 0, 2])), {"axis": 0})],
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


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), np.array([[0, 3], [1, 1], [2, 0]])), {"axis": 1}),
                                ((S.normal(rng, 3, 4), np.array([[2, 0, 1, 1]])), {"axis": 0}),
                                ((S.normal(rng, 3, 4), np.array([5, 0, 11])), {"axis": None})],
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


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 4, 3),), {"k": -1}),
                                ((S.normal(rng, 2, 3, 3),), {"k": 1})],
           reference=lambda jax: jax.numpy.tril, vjp_math="x̄ = tril(ḡ, k)")
def tril(x, k=0):
    """x with the entries above the k-th diagonal of its last two axes set to 0."""
    return _triangle(x, k, "tril", lower=True)


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 4, 3),), {"k": 1}),
                                ((S.normal(rng, 2, 3, 3),), {"k": -1})],
           reference=lambda jax: jax.numpy.triu, vjp_math="x̄ = triu(ḡ, k)")
def triu(x, k=0):
    """x with the entries below the k-th diagonal of its last two axes set to 0."""
    return _triangle(x, k, "triu", lower=False)


# -- more of NumPy's vocabulary, for learners' habits ------------------------------------------------------------
def _seq_samples(*shape_lists):
    return lambda rng: [(([S.normal(rng, *shape) for shape in shapes],), {}) for shapes in shape_lists]


def _asarray_samples(rng):
    return [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 3),), {"dtype": np.float64}),
            (([S.normal(rng, 3), S.normal(rng, 3)],), {}), (([[1.0, 2.0], [3.0, 4.0]],), {})]


@composite(samples=_asarray_samples, reference=lambda jax: lambda a, dtype=None: jax.numpy.asarray(
    jax.numpy.stack(a) if isinstance(a, list) and any(hasattr(x, "shape") for x in a) else a, dtype),
           numpy_name=None, vjp_math="ā = ḡ (cast back to a's dtype; a list of arrays gets the slices of ḡ)")
def asarray(a, dtype=None, copy=None):
    """a as an array, as np.asarray: a traced value stays itself (cast to `dtype` when given), a list of arrays and
    traced values is stacked, numbers and lists of numbers become a NumPy array. (np.asarray itself turns a traced
    value into a NumPy array before any dispatch could see it: write bp.asarray, or asarray in a cell.)"""
    if isinstance(a, (list, tuple)) and any(hasattr(x, "shape") or isinstance(x, (list, tuple)) for x in a):
        if any(getattr(x, "_bp_trace", None) is not None for x in _leaves(a)):
            a = stack([asarray(x) for x in a])
    if not hasattr(a, "shape"):
        return np.asarray(a, dtype)
    return a if dtype is None else _ew.astype(a, dtype)


def _leaves(a):
    for x in a:
        yield from (_leaves(x) if isinstance(x, (list, tuple)) else (x,))


def _atleast(arrays, ndim, place):
    """Each array with size-1 axes added (`place(shape)` gives the new shape) until it has `ndim` axes; one array
    alone is returned as itself, several as a tuple (NumPy's atleast_1d/2d/3d)."""
    out = []
    for x in map(_as_array, arrays):
        out.append(x if len(x.shape) >= ndim else reshape(x, place(tuple(x.shape))))
    return out[0] if len(out) == 1 else tuple(out)


def _atleast_samples(rng):
    return [((S.normal(rng),), {}), ((S.normal(rng, 3),), {}), ((S.normal(rng, 2, 3),), {}),
            ((S.normal(rng, 2, 3, 2),), {}), ((S.normal(rng, 3), S.normal(rng)), {})]


@composite(samples=_atleast_samples, reference=S.jax_numpy("atleast_1d"), vjp_math="x̄ = reshape(ḡ, x.shape)")
def atleast_1d(*arrays):
    """Each array with at least 1 axis: a number becomes shape (1,)."""
    return _atleast(arrays, 1, lambda shape: (1,))


@composite(samples=_atleast_samples, reference=S.jax_numpy("atleast_2d"), vjp_math="x̄ = reshape(ḡ, x.shape)")
def atleast_2d(*arrays):
    """Each array with at least 2 axes: a number becomes (1, 1), a vector (n,) the row (1, n)."""
    return _atleast(arrays, 2, lambda shape: (1,) * (2 - len(shape)) + shape)


@composite(samples=_atleast_samples, reference=S.jax_numpy("atleast_3d"), vjp_math="x̄ = reshape(ḡ, x.shape)")
def atleast_3d(*arrays):
    """Each array with at least 3 axes: a number becomes (1, 1, 1), a vector (n,) becomes (1, n, 1) and a matrix
    (m, n) becomes (m, n, 1)."""
    return _atleast(arrays, 3, lambda shape: {0: (1, 1, 1), 1: (1,) + shape + (1,), 2: shape + (1,)}[len(shape)])


@composite(samples=_seq_samples([(3,), (2,)], [(2, 3), (2, 1)], [(2, 1, 3), (2, 2, 3)], [(), (2,), ()]),
           reference=S.jax_numpy("hstack"), vjp_math="x̄ᵢ = the slice of ḡ that xᵢ occupies")
def hstack(xs):
    """Join arrays side by side: along axis 1, or along axis 0 for 1-d arrays and numbers (np.hstack)."""
    xs = [atleast_1d(x) for x in xs]
    return concatenate(xs, axis=0 if xs and len(xs[0].shape) == 1 else 1)


@composite(samples=_seq_samples([(3,), (3,)], [(2, 3), (1, 3)], [(1, 2, 3), (2, 2, 3)], [(), ()]),
           reference=S.jax_numpy("vstack"), vjp_math="x̄ᵢ = the rows of ḡ that xᵢ occupies")
def vstack(xs):
    """Join arrays one above the other, along axis 0; 1-d arrays become rows (np.vstack)."""
    return concatenate([atleast_2d(x) for x in xs], axis=0)


@composite(samples=_seq_samples([(3,), (3,)], [(3, 2), (3,)], [(), ()]),
           reference=S.jax_numpy("column_stack"), vjp_math="x̄ᵢ = the columns of ḡ that xᵢ occupies")
def column_stack(xs):
    """Join arrays side by side as columns: 1-d arrays become columns, 2-d ones join along axis 1."""
    return concatenate([reshape(x, (-1, 1)) if len(x.shape) < 2 else x for x in map(_as_array, xs)], axis=1)


@composite(samples=_seq_samples([(3,), (3,)], [(2, 3), (2, 3)], [(2, 3, 1), (2, 3, 2)]),
           reference=S.jax_numpy("dstack"), vjp_math="x̄ᵢ = the slice of ḡ along axis 2 that xᵢ occupies")
def dstack(xs):
    """Join arrays along axis 2 (depth), after making each at least 3-d as atleast_3d does (np.dstack)."""
    return concatenate([atleast_3d(x) for x in xs], axis=2)


@composite(samples=_cases(([(2, 3, 4)], dict(source=0, destination=-1)), ([(2, 3, 4)], dict(source=-1, destination=0)),
                          ([(2, 3, 4)], dict(source=(0, 1), destination=(2, 0)))),
           reference=S.jax_numpy("moveaxis"), vjp_math="x̄ = moveaxis(ḡ, destination, source)")
def moveaxis(x, source, destination):
    """x with the axes `source` moved to the positions `destination`, the others in their order (np.moveaxis)."""
    src, dst = _axes_of(x, source, "moveaxis"), _axes_of(x, destination, "moveaxis")
    if len(src) != len(dst):
        raise shape_error("moveaxis", [x], f"{len(src)} source axes for {len(dst)} destinations")
    order = [a for a in range(len(x.shape)) if a not in src]
    for d, a in sorted(zip(dst, src)):
        order.insert(d, a)
    return transpose(x, tuple(order))


@composite(samples=_cases(([(5,)], {}), ([(3, 4)], dict(axis=0)), ([(3, 5)], dict(n=2)), ([(2, 3, 4)], dict(axis=1))),
           reference=lambda jax: lambda x, n=1, axis=-1: jax.numpy.diff(x, n=n, axis=axis),
           vjp_math="x̄ = ḡ padded by one zero on each side, then its differences negated (n times)")
def diff(x, n=1, axis=-1):
    """Differences of neighbours along `axis`, x[1:] - x[:-1], taken `n` times (np.diff)."""
    (axis,) = _axes_of(x, axis, "diff")
    head = (slice(None),) * axis
    for _ in range(int(n)):
        x = getitem(x, head + (slice(1, None),)) - getitem(x, head + (slice(None, -1),))
    return x


@composite(samples=_cases(([(3, 4)], {}), ([(2, 3, 4)], {})), reference=S.jax_numpy("fliplr"),
           vjp_math="x̄ = fliplr(ḡ)")
def fliplr(x):
    """x with its columns (axis 1) in reverse order."""
    return flip(x, 1)


@composite(samples=_cases(([(3, 4)], {}), ([(5,)], {})), reference=S.jax_numpy("flipud"), vjp_math="x̄ = flipud(ḡ)")
def flipud(x):
    """x with its rows (axis 0) in reverse order."""
    return flip(x, 0)


def _argsort_rule(x, axis):
    return x.shape, np.dtype(np.int64)


def _argsort_onnx(ctx, x, axis):
    n = ctx.operands[0].shape[axis]
    return ctx.node("TopK", [x, ctx.ints([n])], axis=axis, largest=0, sorted=1, outputs=2)[1]  # ties: lower index


_argsort = Primitive("argsort", lambda xp, x, axis: xp.argsort(x, axis=axis, kind="stable").astype(np.int64),
                     _argsort_rule, differentiable=False, onnx=_argsort_onnx,
                     jax=lambda jax, x, axis: jax.numpy.argsort(x, axis=axis, stable=True))


def _sort_samples(rng):
    return [((S.distinct(rng, (3, 4))[0],), {}), ((S.distinct(rng, (3, 4))[0],), {"axis": 0}),
            ((S.distinct(rng, (2, 3, 4))[0],), {"axis": 1}), ((S.distinct(rng, (2, 3))[0],), {"axis": None})]


@exposes(_argsort, samples=_sort_samples, reference=lambda jax: lambda x, axis=-1: jax.numpy.argsort(x, axis=axis),
         vjp_math="no gradient (integer output)")
def argsort(x, axis=-1):
    """The indices that sort x along `axis` (ties in their order; over the flattened array when None)."""
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    (axis,) = _axes_of(x, axis, "argsort")
    return _argsort(x, axis=axis)


@composite(samples=_sort_samples, reference=lambda jax: lambda x, axis=-1: jax.numpy.sort(x, axis=axis),
           vjp_math="x̄ = ḡ sent back to each entry's place before sorting")
def sort(x, axis=-1):
    """x sorted along `axis` (over the flattened array when None); each entry's gradient follows it."""
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return take_along_axis(x, argsort(x, axis), axis)


def _diagonal_samples(rng):
    return [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 4, 3),), {"offset": 1}), ((S.normal(rng, 3, 3),),
            {"offset": -1}), ((S.normal(rng, 2, 3, 3),), {"axis1": 1, "axis2": 2})]


@composite(samples=_diagonal_samples, reference=S.jax_numpy("diagonal"),
           vjp_math="x̄ = zeros_like(x) with ḡ on the diagonal")
def diagonal(x, offset=0, axis1=0, axis2=1):
    """The diagonal of x over axes (axis1, axis2), `offset` above it, as the last axis (np.diagonal)."""
    if len(x.shape) < 2:
        raise shape_error("diagonal", [x], "needs at least 2 axes")
    (a1,), (a2,) = _axes_of(x, axis1, "diagonal"), _axes_of(x, axis2, "diagonal")
    if a1 == a2:
        raise shape_error("diagonal", [x], "axis1 and axis2 must differ")
    y = moveaxis(x, (a1, a2), (-2, -1))
    rows, cols = y.shape[-2:]
    offset = int(offset)
    n = max(0, min(rows + min(offset, 0), cols - max(offset, 0)))
    i = np.arange(n)
    return getitem(y, (Ellipsis, i - min(offset, 0), i + max(offset, 0)))


@composite(samples=lambda rng: [((S.normal(rng, 3),), {}), ((S.normal(rng, 3),), {"k": 1}),
                                ((S.normal(rng, 2),), {"k": -2}), ((S.normal(rng, 3, 4),), {}),
                                ((S.normal(rng, 4, 3),), {"k": -1})],
           reference=lambda jax: jax.numpy.diag,
           vjp_math="from a vector v: v̄ = the k-th diagonal of ḡ; from a matrix: x̄ = ḡ placed on its k-th diagonal")
def diag(v, k=0):
    """np.diag: a vector becomes the square matrix with it on diagonal k (0 elsewhere); a matrix gives its k-th
    diagonal."""
    if len(v.shape) == 2:
        return diagonal(v, offset=k)
    if len(v.shape) != 1:
        raise shape_error("diag", [v], "needs a 1-d array (to make a matrix) or a 2-d one (to read its diagonal)")
    k = int(k)
    n = v.shape[0] + abs(k)
    if k:  # row r of the matrix holds v[r] (k > 0) or column c holds v[c] (k < 0): v padded to n entries
        v = concatenate([v, np.zeros(abs(k), v.dtype)])
    spread = broadcast_to(reshape(v, (n, 1) if k >= 0 else (1, n)), (n, n))
    return _ew.where(np.eye(n, k=k, dtype=bool), spread, 0)


@composite(samples=lambda rng: [((S.normal(rng, 2, 3), S.normal(rng, 2)), {}),
                                ((S.normal(rng, 2, 3), S.normal(rng, 1, 3)), {"axis": 0}),
                                ((S.normal(rng, 3), 2.5), {})],
           reference=lambda jax: jax.numpy.append,
           vjp_math="ā and v̄ = the parts of ḡ that they occupy")
def append(arr, values, axis=None):
    """arr with `values` joined at its end along `axis`; both flattened first when axis is None (np.append)."""
    arr, values = _as_array(arr), _as_array(values)
    if axis is None:
        return concatenate([reshape(arr, (-1,)), reshape(values, (-1,))])
    return concatenate([arr, values], axis)


@composite(samples=_cases(([(3, 4)], {}), ([(3, 4)], dict(k=2)), ([(3, 4)], dict(k=-1)),
                          ([(2, 3, 4)], dict(k=3, axes=(1, 2))), ([(2, 3, 4)], dict(k=1, axes=(2, 0)))),
           reference=lambda jax: jax.numpy.rot90, vjp_math="x̄ = rot90(ḡ, −k, axes)")
def rot90(m, k=1, axes=(0, 1)):
    """m turned by 90° k times, from the first of `axes` towards the second (np.rot90)."""
    a0, a1 = _axes_of(m, axes, "rot90")
    if a0 == a1:
        raise shape_error("rot90", [m], f"axes {tuple(axes)} must be two different axes")
    k = int(k) % 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, a0), a1)
    order = list(range(len(m.shape)))
    order[a0], order[a1] = order[a1], order[a0]
    return transpose(flip(m, a1), order) if k == 1 else flip(transpose(m, order), a1)


@composite(samples=_cases(([(2, 3, 4)], dict(axis=2)), ([(2, 3, 4)], dict(axis=0, start=2)),
                          ([(2, 3, 4)], dict(axis=-1, start=1))),
           reference=lambda jax: jax.numpy.rollaxis, vjp_math="x̄ = ḡ with the axis moved back")
def rollaxis(x, axis, start=0):
    """x with `axis` moved to sit before position `start` (np.rollaxis; np.moveaxis is the clearer spelling)."""
    n = len(x.shape)
    (axis,) = _axes_of(x, axis, "rollaxis")
    start = int(start) + n if int(start) < 0 else int(start)
    if not 0 <= start <= n:
        raise shape_error("rollaxis", [x], f"start {start} must be in [-{n}, {n}]")
    start -= axis < start
    order = [a for a in range(n) if a != axis]
    order.insert(start, axis)
    return transpose(x, order)


@composite(samples=_cases(([(3, 4)], {}), ([(2, 3, 4)], dict(axis=1)), ([(2, 3)], dict(axis=-1))),
           reference=lambda jax: lambda x, axis=0: jax.numpy.unstack(x, axis=axis),
           vjp_math="x̄ = stack([ḡ₀, ḡ₁, …], axis)")
def unstack(x, axis=0):
    """The slices of x along `axis`, as a tuple (np.unstack; stack's inverse)."""
    (axis,) = _axes_of(x, axis, "unstack")
    return tuple(getitem(x, (slice(None),) * axis + (i,)) for i in range(x.shape[axis]))


def _broadcast_shape(name, arrays):
    try:
        return tuple(np.broadcast_shapes(*(tuple(a.shape) for a in arrays)))
    except ValueError:
        raise shape_error(name, arrays, "shapes do not broadcast (trailing axes must be equal or 1)") from None


@composite(samples=lambda rng: [((S.normal(rng, 3, 1), S.normal(rng, 4)), {}),
                                ((S.normal(rng), S.normal(rng, 2, 3), S.normal(rng, 1, 3)), {})],
           reference=lambda jax: jax.numpy.broadcast_arrays,
           vjp_math="x̄ᵢ = unbroadcast(ḡᵢ, xᵢ.shape)")
def broadcast_arrays(*arrays):
    """The arrays broadcast against each other, each to the common shape (np.broadcast_arrays)."""
    arrays = [_as_array(a) for a in arrays]
    shape = _broadcast_shape("broadcast_arrays", arrays)
    return tuple(broadcast_to(a, shape) for a in arrays)


@composite(samples=lambda rng: [((S.normal(rng, 3), S.normal(rng, 2)), {}),
                                ((S.normal(rng, 3), S.normal(rng, 2)), {"indexing": "ij"}),
                                ((S.normal(rng, 2), S.normal(rng, 3), S.normal(rng, 2)), {}),
                                ((S.normal(rng, 3), S.normal(rng, 2)), {"sparse": True})],
           reference=lambda jax: jax.numpy.meshgrid,
           vjp_math="x̄ᵢ = ḡᵢ summed over every axis but xᵢ's")
def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    """Coordinate grids from 1-d coordinate arrays: with indexing="xy" (the default) the first two axes are
    swapped, as for plotting; "ij" keeps matrix order; sparse=True leaves them unbroadcast (np.meshgrid)."""
    if indexing not in ("xy", "ij"):
        raise ShapeError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    n = len(xi)
    grids = [reshape(x, (1,) * i + (-1,) + (1,) * (n - i - 1)) for i, x in enumerate(xi)]
    if indexing == "xy" and n > 1:
        grids[0] = reshape(grids[0], (1, -1) + (1,) * (n - 2))
        grids[1] = reshape(grids[1], (-1, 1) + (1,) * (n - 2))
    return tuple(grids) if sparse else broadcast_arrays(*grids)


@composite(samples=_cases(([(3, 4)], {}), ([(2, 3, 4)], {})), reference=S.jax_numpy("matrix_transpose"),
           vjp_math="x̄ = matrix_transpose(ḡ)")
def matrix_transpose(x):
    """x with its last two axes swapped: each matrix of a stack transposed (x.mT)."""
    if len(x.shape) < 2:
        raise shape_error("matrix_transpose", [x], "needs at least 2 axes (a matrix, or a stack of them)")
    return swapaxes(x, -1, -2)


# -- np.gradient: finite differences of sampled values (not autodiff's gradient: that is bp.grad) ----------------
def _along(c, axis, n):
    """A constant 1-d array c shaped to broadcast along `axis` of an n-d array."""
    return np.reshape(c, [-1 if i == axis else 1 for i in range(n)])


def _derivative_along(f, axis, spacing, edge_order):
    n, size = len(f.shape), f.shape[axis]

    def part(lo, hi):
        return getitem(f, (slice(None),) * axis + (slice(lo, hi),))

    if size < edge_order + 1:
        raise shape_error("gradient", [f], f"axis {axis} has {size} entries; edge_order={edge_order} needs at "
                          f"least {edge_order + 1}")
    if np.ndim(spacing) == 0:  # uniform steps: central differences inside, one-sided ones at the two ends
        h = float(spacing)
        inside = (part(2, None) - part(None, -2)) * (0.5 / h)
        if edge_order == 1:
            first, last = (part(1, 2) - part(0, 1)) / h, (part(-1, None) - part(-2, -1)) / h
        else:
            first = (part(0, 1) * -1.5 + part(1, 2) * 2.0 - part(2, 3) * 0.5) / h
            last = (part(-3, -2) * 0.5 - part(-2, -1) * 2.0 + part(-1, None) * 1.5) / h
        return concatenate([first, inside, last], axis)
    # coordinates: second-order differences on the uneven grid (NumPy's formulas)
    d = np.diff(np.asarray(spacing, np.float64))
    d1, d2 = d[:-1], d[1:]
    coef = [-d2 / (d1 * (d1 + d2)), (d2 - d1) / (d1 * d2), d1 / (d2 * (d1 + d2))]
    inside = sum((part(i, size - 2 + i) * _along(c, axis, n) for i, c in enumerate(coef[1:], 1)),
                 part(0, -2) * _along(coef[0], axis, n))
    if edge_order == 1:
        first, last = (part(1, 2) - part(0, 1)) / d[0], (part(-1, None) - part(-2, -1)) / d[-1]
    else:
        a, b = d[0], d[1]
        first = (part(0, 1) * (-(2 * a + b) / (a * (a + b))) + part(1, 2) * ((a + b) / (a * b))
                 + part(2, 3) * (-a / (b * (a + b))))
        a, b = d[-2], d[-1]
        last = (part(-3, -2) * (b / (a * (a + b))) + part(-2, -1) * (-(a + b) / (a * b))
                + part(-1, None) * ((2 * b + a) / (b * (a + b))))
    return concatenate([first, inside, last], axis)


def _np_gradient_samples(rng):
    return [((S.normal(rng, 5),), {}), ((S.normal(rng, 4, 3),), {}), ((S.normal(rng, 4, 3), 0.5), {"axis": 0}),
            ((S.normal(rng, 5), 2.0), {"edge_order": 2}),
            ((S.normal(rng, 4, 3), [0.0, 0.5, 1.5, 1.75], 1.0), {}),  # coordinates: a list is held fixed
            ((S.normal(rng, 5), [0.0, 0.3, 0.4, 1.0, 2.5]), {"edge_order": 2})]


def _np_gradient_reference(jax):
    def gradient(f, *spacing, axis=None, edge_order=1):
        # np.gradient is linear in f: NumPy's own, applied to the unit vectors along an axis, is its matrix
        axes = list(range(f.ndim)) if axis is None else [axis] if isinstance(axis, int) else list(axis)
        spacing = list(spacing) * len(axes) if len(spacing) == 1 else list(spacing) or [1.0] * len(axes)
        outs = []
        for a, h in zip(axes, spacing):
            stencil = np.gradient(np.eye(f.shape[a]), h, axis=0, edge_order=edge_order)
            outs.append(jax.numpy.moveaxis(jax.numpy.tensordot(stencil, f, axes=([1], [a])), 0, a))
        return outs[0] if len(outs) == 1 else tuple(outs)

    return gradient


@composite(samples=_np_gradient_samples, reference=_np_gradient_reference,
           vjp_math="f̄ = the transpose of the difference stencil applied to ḡ (a linear map)")
def gradient(f, *varargs, axis=None, edge_order=1):
    """np.gradient: the derivative of sampled values f along each axis by finite differences (central inside,
    one-sided at the ends), with the spacing given as one number, one per axis, or coordinates. Not autodiff:
    the gradient of a function is bp.grad."""
    if edge_order not in (1, 2):
        raise shape_error("gradient", [f], f"edge_order must be 1 or 2, got {edge_order!r}")
    axes = _axes_of(f, axis, "gradient")
    if any(getattr(v, "_bp_trace", None) is not None for v in varargs):
        raise shape_error("gradient", [f], "the spacing must be numbers or fixed coordinate arrays, not traced values")
    spacing = list(varargs) if len(varargs) == len(axes) else list(varargs) * len(axes) if len(varargs) == 1 else \
        [1.0] * len(axes) if not varargs else None
    if spacing is None:
        raise shape_error("gradient", [f], f"{len(varargs)} spacings for {len(axes)} axes: give one, or one per axis")
    out = [_derivative_along(f, a, h, edge_order) for a, h in zip(axes, spacing)]
    return out[0] if len(out) == 1 else tuple(out)
