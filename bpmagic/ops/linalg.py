"""Matrix multiplication, batched like NumPy's `@`, and the contractions built on it.

`matmul` is the only primitive here (it is already batched and broadcasting). einsum, tensordot, inner, outer and
dot are composites: each reduces to transposes, reshapes, diagonals (integer indexing), sums and one matmul per pair
of operands, so their backward graphs are matmuls too and differentiate again. norm and matrix_trace are composed
from elementwise ops, sums and diagonals.
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

__all__ = ["matmul", "dot", "einsum", "tensordot", "inner", "outer", "norm", "matrix_trace"]


def _matmul_rule(a, b):
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise shape_error("matmul", [a, b], "the primitive needs 2-d or batched operands")
    if a.shape[-1] != b.shape[-2]:
        raise shape_error("matmul", [a, b], f"inner sizes differ ({a.shape[-1]} vs {b.shape[-2]}); "
                          f"the left operand's last axis must equal the right operand's second-to-last")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise shape_error("matmul", [a, b], "batch axes do not broadcast") from None
    return batch + (a.shape[-2], b.shape[-1]), np.result_type(a.dtype, b.dtype)


def _matmul_vjp(g, out, a, b):
    ga = _matmul(g, _shape.swapaxes(b, -1, -2))
    gb = _matmul(_shape.swapaxes(a, -1, -2), g)
    return _ew.unbroadcast(ga, a.shape), _ew.unbroadcast(gb, b.shape)


def _matmul_lowering(ctx, a, b, out=None):
    # a backend's own 2-d matmul kernel, when the step asks for a precision or a capturable call (CuPy's cuBLAS)
    make = getattr(ctx.backend, "matmul_kernel", None)
    if make is None or not (ctx.cuda_graph or ctx.matmul_precision != "fp32") or out is None:
        return None
    if not len(ctx.inputs[0].shape) == 2 == len(ctx.inputs[1].shape):
        return None
    return f"{ctx.bind('_mm', lambda: make(ctx.matmul_precision))}({a}, {b}, {out})"


_matmul = Primitive("matmul", lambda xp, a, b: xp.matmul(a, b), _matmul_rule, _matmul_vjp, ufunc="matmul",
                    lowering=_matmul_lowering, symbol="@", onnx=op("MatMul"))


_MATMUL_SHAPES = [((3, 4), (4, 2)), ((3, 1), (1, 4)), ((2, 3, 4), (2, 4, 2)), ((2, 1, 3, 4), (5, 4, 2)),
                  ((3, 4), (2, 4, 2)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)),
                  ((2, 3, 4), (4,)), ((4,), (2, 4, 3))]


@exposes(_matmul, samples=S.binary(shapes=_MATMUL_SHAPES), reference=S.jax_numpy("matmul"),
         vjp_math="Ā = ḡ Bᵀ, B̄ = Aᵀ ḡ (batch axes summed back to each shape; a 1-d operand as a row or column vector)")
def matmul(a, b):
    """a @ b: matrix product; 1-d operands act as row/column vectors and that axis is dropped, as in NumPy."""
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
            (("ijk->k", n(rng, 2, 3, 4)), {})]


@composite(samples=_einsum_samples, reference=lambda jax: jax.numpy.einsum,
           vjp_math="Āₖ = einsum(ḡ and the other operands → the subscripts of Aₖ): each operand's adjoint is the "
                    "same contraction with its subscripts and the output's swapped")
def einsum(subscripts, *operands):
    """Einstein summation, as np.einsum: einsum("ij,jk->ik", A, B) is A @ B; repeated letters in one term take a
    diagonal, letters missing from the output are summed, '...' stands for the leading axes."""
    if not isinstance(subscripts, str):
        raise ShapeError("einsum takes the subscripts first, as a string: einsum('ij,jk->ik', A, B)")
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
    if not a.shape or not b.shape:
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
    return _shape.reshape(a, (-1, 1)) * _shape.reshape(b, (1, -1))


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), S.normal(rng, 4, 2)), {}),
                                ((S.normal(rng, 4), S.normal(rng, 4)), {}),
                                ((S.normal(rng, 2, 3, 4), S.normal(rng, 5, 4, 2)), {}),
                                ((S.normal(rng), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 2, 3), S.normal(rng, 3)), {})],
           reference=lambda jax: jax.numpy.dot,
           vjp_math="as matmul for 1-d and 2-d operands: Ā = ḡ Bᵀ, B̄ = Aᵀ ḡ; for N-d, tensordot over a's last "
                    "and b's second-to-last axis")
def dot(a, b):
    """np.dot: a product for 0-d operands, the matrix product for 1-d and 2-d, and for N-d a sum over a's last axis
    and b's second-to-last (unlike @, which batches)."""
    if not a.shape or not b.shape:
        return a * b
    if len(b.shape) == 1 or len(a.shape) <= 2 and len(b.shape) <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([-1], [-2]))


def _norm_samples(rng):
    v, m = S.normal(rng, 5), S.normal(rng, 3, 4)
    return [((v,), {}), ((m,), {}), ((v,), dict(ord=1)), ((S.distinct(rng, (5,))[0],), dict(ord=np.inf)),
            ((v,), dict(ord=3)), ((m,), dict(axis=1)), ((m,), dict(axis=0, keepdims=True)), ((m,), dict(ord="fro")),
            ((S.distinct(rng, (3, 4))[0],), dict(ord=1)), ((S.distinct(rng, (3, 4))[0],), dict(ord=np.inf)),
            ((S.normal(rng, 2, 3, 4),), dict(axis=(1, 2)))]


@composite(samples=_norm_samples, reference=lambda jax: jax.numpy.linalg.norm, numpy_name="linalg.norm",
           vjp_math="x̄ = ḡ · x / y for the 2-norm; ḡ · sign(x) for ord=1")
def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: a vector norm along one axis (2 by default; 1, inf, -inf, any p), or a matrix norm over two
    axes ("fro" by default; 1 and inf: the largest column and row sums). Without axis: the 2-norm of the flattened
    array, or the matrix norm of a 2-d array when `ord` is given."""
    n = len(x.shape)
    if axis is None:
        axes = tuple(range(n)) if ord is None or n == 1 else (0, 1) if n == 2 else None
        if axes is None:
            raise shape_error("norm", [x], f"ord={ord!r} without axis needs a 1-d or 2-d array")
    else:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % n for a in axes)
    if ord is None or ord == "fro" and len(axes) == 2:
        return _ew.sqrt(_reduce.sum(_ew.square(x), axis=axes, keepdims=keepdims))
    a = _ew.abs(x)
    if len(axes) == 1:
        if ord == np.inf:
            return _reduce.max(a, axis=axes, keepdims=keepdims)
        if ord == -np.inf:
            return _reduce.min(a, axis=axes, keepdims=keepdims)
        if ord == 1:
            return _reduce.sum(a, axis=axes, keepdims=keepdims)
        if isinstance(ord, (int, float)) and ord > 0:
            return _reduce.sum(a ** ord, axis=axes, keepdims=keepdims) ** (1.0 / ord)
    elif len(axes) == 2 and ord in (1, np.inf, -1, -np.inf):
        inner, outer = (axes[0], axes[1]) if abs(ord) == 1 else (axes[1], axes[0])
        sums = _reduce.sum(a, axis=inner, keepdims=True)
        pick = _reduce.max if ord > 0 else _reduce.min
        out = pick(sums, axis=outer, keepdims=True)
        return out if keepdims else _shape.squeeze(out, axis=axes)
    raise shape_error("norm", [x], f"ord={ord!r} over {len(axes)} axes is not supported on traced values (the "
                      "spectral and nuclear norms need an SVD); use the default, 'fro', 1 or inf")


def _trace_samples(rng):
    return [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 4, 3),), {"offset": 1}), ((S.normal(rng, 3, 3),),
            {"offset": -1}), ((S.normal(rng, 2, 3, 3),), {"axis1": 1, "axis2": 2})]


@composite(samples=_trace_samples, reference=S.jax_numpy("trace"), numpy_name="trace",
           vjp_math="x̄ = ḡ on the diagonal, 0 elsewhere")
def matrix_trace(x, offset=0, axis1=0, axis2=1):
    """Sum of the diagonal: np.trace(h) and h.trace() (bp.trace is the tracer of functions)."""
    return _reduce.sum(_shape.diagonal(x, offset, axis1, axis2), axis=-1)
