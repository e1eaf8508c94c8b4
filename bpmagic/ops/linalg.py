"""Matrix multiplication, batched like NumPy's `@`, and the contractions built on it.

`matmul` is the only primitive here (it is already batched and broadcasting). einsum, tensordot, inner, outer and
dot are composites: each reduces to transposes, reshapes, diagonals (integer indexing), sums and one matmul per pair
of operands, so their backward graphs are matmuls too and differentiate again. matrix_trace, cross, kron and vecdot
are composed from elementwise ops, sums and diagonals. (Solves, decompositions and norms: decompositions.py.)
"""
from __future__ import annotations

import string

import numpy as np

from ..errors import ShapeError
from . import elementwise as _ew
from . import reduce as _reduce
from . import samples as S
from . import shape as _shape
from .core import Primitive, composite, exposes, shape_error
from .onnx import op

__all__ = ["matmul", "dot", "einsum", "tensordot", "inner", "outer", "matrix_trace", "cross", "kron", "vecdot"]


def _matmul_rule(a, b):
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise shape_error("matmul", [a, b], "the primitive needs 2-d or batched operands")
    if a.shape[-1] != b.shape[-2]:
        raise shape_error("matmul", [a, b], f"inner sizes differ ({a.shape[-1]} vs {b.shape[-2]}); "
                          f"the left operand's last axis must equal the right operand's second-to-last")
    return stacks_shape("matmul", a, b) + (a.shape[-2], b.shape[-1]), np.result_type(a.dtype, b.dtype)


def stacks_shape(name, a, b):
    """The shape of the stacks of matrices a and b (their axes before the last two), broadcast together."""
    try:
        return tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise shape_error(name, [a, b], "the stacks of matrices (the axes before the last two) do not "
                          "broadcast") from None


def _matmul_vjp(g, out, a, b):
    ga = _matmul(g, _shape.swapaxes(b, -1, -2))
    gb = _matmul(_shape.swapaxes(a, -1, -2), g)
    return _ew.unbroadcast(ga, a.shape), _ew.unbroadcast(gb, b.shape)


def _matmul_lowering(ctx, a, b, out=None):
    if out is None or not len(ctx.inputs[0].shape) == 2 == len(ctx.inputs[1].shape):
        return None
    # a backend's own 2-d matmul kernel, when the step asks for a precision or a capturable call (CuPy's cuBLAS)
    make = getattr(ctx.backend, "matmul_kernel", None)
    if make is not None and (ctx.cuda_graph or ctx.matmul_precision != "fp32"):
        return f"{ctx.bind('_mm', lambda: make(ctx.matmul_precision))}({a}, {b}, {out})"
    if ctx.xp is np and ctx.is_pool_buffer(out):
        # NumPy's dot of matrices skips matmul's general loop set-up (0.7 µs of 1.9 at 16x32 @ 32x32); its out=
        # must be C-contiguous in the product's dtype
        return f"xp.dot({a}, {b}, {out})"
    return None


_matmul = Primitive("matmul", lambda xp, a, b: xp.matmul(a, b), _matmul_rule, _matmul_vjp, ufunc="matmul",
                    lowering=_matmul_lowering, symbol="@", onnx=op("MatMul"))


_MATMUL_SHAPES = [((3, 4), (4, 2)), ((3, 1), (1, 4)), ((2, 3, 4), (2, 4, 2)), ((2, 1, 3, 4), (5, 4, 2)),
                  ((3, 4), (2, 4, 2)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)),
                  ((2, 3, 4), (4,)), ((4,), (2, 4, 3))]


@exposes(_matmul, samples=S.binary(shapes=_MATMUL_SHAPES), reference=S.jax_numpy("matmul"),
         vjp_math="Ā = ḡ Bᵀ, B̄ = Aᵀ ḡ (batch axes summed back to each shape; a 1-d operand as a row or column vector)")
def matmul(a, b):
    """a @ b: matrix product; 1-d operands act as row/column vectors and that axis is dropped, as in NumPy."""
    if _ndim(a) == 0 or _ndim(b) == 0:
        raise ShapeError(f"matmul (@) of {tuple(getattr(a, 'shape', ()))} and {tuple(getattr(b, 'shape', ()))}: a "
                         "number has no rows or columns; to scale, multiply with *")
    a_vec, b_vec = len(a.shape) == 1, len(b.shape) == 1
    if a.shape and len(b.shape) >= 1 and a.shape[-1] != b.shape[0 if b_vec else -2]:  # named with the user's shapes
        raise shape_error("matmul", [a, b], f"inner sizes differ ({a.shape[-1]} vs {b.shape[0 if b_vec else -2]}); "
                          f"the left operand's last axis must equal the right operand's "
                          f"{'length' if b_vec else 'second-to-last'}")
    if a_vec:
        a = _shape.reshape(a, (1, a.shape[0]))
    if b_vec:
        b = _shape.reshape(b, (b.shape[0], 1))
    out = _matmul(a, b)
    if a_vec or b_vec:
        keep = out.shape[:-2] + (() if a_vec else out.shape[-2:-1]) + (() if b_vec else out.shape[-1:])
        out = _shape.reshape(out, keep)
    return out



def _ndim(x):
    """The number of axes of an array, a traced value or a Python number (0)."""
    return len(getattr(x, "shape", ()))


def _array(x):
    return x if hasattr(x, "shape") else np.asarray(x)


# -- einsum and the contractions built on it ---------------------------------------------------------------------
def _einsum_error(subscripts, operands, detail):
    shapes = " and ".join(str(tuple(o.shape)) for o in operands)
    return ShapeError(f"einsum {subscripts!r} of {shapes}: {detail}")


def _parse_subscripts(subscripts, operands):
    """(one letter string per operand, output letters); '...' becomes letters of its own, aligned on the right."""
    spec = subscripts.replace(" ", "")
    lhs, arrow, out = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise _einsum_error(subscripts, operands, f"{len(terms)} subscript terms for {len(operands)} operands")
    for part in terms + ([out] if arrow else []):
        if any(c not in string.ascii_letters for c in part.replace("...", "")):
            raise _einsum_error(subscripts, operands, "subscripts are letters, ',' between operands, '->' and '...'")
    n_ell = [len(x.shape) - len(t.replace("...", "")) if "..." in t else 0 for t, x in zip(terms, operands)]
    free = [c for c in string.ascii_letters if c not in spec]
    ell = "".join(free[:max(n_ell, default=0)])
    letters = []
    for t, x, n in zip(terms, operands, n_ell):
        t = t.replace("...", ell[len(ell) - n:]) if "..." in t and n >= 0 else t
        if len(t) != len(x.shape):
            raise _einsum_error(subscripts, operands, f"term {t!r} names {len(t)} axes of a {len(x.shape)}-d operand")
        letters.append(t)
    if arrow:
        out = out.replace("...", ell)
        if len(set(out)) != len(out):
            raise _einsum_error(subscripts, operands, f"the output {out!r} repeats a letter")
        missing = [c for c in out if not any(c in t for t in letters)]
        if missing:
            raise _einsum_error(subscripts, operands, f"output letter {missing[0]!r} is not in any input")
    else:  # NumPy's implicit output: the ellipsis axes, then the letters used once, in alphabetical order
        counts = {c: "".join(letters).count(c) for c in "".join(letters)}
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    return letters, out


def _letter_sizes(subscripts, operands, letters):
    sizes = {}
    for t, x in zip(letters, operands):
        for c, n in zip(t, x.shape):
            if sizes.get(c, 1) not in (1, n) and n != 1:
                raise _einsum_error(subscripts, operands, f"{c!r} has sizes {sizes[c]} and {n}")
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    return sizes


def _take_diagonals(x, t):
    """x with each repeated letter of `t` reduced to its diagonal ('ii' -> 'i')."""
    while len(set(t)) != len(t):
        c = next(c for c in t if t.count(c) > 1)
        where = [i for i, d in enumerate(t) if d == c]
        rest = [i for i, d in enumerate(t) if d != c]
        x = _shape.transpose(x, where + rest)
        ar = np.arange(x.shape[0])
        x = _shape.getitem(x, (ar,) * len(where))  # adjacent leading index arrays: the diagonal axis stays first
        t = c + "".join(t[i] for i in rest)
    return x, t


def _sum_letters(x, t, keep):
    """x summed over its letters that are not in `keep`."""
    axes = tuple(i for i, c in enumerate(t) if c not in keep)
    if not axes:
        return x, t
    return _reduce.sum(x, axis=axes), "".join(c for c in t if c in keep)


def _contract(a, la, b, lb, keep):
    """a (letters la) and b (letters lb) contracted over their shared letters not in `keep`, as one matmul."""
    batch = [c for c in la if c in lb and c in keep]
    summed = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    size = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))
    prod = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))  # noqa: E731
    a = _shape.transpose(a, [la.index(c) for c in batch + left + summed])
    b = _shape.transpose(b, [lb.index(c) for c in batch + summed + right])
    lead = (prod(batch),) if batch else ()
    out = _matmul(_shape.reshape(a, lead + (prod(left), prod(summed))),
                  _shape.reshape(b, lead + (prod(summed), prod(right))))
    return _shape.reshape(out, tuple(size[c] for c in batch + left + right)), "".join(batch + left + right)


def _einsum_samples(rng):
    n = S.normal
    return [(("ij,jk->ik", n(rng, 3, 4), n(rng, 4, 2)), {}),
            (("bij,bjk->bik", n(rng, 2, 3, 4), n(rng, 2, 4, 2)), {}),
            (("ij->ji", n(rng, 3, 4)), {}),
            (("ii->i", n(rng, 3, 3)), {}),
            (("ii", n(rng, 3, 3)), {}),
            (("i,j->ij", n(rng, 3), n(rng, 4)), {}),
            (("ij,ij->", n(rng, 3, 4), n(rng, 3, 4)), {}),
            (("...ij,...jk", n(rng, 2, 3, 4), n(rng, 4, 2)), {}),
            (("bhqd,bhkd->bhqk", n(rng, 2, 2, 3, 4), n(rng, 2, 2, 5, 4)), {}),
            (("ij,jk,kl->il", n(rng, 2, 3), n(rng, 3, 4), n(rng, 4, 2)), {}),
            (("ijk->k", n(rng, 2, 3, 4)), {}),
            ((n(rng, 3, 4), [0, 1], n(rng, 4, 2), [1, 2], [0, 2]), {}),  # NumPy's sublist form
            ((n(rng, 2, 3, 3), [Ellipsis, 0, 0]), {})]


@composite(samples=_einsum_samples, reference=lambda jax: jax.numpy.einsum,
           vjp_math="Āₖ = einsum(ḡ and the other operands → the subscripts of Aₖ): each operand's adjoint is the "
                    "same contraction with its subscripts and the output's swapped")
def einsum(subscripts, *operands):
    """Einstein summation, as np.einsum: einsum("ij,jk->ik", A, B) is A @ B; repeated letters in one term take a
    diagonal, letters missing from the output are summed, '...' stands for the leading axes."""
    if not isinstance(subscripts, str):
        subscripts, operands = _from_sublists((subscripts, *operands))
    if not operands:
        raise ShapeError(f"einsum {subscripts!r}: give at least one operand")
    letters, out = _parse_subscripts(subscripts, operands)
    sizes = _letter_sizes(subscripts, operands, letters)
    arrays = []
    for x, t in zip(operands, letters):
        shape = tuple(sizes[c] for c in t)
        arrays.append(_shape.broadcast_to(x, shape) if tuple(x.shape) != shape else x)
    terms = []
    for i, (x, t) in enumerate(zip(arrays, letters)):
        x, t = _take_diagonals(x, t)
        others = out + "".join(letters[:i] + letters[i + 1:])
        terms.append(_sum_letters(x, t, others))
    x, t = terms[0]
    for i in range(1, len(terms)):
        b, lb = terms[i]
        keep = out + "".join(lt for _, lt in terms[i + 1:])
        x, t = _sum_letters(x, t, keep + lb)
        b, lb = _sum_letters(b, lb, keep + t)
        x, t = _contract(x, t, b, lb, keep)
    x, t = _sum_letters(x, t, out)
    return _shape.transpose(x, [t.index(c) for c in out])


def _from_sublists(args):
    """NumPy's other form, einsum(A, [0, 1], B, [1, 2], [0, 2]): axis numbers (and Ellipsis) after each operand,
    then optionally the output's; as (subscripts string, operands)."""
    out = args[-1] if len(args) % 2 else None
    args = args[:-1] if len(args) % 2 else args
    operands, lists = list(args[0::2]), list(args[1::2])
    if not operands or any(isinstance(x, str) for x in args):
        raise ShapeError("einsum takes the subscripts first, as a string (einsum('ij,jk->ik', A, B)), or each "
                         "operand followed by a list of axis numbers (einsum(A, [0, 1], B, [1, 2], [0, 2]))")

    def letters(sub):
        try:
            return "".join("..." if k is Ellipsis else string.ascii_letters[int(k)] for k in sub)
        except (TypeError, ValueError, IndexError):
            raise ShapeError(f"einsum: {sub!r} is not a list of axis numbers 0..51 (and ...)") from None

    spec = ",".join(letters(sub) for sub in lists) + ("" if out is None else "->" + letters(out))
    return spec, operands


def _tensordot_axes(a, b, axes):
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        return list(range(len(a.shape) - n, len(a.shape))), list(range(n))
    ax_a, ax_b = axes
    ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
    ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    return [int(i) % max(len(a.shape), 1) for i in ax_a], [int(i) % max(len(b.shape), 1) for i in ax_b]


@composite(samples=lambda rng: [((S.normal(rng, 2, 3, 4), S.normal(rng, 3, 4, 5)), {}),
                                ((S.normal(rng, 3, 4), S.normal(rng, 4, 2)), {"axes": 1}),
                                ((S.normal(rng, 2, 3, 4), S.normal(rng, 4, 2, 3)), {"axes": ([1, 2], [2, 0])}),
                                ((S.normal(rng, 3), S.normal(rng, 4)), {"axes": 0})],
           reference=lambda jax: jax.numpy.tensordot,
           vjp_math="Ā = tensordot(ḡ, B) over B's free axes, B̄ = tensordot(A, ḡ) over A's free axes (then "
                    "transposed back)")
def tensordot(a, b, axes=2):
    """Sum of products over `axes`: the last `axes` axes of a with the first of b, or the pair (a_axes, b_axes)."""
    ax_a, ax_b = _tensordot_axes(a, b, axes)
    if len(ax_a) != len(ax_b) or any(a.shape[i] != b.shape[j] for i, j in zip(ax_a, ax_b)):
        raise ShapeError(f"tensordot of {tuple(a.shape)} and {tuple(b.shape)} over axes {ax_a} and {ax_b}: the "
                         "summed axes must pair up with equal sizes")
    letters = iter(string.ascii_letters)
    la = [next(letters) for _ in a.shape]
    lb = [next(letters) for _ in b.shape]
    for i, j in zip(ax_a, ax_b):
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in ax_a] + [c for j, c in enumerate(lb) if j not in ax_b]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", a, b)


@composite(samples=lambda rng: [((S.normal(rng, 4), S.normal(rng, 4)), {}),
                                ((S.normal(rng, 2, 3, 4), S.normal(rng, 5, 4)), {}),
                                ((S.normal(rng), S.normal(rng, 3)), {})],
           reference=lambda jax: jax.numpy.inner,
           vjp_math="Ā = tensordot(ḡ, B) over B's leading axes, B̄ likewise (sum over the last axis of both)")
def inner(a, b):
    """Sum of products over the last axis of a and of b (np.inner); a 0-d operand multiplies."""
    if _ndim(a) == 0 or _ndim(b) == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise ShapeError(f"inner of {tuple(a.shape)} and {tuple(b.shape)}: the last axes differ ({a.shape[-1]} vs "
                         f"{b.shape[-1]})")
    return tensordot(a, b, axes=([-1], [-1]))


@composite(samples=lambda rng: [((S.normal(rng, 3), S.normal(rng, 4)), {}),
                                ((S.normal(rng, 2, 2), S.normal(rng, 3)), {})],
           reference=lambda jax: jax.numpy.outer,
           vjp_math="ā = ḡ · b, b̄ = ḡᵀ · a (a and b flattened)")
def outer(a, b):
    """All products a[i] * b[j] of the flattened a and b: shape (a.size, b.size), as np.outer."""
    return _shape.reshape(_array(a), (-1, 1)) * _shape.reshape(_array(b), (1, -1))


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), S.normal(rng, 4, 2)), {}),
                                ((S.normal(rng, 4), S.normal(rng, 4)), {}),
                                ((S.normal(rng, 2, 3, 4), S.normal(rng, 5, 4, 2)), {}),
                                ((S.normal(rng), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 2, 3), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 2, 3), 2.0), {})],
           reference=lambda jax: jax.numpy.dot,
           vjp_math="as matmul for 1-d and 2-d operands: Ā = ḡ Bᵀ, B̄ = Aᵀ ḡ; for N-d, tensordot over a's last "
                    "and b's second-to-last axis")
def dot(a, b):
    """np.dot: a product for 0-d operands, the matrix product for 1-d and 2-d, and for N-d a sum over a's last axis
    and b's second-to-last (unlike @, which batches)."""
    if _ndim(a) == 0 or _ndim(b) == 0:  # a Python number too: np.dot(x, 2.0) scales
        return a * b
    if len(b.shape) == 1 or len(a.shape) <= 2 and len(b.shape) <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([-1], [-2]))


def _trace_samples(rng):
    return [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 4, 3),), {"offset": 1}), ((S.normal(rng, 3, 3),),
            {"offset": -1}), ((S.normal(rng, 2, 3, 3),), {"axis1": 1, "axis2": 2})]


@composite(samples=_trace_samples, reference=S.jax_numpy("trace"), numpy_name="trace",
           vjp_math="x̄ = ḡ on the diagonal, 0 elsewhere")
def matrix_trace(x, offset=0, axis1=0, axis2=1):
    """Sum of the diagonal: np.trace(h) and h.trace() (bp.trace is the tracer of functions)."""
    return _reduce.sum(_shape.diagonal(x, offset, axis1, axis2), axis=-1)


def _cross_samples(rng):
    n = S.normal
    return [((n(rng, 3), n(rng, 3)), {}), ((n(rng, 4, 3), n(rng, 3)), {}), ((n(rng, 2, 1, 3), n(rng, 4, 3)), {}),
            ((n(rng, 3, 4), n(rng, 3, 4)), {"axis": 0}), ((n(rng, 2, 3), n(rng, 3, 2)), {"axisa": -1, "axisb": 0}),
            ((n(rng, 4, 2), n(rng, 4, 3)), {}), ((n(rng, 3), n(rng, 2)), {}),
            ((n(rng, 2, 3), n(rng, 2, 3)), {"axisc": 0})]


@composite(samples=_cross_samples, reference=S.jax_numpy("cross"), numpy_name=("cross", "linalg.cross"),
           vjp_math="ā = b × ḡ, b̄ = ḡ × a (for 3-vectors)")
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors along the last axis (or `axis`), broadcasting (np.cross): perpendicular to
    both, of length |a||b|sin θ. A 2-vector counts as having z = 0."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = _shape.moveaxis(_array(a), axisa, -1), _shape.moveaxis(_array(b), axisb, -1)
    if a.shape[-1] not in (2, 3) or b.shape[-1] not in (2, 3):
        raise ShapeError(f"cross of {tuple(a.shape)} and {tuple(b.shape)} (vector axis last): the vectors must have "
                         "2 or 3 components")
    if a.shape[-1] == 2 == b.shape[-1]:  # NumPy's 2-d case: the z component only
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

    def components(v):
        parts = [_shape.getitem(v, (Ellipsis, i)) for i in range(v.shape[-1])]
        return parts if len(parts) == 3 else parts + [0.0]

    (a0, a1, a2), (b0, b1, b2) = components(a), components(b)
    out = _shape.stack(list(_shape.broadcast_arrays(a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0)),
                       axis=-1)
    return _shape.moveaxis(out, -1, axisc)


@composite(samples=lambda rng: [((S.normal(rng, 2, 3), S.normal(rng, 3, 2)), {}),
                                ((S.normal(rng, 3), S.normal(rng, 2)), {}),
                                ((S.normal(rng, 2, 2), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 2), S.normal(rng, 2, 1, 2)), {})],
           reference=S.jax_numpy("kron"), vjp_math="Ā = Σ over each block of ḡ ⊙ B, B̄ = Σₖ aₖ · ḡ's block k")
def kron(a, b):
    """The Kronecker product: a block matrix of copies of b, each scaled by an entry of a (np.kron)."""
    a, b = _array(a), _array(b)
    n = max(len(a.shape), len(b.shape))
    sa = (1,) * (n - len(a.shape)) + tuple(a.shape)
    sb = (1,) * (n - len(b.shape)) + tuple(b.shape)
    # a's axes interleaved with b's: (a₀, b₀, a₁, b₁, ...), then each pair merged
    spread = (_shape.reshape(a, [d for s in sa for d in (s, 1)])
              * _shape.reshape(b, [d for s in sb for d in (1, s)]))
    return _shape.reshape(spread, [x * y for x, y in zip(sa, sb)])


@composite(samples=lambda rng: [((S.normal(rng, 3), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 2, 3), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 3, 4), S.normal(rng, 3, 4)), {"axis": 0})],
           reference=lambda jax: lambda a, b, axis=-1: jax.numpy.vecdot(a, b, axis=axis),
           numpy_name=("vecdot", "linalg.vecdot"), vjp_math="ā = ḡ · b, b̄ = ḡ · a (broadcast along axis)")
def vecdot(a, b, axis=-1):
    """Dot products of the vectors along `axis` of a and b, broadcasting the other axes (np.vecdot)."""
    return _reduce.sum(_array(a) * _array(b), axis=axis)
