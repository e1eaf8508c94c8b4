"""NumPy's linear algebra beyond products: solve, inv, det, slogdet, cholesky, eigh, svd, qr, pinv, matrix_power,
and the norms (np.linalg.norm for every `ord`) that need them.

Primitives, each over NumPy's (or CuPy's) own routine: solve, logabsdet and the sign of the determinant, cholesky,
eigvalsh and the eigenvectors, svdvals and the two singular-vector matrices, qr's two factors, pinv. A decomposition
with several results is one primitive per result (the IR's equations have one output): each computes the
decomposition again, so a VJP runs only for the results the loss uses, and can refuse exactly when the gradient
asked for is undefined (eigenvectors of a repeated eigenvalue, say) while the others still work. inv, det,
slogdet, matrix_power and the norms are composites.

Every VJP is written with these primitives (solve, the decompositions themselves, matmul): grad of grad works. The
formulas are the classic ones (Giles 2008; Murray 2016 for cholesky; Townsend 2016 for svd; Walter and Lehmann for
qr; Golub and Pereyra 1973 for pinv).

As NumPy's, eigh and cholesky read only the lower triangle of their input (UPLO="L"): their gradients put
everything there. The results are NumPy's (LAPACK's) own, signs of eigenvectors and singular vectors included, so a
function gives the same numbers traced and on plain arrays (bp.gradcheck's finite differences run it on plain
arrays); the gradients hold for whichever signs LAPACK or cuSOLVER chose.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ..errors import BackpropError, ShapeError
from . import elementwise as _ew
from . import reduce as _reduce
from . import samples as S
from . import shape as _shape
from .core import Primitive, composite, exposes, shape_error
from .elementwise import zero_where_singular
from .linalg import matmul, stacks_shape

__all__ = ["solve", "inv", "det", "slogdet", "cholesky", "eigh", "eigvalsh", "svd", "svdvals", "qr", "pinv",
           "matrix_power", "norm", "vector_norm", "matrix_norm"]


class SlogdetResult(NamedTuple):
    sign: object
    logabsdet: object


class EighResult(NamedTuple):
    eigenvalues: object
    eigenvectors: object


class SVDResult(NamedTuple):
    U: object
    S: object
    Vh: object


class QRResult(NamedTuple):
    Q: object
    R: object


# -- helpers ---------------------------------------------------------------------------------------------------------
def _mT(x):
    return _shape.swapaxes(x, -1, -2)


def _traced(x) -> bool:
    return getattr(x, "_bp_trace", None) is not None


def _concrete(x):
    """The value of a traced value (or an array) as a NumPy array, for the checks a VJP makes on the numbers."""
    trace = getattr(x, "_bp_trace", None)
    if trace is not None:
        return trace.backend.to_numpy(x.value)
    return x.get() if hasattr(x, "get") else np.asarray(x)


def _float(dtype):
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "fc" else np.result_type(dtype, np.float64)


def _check_matrices(name, avals, square=False):
    for a in avals[:1]:
        if len(a.shape) < 2:
            raise shape_error(name, avals, "needs a matrix (or a stack of matrices: the last two axes)")
        if square and a.shape[-1] != a.shape[-2]:
            raise shape_error(name, avals, f"needs square matrices (the last two axes equal), not "
                              f"{a.shape[-2]}×{a.shape[-1]}")


def _square(name, a):
    """Check that a is a square matrix or a stack of them (the message names the function the user called)."""
    _check_matrices(name, [a], square=True)


def _linalg(name, compute, what):
    """compute(), with LAPACK's error (a singular matrix, one not positive definite) as one clear message."""
    try:
        return compute()
    except np.linalg.LinAlgError as e:
        raise BackpropError(f"{name}: {what} (LAPACK: {e})") from None


_SINGULAR = ("the matrix is singular (its determinant is 0), so it has no inverse and A x = b has no unique "
             "solution; check the matrix (or, for a least-squares answer, use pinv)")


def _lower_symmetric(xp, a):
    """The symmetric matrix that NumPy's eigh and cholesky read from a's lower triangle."""
    return xp.tril(a) + xp.swapaxes(xp.tril(a, -1), -1, -2)


def _lower_adjoint(s_bar):
    """The adjoint of a ↦ tril(a) + tril(a, −1)ᵀ: a function of the symmetric matrix read from a's lower triangle
    has its gradient in that triangle (the strictly lower entries count twice, once for each side)."""
    n = s_bar.shape[-1]
    return _ew.where(np.tri(n, n, -1, dtype=bool), s_bar + _mT(s_bar), _ew.where(np.eye(n, dtype=bool), s_bar, 0.0))


def _gaps(values, squared=False):
    """gap[…, i, j] = values[j] − values[i] (of the squares, for singular values), and where it is too small to
    divide by: a repeated value, up to rounding (and the diagonal)."""
    v = values * values if squared else values
    gap = _shape.expand_dims(v, -2) - _shape.expand_dims(v, -1)
    eps = float(np.finfo(_float(values.dtype)).eps)
    scale = _reduce.max(_ew.abs(v), axis=-1, keepdims=True)
    tolerance = _shape.expand_dims(scale, -1) * (100 * eps) + np.finfo(_float(values.dtype)).tiny
    return gap, _ew.less_equal(_ew.abs(gap), tolerance)


def _refuse_repeated(name, repeated, coupling, values, what, instead):
    """The VJP of eigenvectors (singular vectors) is undefined where two values repeat and the loss depends on
    those vectors: the coupling Vᵀ V̄ of the pair is not 0. Its term is then 0 / 0, whose limit depends on how the
    loss depends on the values too, which this VJP cannot see: it refuses rather than guess. (A pair that the loss
    does not touch, V̄ zero on both vectors, is fine.) Checked on the numbers, while tracing."""
    rep, c, vals = _concrete(repeated), _concrete(coupling), _concrete(values)
    n = rep.shape[-1]
    c = np.abs(c) + np.abs(np.swapaxes(c, -1, -2))
    eps = float(np.finfo(_float(c.dtype)).eps)
    bad = rep & ~np.eye(n, dtype=bool) & (c > math.sqrt(eps) * float(np.max(c, initial=0.0)))
    if bad.any():
        *batch, i, j = (int(k) for k in np.argwhere(bad)[0])
        where = f" (matrix {tuple(batch)})" if batch else ""
        raise BackpropError(
            f"{name}: the gradient of the {what} is undefined here{where}: values {i} and {j} are equal "
            f"({vals[(*batch, i)]:.6g}), so any orthonormal basis of their space is as valid as the one returned, "
            f"and the loss depends on which. {instead}")


# -- solve, inv -------------------------------------------------------------------------------------------------------
def _solve_rule(a, b):
    _check_matrices("solve", [a, b], square=True)
    if len(b.shape) < 2 or b.shape[-2] != a.shape[-1]:
        raise shape_error("solve", [a, b], f"b needs {a.shape[-1]} rows, one per row of the {a.shape[-1]}×"
                          f"{a.shape[-1]} matrix")
    return stacks_shape("solve", a, b) + tuple(b.shape[-2:]), _float(np.result_type(a.dtype, b.dtype))


def _solve_vjp(g, x, a, b):
    gb = _solve(_mT(a), g)  # Aᵀ b̄ = ḡ
    return (_ew.unbroadcast(-matmul(gb, _mT(x)), a.shape) if _traced(a) else None,
            _ew.unbroadcast(gb, b.shape) if _traced(b) else None)


def _solve_impl(xp, a, b):
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])  # stacks broadcast here: CuPy's solve does not
    a, b = xp.broadcast_to(a, batch + a.shape[-2:]), xp.broadcast_to(b, batch + b.shape[-2:])
    return _linalg("solve", lambda: xp.linalg.solve(a, b), _SINGULAR)


_solve = Primitive("solve", _solve_impl, _solve_rule, _solve_vjp, onnx=None)


def _well_conditioned(rng, *shape):
    """Random matrices far from singular: the identity's multiple plus noise."""
    n = shape[-1]
    return S.normal(rng, *shape) * 0.5 + 2.0 * np.eye(n)


@exposes(_solve, samples=lambda rng: [((_well_conditioned(rng, 3, 3), S.normal(rng, 3)), {}),
                                      ((_well_conditioned(rng, 3, 3), S.normal(rng, 3, 2)), {}),
                                      ((_well_conditioned(rng, 2, 3, 3), S.normal(rng, 2, 3, 1)), {}),
                                      ((_well_conditioned(rng, 2, 3, 3), S.normal(rng, 3, 4)), {})],
         reference=lambda jax: jax.numpy.linalg.solve, numpy_name="linalg.solve",
         vjp_math="b̄ = A⁻ᵀ ḡ, Ā = −b̄ xᵀ (x the solution)")
def solve(a, b):
    """x with a @ x = b, for square a (np.linalg.solve): a 1-d b is one right-hand side, else its columns are."""
    if len(a.shape) >= 2 and len(b.shape) == 1:
        return _shape.reshape(_solve(a, _shape.reshape(b, (-1, 1))), tuple(a.shape[:-2]) + (b.shape[0],))
    return _solve(a, b)


@composite(samples=lambda rng: [((_well_conditioned(rng, 3, 3),), {}), ((_well_conditioned(rng, 2, 4, 4),), {}),
                                ((S.normal(rng, 1, 1) + 2.0,), {})],
           reference=lambda jax: jax.numpy.linalg.inv, numpy_name="linalg.inv", vjp_math="Ā = −A⁻ᵀ ḡ A⁻ᵀ")
def inv(a):
    """The inverse of a square matrix (or of each in a stack), through solve(a, I)."""
    _square("inv", a)
    return _solve(a, np.eye(a.shape[-1], dtype=_float(a.dtype)))


# -- determinants --------------------------------------------------------------------------------------------------
def _det_rule(name):
    def rule(a):
        _check_matrices(name, [a], square=True)
        return tuple(a.shape[:-2]), _float(a.dtype)

    return rule


def _logabsdet_vjp(g, out, a):
    try:
        a_inv = inv(a)
    except ShapeError:
        raise
    except BackpropError:  # solve's singular matrix
        raise BackpropError("det (or slogdet): the gradient, det(A) · A⁻ᵀ, needs an invertible matrix; at a "
                            "singular one it is the adjugate, which bpmagic does not compute") from None
    return (_shape.reshape(g, tuple(g.shape) + (1, 1)) * _mT(a_inv),)  # d log|det A| = tr(A⁻¹ dA)


def _det_onnx(post):
    return lambda ctx, a: post(ctx, ctx.node("Det", ctx.cast_to_result([a])))


_logabsdet = Primitive("logabsdet", lambda xp, a: xp.linalg.slogdet(a)[1], _det_rule("slogdet"), _logabsdet_vjp,
                       onnx=_det_onnx(lambda ctx, d: ctx.node("Log", [ctx.node("Abs", [d])])))
# the sign is piecewise constant: no gradient
_det_sign = Primitive("det_sign", lambda xp, a: xp.linalg.slogdet(a)[0], _det_rule("slogdet"),
                      lambda g, out, a: (None,), onnx=_det_onnx(lambda ctx, d: ctx.node("Sign", [d])))


def _det_samples(rng):
    return [((_well_conditioned(rng, 3, 3),), {}), ((S.normal(rng, 2, 3, 3) + 2 * np.eye(3),), {}),
            ((-_well_conditioned(rng, 3, 3),), {}), ((S.normal(rng, 1, 1),), {})]


@composite(samples=_det_samples, reference=lambda jax: jax.numpy.linalg.slogdet, numpy_name="linalg.slogdet",
           vjp_math="(log|det A|)‾ gives Ā = ḡ · A⁻ᵀ; the sign has no gradient")
def slogdet(a):
    """(sign, log|det a|): the determinant without overflow (np.linalg.slogdet), as a named pair."""
    _square("slogdet", a)
    return SlogdetResult(_det_sign(a), _logabsdet(a))


@composite(samples=_det_samples, reference=lambda jax: jax.numpy.linalg.det, numpy_name="linalg.det",
           vjp_math="Ā = ḡ · det(A) · A⁻ᵀ")
def det(a):
    """The determinant of a square matrix (or of each in a stack), from slogdet. Its gradient needs the matrix to
    be invertible: at a singular one the backward pass says so."""
    _square("det", a)
    sign, logabs = slogdet(a)
    return sign * _ew.exp(logabs)


# -- cholesky --------------------------------------------------------------------------------------------------------
def _cholesky_impl(xp, a):
    return _linalg("cholesky", lambda: xp.linalg.cholesky(_lower_symmetric(xp, a)),
                   "the matrix is not positive definite (a covariance or a Gram matrix AᵀA + εI is); only its "
                   "lower triangle is read")


def _cholesky_vjp(g, lower, a):
    # Murray (2016): with Φ the lower triangle with half the diagonal, S̄ = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹ (symmetrised by the
    # adjoint of reading the lower triangle)
    n = lower.shape[-1]
    p = matmul(_mT(lower), g)
    phi = _ew.where(np.tri(n, n, -1, dtype=bool), p, _ew.where(np.eye(n, dtype=bool), p * 0.5, 0.0))
    left = _solve(_mT(lower), phi)  # L⁻ᵀ Φ
    s_bar = _mT(_solve(_mT(lower), _mT(left)))  # (L⁻ᵀ (L⁻ᵀ Φ)ᵀ)ᵀ = L⁻ᵀ Φ L⁻¹
    return (_lower_adjoint(0.5 * (s_bar + _mT(s_bar))),)


def _cholesky_rule(a):
    _check_matrices("cholesky", [a], square=True)
    return tuple(a.shape), _float(a.dtype)


_cholesky = Primitive("cholesky", _cholesky_impl, _cholesky_rule, _cholesky_vjp, onnx=None)


def _spd(rng, *shape):
    """Symmetric positive-definite matrices: B Bᵀ + I."""
    b = S.normal(rng, *shape)
    return b @ np.swapaxes(b, -1, -2) + np.eye(shape[-1])


def _lower_then(jax, fn):
    """fn of the symmetric matrix read from the lower triangle (JAX's linalg symmetrises a + aᵀ instead)."""
    jnp = jax.numpy
    return lambda a, *args, **kwargs: fn(jnp.tril(a) + jnp.swapaxes(jnp.tril(a, -1), -1, -2), *args, **kwargs)


def _with_noise_above(rng, a):
    """a with noise above the diagonal: NumPy reads only the lower triangle, and so must the gradient."""
    return a + np.triu(S.normal(rng, *a.shape), 1)


@exposes(_cholesky, samples=lambda rng: [((_spd(rng, 3, 3),), {}), ((_with_noise_above(rng, _spd(rng, 2, 3, 3)),), {}),
                                         ((_spd(rng, 4, 4),), {"upper": True})],
         reference=lambda jax: lambda a, upper=False: _lower_then(jax, jax.numpy.linalg.cholesky)(
             jax.numpy.swapaxes(a, -1, -2) if upper else a, upper=upper),
         numpy_name="linalg.cholesky",
         vjp_math="Ā = the lower part of L⁻ᵀ Φ(Lᵀ L̄) L⁻¹, symmetrised (Φ: lower triangle, half the diagonal)")
def cholesky(a, upper=False):
    """The lower-triangular L with L Lᵀ = a, for a symmetric positive-definite a (its lower triangle is read, as
    NumPy's); upper=True gives Lᵀ, from a's upper triangle."""
    _square("cholesky", a)
    if upper:
        return _mT(_cholesky(_mT(a)))
    return _cholesky(a)


# -- eigh ------------------------------------------------------------------------------------------------------------
def _eigh_rule(vectors):
    def rule(a):
        _check_matrices("eigh", [a], square=True)
        return (tuple(a.shape) if vectors else tuple(a.shape[:-1])), _float(a.dtype)

    return rule


def _eigvalsh_vjp(g, w, a):
    v = _eigh_vectors(a)
    return (_lower_adjoint(matmul(v * _shape.expand_dims(g, -2), _mT(v))),)  # Ā = V diag(w̄) Vᵀ


def _eigh_vectors_impl(xp, a):
    return xp.linalg.eigh(_lower_symmetric(xp, a))[1]


def _eigh_vectors_vjp(g, v, a):
    w = _eigvalsh(a)
    m = matmul(_mT(v), g)  # Vᵀ V̄
    gap, repeated = _gaps(w)  # gap[i, j] = w_j − w_i
    _refuse_repeated("eigh", repeated, m, w, "eigenvectors",
                     "Differentiate the eigenvalues alone (np.linalg.eigvalsh), or use only the eigenvectors of "
                     "eigenvalues that do not repeat.")
    f = zero_where_singular(repeated, lambda gap: 1.0 / gap, gap)
    return (_lower_adjoint(matmul(matmul(v, f * m), _mT(v))),)  # Ā = V (F ∘ Vᵀ V̄) Vᵀ


_eigvalsh = Primitive("eigvalsh", lambda xp, a: xp.linalg.eigvalsh(_lower_symmetric(xp, a)), _eigh_rule(False),
                      _eigvalsh_vjp, onnx=None)
_eigh_vectors = Primitive("eigh_vectors", _eigh_vectors_impl, _eigh_rule(True), _eigh_vectors_vjp, onnx=None)


def _symmetric_distinct(rng, *shape):
    """Symmetric matrices whose eigenvalues are well apart (1, 2, 3, ... plus a little noise)."""
    n = shape[-1]
    q, _ = np.linalg.qr(S.normal(rng, *shape))
    w = np.arange(1.0, n + 1) + S.uniform_in(rng, -0.2, 0.2, *shape[:-1])
    return (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)


def _eigh_samples(rng):
    return [((_symmetric_distinct(rng, 3, 3),), {}), ((_with_noise_above(rng, _symmetric_distinct(rng, 2, 3, 3)),),
            {}), ((_symmetric_distinct(rng, 4, 4),), {"UPLO": "U"})]


def _upper_to_lower(jax, a, UPLO):
    return jax.numpy.swapaxes(a, -1, -2) if UPLO == "U" else a


def _eigh_reference(jax):
    return lambda a, UPLO="L": _lower_then(jax, jax.numpy.linalg.eigh)(_upper_to_lower(jax, a, UPLO))


@composite(samples=_eigh_samples, reference=_eigh_reference, numpy_name="linalg.eigh",
           vjp_math="Ā = V (diag(w̄) + F ∘ (Vᵀ V̄)) Vᵀ, Fᵢⱼ = 1 / (wⱼ − wᵢ) (i ≠ j), read into the lower triangle; "
                    "an error where eigenvalues repeat and the loss depends on the eigenvectors' choice")
def eigh(a, UPLO="L"):
    """(eigenvalues ascending, eigenvectors as columns) of a symmetric matrix, read from its lower triangle
    (UPLO="U": the upper one), as np.linalg.eigh."""
    _square("eigh", a)
    if UPLO not in ("L", "U"):
        raise shape_error("eigh", [a], f"UPLO must be 'L' or 'U', got {UPLO!r}")
    a = _mT(a) if UPLO == "U" else a  # a's upper triangle is aᵀ's lower one
    return EighResult(_eigvalsh(a), _eigh_vectors(a))


@composite(samples=_eigh_samples, reference=lambda jax: lambda a, UPLO="L": _lower_then(
    jax, jax.numpy.linalg.eigvalsh)(_upper_to_lower(jax, a, UPLO)), numpy_name="linalg.eigvalsh",
           vjp_math="Ā = V diag(w̄) Vᵀ, read into the lower triangle")
def eigvalsh(a, UPLO="L"):
    """The eigenvalues (ascending) of a symmetric matrix read from its lower triangle (np.linalg.eigvalsh)."""
    return eigh(a, UPLO).eigenvalues


# -- svd -------------------------------------------------------------------------------------------------------------
def _svd_factors(xp, a, full_matrices, hermitian):
    """(U, s, Vh) as np.linalg.svd computes them: for hermitian=True, from the eigenvalues (CuPy has no such
    path: the general SVD of the same symmetric matrix, another valid choice of signs)."""
    if hermitian:
        try:
            return xp.linalg.svd(a, full_matrices=full_matrices, hermitian=True)
        except TypeError:
            pass
    return xp.linalg.svd(a, full_matrices=full_matrices)


def _svd_rule(part):
    def rule(a, full_matrices=False, hermitian=False):
        _check_matrices("svd", [a])
        m, n = a.shape[-2:]
        k = min(m, n)
        shape = {"S": (k,), "U": (m, m if full_matrices else k), "Vh": (n if full_matrices else k, n)}[part]
        return tuple(a.shape[:-2]) + shape, _float(a.dtype)

    return rule


def _thin_svd(a, full_matrices, hermitian):
    """U (…, m, k), s (…, k), V (…, n, k), traced: what the three SVD VJPs are written with. U and V come from the
    same computation (the same options) as the result being differentiated, so that their signs go together."""
    u = _svd_u(a, full_matrices=full_matrices, hermitian=hermitian)
    vh = _svd_vh(a, full_matrices=full_matrices, hermitian=hermitian)
    k = min(a.shape[-2:])
    if full_matrices:  # the first k columns of U and rows of Vh are the thin SVD's
        u, vh = _shape.getitem(u, (Ellipsis, slice(0, k))), _shape.getitem(vh, (Ellipsis, slice(0, k), slice(None)))
    return u, _svdvals(a), _mT(vh)


def _svdvals_vjp(g, s, a):
    u, _, v = _thin_svd(a, False, False)
    return (matmul(u * _shape.expand_dims(g, -2), _mT(v)),)  # Ā = U diag(s̄) Vᵀ


def _refuse_extra_columns(a, full_matrices, which):
    m, n = a.shape[-2:]
    if full_matrices and (m > n if which == "U" else n > m):
        extra = "columns of U" if which == "U" else "rows of Vh"
        raise BackpropError(
            f"svd of {tuple(a.shape)} with full_matrices=True: the last {abs(m - n)} {extra} complete an orthonormal "
            "basis, any one, so they have no gradient. Pass full_matrices=False (its U and Vh hold everything that "
            "depends on the matrix).")


def _inverse_singular_values(s, projection, name):
    """1 / s, for the terms of a non-square matrix's SVD gradient that leave the span of U or V: undefined for a
    singular value 0 unless that term is 0 (checked on the numbers)."""
    eps = float(np.finfo(_float(s.dtype)).eps)
    tiny = _ew.less_equal(s, _reduce.max(s, axis=-1, keepdims=True) * (100 * eps))
    t, p = _concrete(tiny), _concrete(projection)
    scale = float(np.max(np.abs(p), initial=0.0))
    if (t & (np.max(np.abs(p), axis=-2, initial=0.0) > math.sqrt(eps) * max(scale, 1e-300))).any():
        raise BackpropError(f"{name}: the gradient of U and V is undefined for a non-square matrix with a singular "
                            "value 0 (the matrix is rank-deficient): the singular vectors of 0 are any in the "
                            "null space. Differentiate the singular values alone (svdvals).")
    return zero_where_singular(tiny, lambda s: 1.0 / s, s)


def _svd_u_vjp(g, u, a, full_matrices, hermitian):
    _refuse_extra_columns(a, full_matrices, "U")
    u, s, v = _thin_svd(a, full_matrices, hermitian)
    x = matmul(_mT(u), g)  # Uᵀ Ū
    gap, repeated = _gaps(s, squared=True)
    _refuse_repeated("svd", repeated, x, s, "singular vectors", _SVD_INSTEAD)
    f = zero_where_singular(repeated, lambda gap: 1.0 / gap, gap)  # 1 / (sⱼ² − sᵢ²)
    grad = matmul(matmul(u, f * (x - _mT(x)) * _shape.expand_dims(s, -2)), _mT(v))  # U [F ∘ (UᵀŪ − ŪᵀU)] S Vᵀ
    m, n = a.shape[-2:]
    if m > n:  # + (I − UUᵀ) Ū S⁻¹ Vᵀ
        outside = g - matmul(u, x)
        grad = grad + matmul(outside * _shape.expand_dims(_inverse_singular_values(s, outside, "svd"), -2), _mT(v))
    return (grad,)


def _svd_vh_vjp(g, vh, a, full_matrices, hermitian):
    _refuse_extra_columns(a, full_matrices, "Vh")
    u, s, v = _thin_svd(a, full_matrices, hermitian)
    v_bar = _mT(g)
    x = matmul(_mT(v), v_bar)  # Vᵀ V̄
    gap, repeated = _gaps(s, squared=True)
    _refuse_repeated("svd", repeated, x, s, "singular vectors", _SVD_INSTEAD)
    f = zero_where_singular(repeated, lambda gap: 1.0 / gap, gap)
    grad = matmul(matmul(u, _shape.expand_dims(s, -1) * (f * (x - _mT(x)))), _mT(v))  # U S [F ∘ (VᵀV̄ − V̄ᵀV)] Vᵀ
    m, n = a.shape[-2:]
    if n > m:  # + U S⁻¹ V̄ᵀ (I − VVᵀ)
        outside = v_bar - matmul(v, x)
        grad = grad + matmul(u, _shape.expand_dims(_inverse_singular_values(s, outside, "svd"), -1) * _mT(outside))
    return (grad,)


_SVD_INSTEAD = ("Differentiate the singular values alone (np.linalg.svdvals, or svd(..., compute_uv=False)), or a "
                "function of the whole singular subspace.")
_svdvals = Primitive("svdvals", lambda xp, a: xp.linalg.svd(a, compute_uv=False), _svd_rule("S"), _svdvals_vjp,
                     onnx=None)
_svd_u = Primitive("svd_u", lambda xp, a, full_matrices, hermitian: _svd_factors(xp, a, full_matrices, hermitian)[0],
                   _svd_rule("U"), _svd_u_vjp, onnx=None)
_svd_vh = Primitive("svd_vh", lambda xp, a, full_matrices, hermitian: _svd_factors(xp, a, full_matrices,
                                                                                    hermitian)[2],
                    _svd_rule("Vh"), _svd_vh_vjp, onnx=None)


def _distinct_singular_values(rng, *shape):
    """Matrices whose singular values are well apart (1, 2, 3, ...) and away from 0."""
    m, n = shape[-2:]
    k = min(m, n)
    u, _ = np.linalg.qr(S.normal(rng, *shape[:-2], m, k))
    v, _ = np.linalg.qr(S.normal(rng, *shape[:-2], n, k))
    s = np.arange(k, 0, -1.0) + S.uniform_in(rng, -0.2, 0.2, *shape[:-2], k)
    return (u * s[..., None, :]) @ np.swapaxes(v, -1, -2)


def _svd_samples(rng):
    d = _distinct_singular_values
    return [((d(rng, 3, 3),), {}), ((d(rng, 4, 3),), {"full_matrices": False}),
            ((d(rng, 3, 5),), {"full_matrices": False}), ((d(rng, 2, 3, 2),), {"full_matrices": False}),
            ((d(rng, 3, 4),), {"compute_uv": False}), ((d(rng, 4, 4),), {"hermitian": False})]


def _svd_reference(jax):
    def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
        if hermitian:
            a = _lower_then(jax, lambda a: a)(a)
        return jax.numpy.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv, hermitian=hermitian)

    return svd


@composite(samples=_svd_samples, reference=_svd_reference, numpy_name="linalg.svd",
           vjp_math="Ā = U [diag(s̄) + (F ∘ (UᵀŪ − ŪᵀU)) S + S (F ∘ (VᵀV̄ − V̄ᵀV))] Vᵀ (+ the parts outside U's "
                    "and V's span for a non-square matrix), Fᵢⱼ = 1 / (sⱼ² − sᵢ²); an error where singular values "
                    "repeat and the loss depends on the vectors' choice")
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """(U, S, Vh) with a = U @ diag(S) @ Vh, singular values S descending (np.linalg.svd); compute_uv=False gives
    S alone. With full_matrices=True (NumPy's default) U and Vh are square, and their columns beyond min(m, n) have
    no gradient. hermitian=True: a symmetric matrix, read from its lower triangle as NumPy does."""
    if hermitian:
        n = a.shape[-1]
        a = _ew.where(np.tri(n, n, 0, dtype=bool), a, _mT(a))
    if not compute_uv:
        return _svdvals(a)
    options = dict(full_matrices=bool(full_matrices), hermitian=bool(hermitian))
    return SVDResult(_svd_u(a, **options), _svdvals(a), _svd_vh(a, **options))


@composite(samples=lambda rng: [((_distinct_singular_values(rng, 3, 4),), {}),
                                ((_distinct_singular_values(rng, 2, 3, 3),), {})],
           reference=lambda jax: jax.numpy.linalg.svdvals, numpy_name="linalg.svdvals",
           vjp_math="Ā = U diag(s̄) Vᵀ")
def svdvals(a):
    """The singular values of a (or of each matrix in a stack), descending (np.linalg.svdvals)."""
    return _svdvals(a)


# -- qr --------------------------------------------------------------------------------------------------------------
def _qr_factors(xp, a, complete):
    return xp.linalg.qr(a, mode="complete" if complete else "reduced")


def _qr_rule(part):
    def rule(a, complete=False):
        _check_matrices("qr", [a])
        m, n = a.shape[-2:]
        k = m if complete else min(m, n)
        return tuple(a.shape[:-2]) + ((m, k) if part == "Q" else (k, n)), _float(a.dtype)

    return rule


def _copy_lower_to_upper(m):
    n = m.shape[-1]
    return _ew.where(np.tri(n, n, 0, dtype=bool), m, _mT(m))


def _qr_square_vjp(q, r, q_bar, r_bar):
    """Ā for a = Q R with R square and invertible: (Q̄ + Q copyltu(M)) R⁻ᵀ, M = R R̄ᵀ − Q̄ᵀ Q (either cotangent may
    be None)."""
    m = 0.0
    if r_bar is not None:
        m = matmul(r, _mT(r_bar))
    if q_bar is not None:
        m = m - matmul(_mT(q_bar), q)
    left = matmul(q, _copy_lower_to_upper(m))
    if q_bar is not None:
        left = left + q_bar
    try:
        return _mT(_solve(r, _mT(left)))  # X R⁻ᵀ = (R⁻¹ Xᵀ)ᵀ
    except ShapeError:
        raise
    except BackpropError:  # solve's singular matrix: here R, whose diagonal has a 0
        raise BackpropError("qr: its gradient needs a matrix of full rank (R's diagonal has a 0)") from None


def _qr_vjp(part):
    def vjp(g, out, a, complete=False):
        m, n = a.shape[-2:]
        if complete and m > n:
            raise BackpropError(f"qr of {tuple(a.shape)} with mode='complete': the last {m - n} columns of Q complete "
                                "an orthonormal basis, any one, so they have no gradient. Use mode='reduced'.")
        q, r = (out, _qr_r(a)) if part == "Q" else (_qr_q(a), out)
        q_bar, r_bar = (g, None) if part == "Q" else (None, g)
        if m >= n:
            return (_qr_square_vjp(q, r, q_bar, r_bar),)
        # a = [X | Y] with X = Q R₁ square and Y = Q R₂: R₂ = QᵀY moves Q̄ by Y R̄₂ᵀ, and Ȳ = Q R̄₂
        y = _shape.getitem(a, (Ellipsis, slice(m, None)))
        r1 = _shape.getitem(r, (Ellipsis, slice(0, m)))
        if r_bar is None:
            return (_shape.concatenate([_qr_square_vjp(q, r1, q_bar, None), np.zeros(y.shape, _float(y.dtype))],
                                       -1),)
        r1_bar = _shape.getitem(r_bar, (Ellipsis, slice(0, m)))
        r2_bar = _shape.getitem(r_bar, (Ellipsis, slice(m, None)))
        x_bar = _qr_square_vjp(q, r1, matmul(y, _mT(r2_bar)), r1_bar)
        return (_shape.concatenate([x_bar, matmul(q, r2_bar)], -1),)

    return vjp


_qr_q = Primitive("qr_q", lambda xp, a, complete=False: _qr_factors(xp, a, complete)[0], _qr_rule("Q"), _qr_vjp("Q"),
                  onnx=None)
_qr_r = Primitive("qr_r", lambda xp, a, complete=False: _qr_factors(xp, a, complete)[1], _qr_rule("R"), _qr_vjp("R"),
                  onnx=None)


def _qr_reference(jax):
    return lambda a, mode="reduced": jax.numpy.linalg.qr(a, mode=mode)


@composite(samples=lambda rng: [((_well_conditioned(rng, 3, 3),), {}), ((S.normal(rng, 4, 3),), {}),
                                ((S.normal(rng, 3, 5),), {}), ((S.normal(rng, 2, 4, 2),), {"mode": "r"}),
                                ((S.normal(rng, 2, 3),), {"mode": "complete"})],
           reference=_qr_reference, numpy_name="linalg.qr",
           vjp_math="Ā = (Q̄ + Q copyltu(M)) R⁻ᵀ, M = R R̄ᵀ − Q̄ᵀ Q (copyltu: the lower triangle mirrored); a wide "
                    "matrix [X | Y] as X = Q R₁, Y = Q R₂")
def qr(a, mode="reduced"):
    """(Q, R) with a = Q @ R, Q's columns orthonormal and R upper triangular (np.linalg.qr); mode="r" gives R alone,
    mode="complete" a square Q (whose extra columns have no gradient)."""
    if mode not in ("reduced", "complete", "r"):
        raise shape_error("qr", [a], f"mode={mode!r} is not supported; use 'reduced', 'complete' or 'r'")
    complete = mode == "complete"
    if mode == "r":
        return _qr_r(a, complete=False)
    return QRResult(_qr_q(a, complete=complete), _qr_r(a, complete=complete))


# -- pinv ------------------------------------------------------------------------------------------------------------
def _pinv_rule(a, rcond):
    _check_matrices("pinv", [a])
    return tuple(a.shape[:-2]) + (a.shape[-1], a.shape[-2]), _float(a.dtype)


def _pinv_vjp(g, x, a, rcond):
    # Golub and Pereyra: for a matrix of constant rank, dX = −X dA X + X Xᵀ dAᵀ (I − A X) + (I − X A) dAᵀ Xᵀ X
    xt = _mT(x)
    a_x, x_a = matmul(a, x), matmul(x, a)
    grad = -matmul(matmul(xt, g), xt)
    grad = grad + matmul(matmul(_ew.astype(np.eye(a.shape[-2]), x.dtype) - a_x, _mT(g)), matmul(x, xt))
    grad = grad + matmul(matmul(matmul(xt, x), _mT(g)), _ew.astype(np.eye(a.shape[-1]), x.dtype) - x_a)
    return (grad,)


_pinv = Primitive("pinv", lambda xp, a, rcond: xp.linalg.pinv(a, rcond), _pinv_rule, _pinv_vjp, onnx=None,
                  jax=lambda jax, a, rcond: jax.numpy.linalg.pinv(a, rcond))


def _rank_deficient(rng, *shape):
    """Rank 2 matrices: with a cutoff (rcond) above the central differences' steps, pinv keeps rank 2 nearby, where
    it is differentiable."""
    return S.normal(rng, *shape[:-1], 2) @ S.normal(rng, *shape[:-2], 2, shape[-1])


@exposes(_pinv, samples=lambda rng: [((S.normal(rng, 4, 3),), {}), ((S.normal(rng, 2, 5),), {}),
                                     ((_well_conditioned(rng, 2, 3, 3),), {}),
                                     ((_rank_deficient(rng, 4, 4),), {"rcond": 1e-3})],
         reference=lambda jax: lambda a, rcond=None: jax.numpy.linalg.pinv(a, rcond if rcond is not None else 1e-15),
         numpy_name="linalg.pinv",
         vjp_math="Ā = −Xᵀ ḡ Xᵀ + (I − AX) ḡᵀ X Xᵀ + Xᵀ X ḡᵀ (I − XA), X = A⁺ (Golub–Pereyra; the rank must not "
                  "change)")
def pinv(a, rcond=None, hermitian=False, rtol=None):
    """The Moore–Penrose pseudo-inverse (np.linalg.pinv): singular values below rcond (relative to the largest;
    NumPy's 1e-15 by default) count as 0. Its gradient assumes the rank stays the same nearby."""
    if rcond is not None and rtol is not None:
        raise shape_error("pinv", [a], "give rcond or rtol, not both")
    if rcond is None:
        rcond = rtol if rtol is not None else 1e-15
    if hermitian:
        n = a.shape[-1]
        a = _ew.where(np.tri(n, n, 0, dtype=bool), a, _mT(a))
    return _pinv(a, rcond=float(rcond))


# -- matrix_power ------------------------------------------------------------------------------------------------------
@composite(samples=lambda rng: [((S.normal(rng, 3, 3), 3), {}), ((S.normal(rng, 2, 3, 3), 2), {}),
                                ((_well_conditioned(rng, 3, 3), -2), {}), ((S.normal(rng, 2, 2), 0), {}),
                                ((S.normal(rng, 3, 3), 5), {})],
           reference=lambda jax: jax.numpy.linalg.matrix_power, numpy_name="linalg.matrix_power",
           vjp_math="Ā = Σₖ (Aᵏ)ᵀ ḡ (Aⁿ⁻¹⁻ᵏ)ᵀ (through the products; A⁻¹ for negative n)")
def matrix_power(a, n):
    """a multiplied by itself n times (by repeated squaring); n = 0 gives the identity, negative n the inverse's
    power (np.linalg.matrix_power)."""
    if not isinstance(n, numbers.Integral):
        raise shape_error("matrix_power", [a], f"the exponent must be an integer, got {n!r}")
    _square("matrix_power", a)
    if n == 0:  # the identity, whatever a holds: a constant
        from .constants import zeros_like

        return zeros_like(a) + np.eye(a.shape[-1], dtype=a.dtype)
    if n < 0:
        a, n = inv(a), -n
    result, square = None, a
    while n:
        if n & 1:
            result = square if result is None else matmul(result, square)
        n >>= 1
        if n:
            square = matmul(square, square)
    return result


# -- norms -----------------------------------------------------------------------------------------------------------
def _norm_samples(rng):
    v, m = S.normal(rng, 5), S.normal(rng, 3, 4)
    d = _distinct_singular_values
    return [((v,), {}), ((m,), {}), ((v,), dict(ord=1)), ((S.distinct(rng, (5,))[0],), dict(ord=np.inf)),
            ((S.distinct(rng, (5,))[0],), dict(ord=-np.inf)), ((S.away0(rng, 5),), dict(ord=-1)),
            ((v,), dict(ord=3)), ((v,), dict(ord=0)), ((v,), dict(ord=2)), ((m,), dict(axis=1)),
            ((m,), dict(axis=0, keepdims=True)), ((m,), dict(ord="fro")),
            ((S.distinct(rng, (3, 4))[0],), dict(ord=1)), ((S.distinct(rng, (3, 4))[0],), dict(ord=np.inf)),
            ((S.distinct(rng, (3, 4))[0],), dict(ord=-1)), ((S.distinct(rng, (3, 4))[0],), dict(ord=-np.inf)),
            ((d(rng, 3, 4),), dict(ord=2)), ((d(rng, 3, 4),), dict(ord=-2)), ((d(rng, 4, 3),), dict(ord="nuc")),
            ((S.normal(rng, 2, 3, 4),), dict(axis=(1, 2))), ((d(rng, 2, 3, 3),), dict(axis=(1, 2), ord="nuc")),
            ((S.normal(rng, 3, 4),), dict(axis=(1, 0), ord=1))]


def _vector_norm(x, ord, axes, keepdims):
    a = _ew.abs(x)
    if ord is None or ord == 2:
        return _ew.sqrt(_reduce.sum(_ew.square(x), axis=axes, keepdims=keepdims))
    if ord == np.inf:
        return _reduce.max(a, axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return _reduce.min(a, axis=axes, keepdims=keepdims)
    if ord == 0:  # the number of non-zero entries: piecewise constant
        return _ew.astype(_reduce.sum(_ew.not_equal(x, 0), axis=axes, keepdims=keepdims), _float(x.dtype))
    if ord == 1:
        return _reduce.sum(a, axis=axes, keepdims=keepdims)
    if isinstance(ord, (numbers.Real, np.floating)):
        return _reduce.sum(a ** ord, axis=axes, keepdims=keepdims) ** (1.0 / ord)
    raise shape_error("norm", [x], f"ord={ord!r} is not a vector norm: use a number, inf or -inf")


def _matrix_norm(x, ord, axes, keepdims):
    if ord in (None, "fro"):
        return _ew.sqrt(_reduce.sum(_ew.square(x), axis=axes, keepdims=keepdims))
    if ord in (1, -1, np.inf, -np.inf):  # the largest (smallest) column sum of |x|, or row sum for ±inf
        inner, outer = (axes[0], axes[1]) if abs(ord) == 1 else (axes[1], axes[0])
        sums = _reduce.sum(_ew.abs(x), axis=inner, keepdims=True)
        out = (_reduce.max if ord > 0 else _reduce.min)(sums, axis=outer, keepdims=True)
        return out if keepdims else _shape.squeeze(out, axis=axes)
    if ord in (2, -2, "nuc"):  # from the singular values of the matrices: the two axes moved last
        s = _svdvals(_shape.moveaxis(x, axes, (-2, -1)))
        out = _reduce.sum(s, axis=-1) if ord == "nuc" else (_reduce.max if ord == 2 else _reduce.min)(s, axis=-1)
        if keepdims:
            for a in sorted(axes):
                out = _shape.expand_dims(out, a)
        return out
    raise shape_error("norm", [x], f"ord={ord!r} is not a matrix norm: use 'fro', 'nuc', 1, -1, 2, -2, inf or -inf")


@composite(samples=_norm_samples, reference=lambda jax: jax.numpy.linalg.norm, numpy_name="linalg.norm",
           vjp_math="vectors: x̄ = ḡ · x / y (2-norm), ḡ · sign(x) (ord=1), ḡ · sign(x) |x|ᵖ⁻¹ / yᵖ⁻¹ (ord=p); "
                    "matrices: x̄ = ḡ · x / y ('fro'), ḡ · U Vᵀ ('nuc'), ḡ · u₁ v₁ᵀ (2); 0 at x = 0")
def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: a vector norm along one axis (2 by default; 1, inf, -inf, 0 (a count), any p), or a matrix
    norm over two axes ('fro' by default; 'nuc', 2 and -2 from the singular values, 1 / -1 the largest / smallest
    column sum, inf / -inf the row sums). Without axis: the 2-norm of the flattened array, or the matrix norm of a
    2-d array when ord is given. At x = 0 the gradient is 0 (bpmagic's rule where a derivative does not exist)."""
    n = len(x.shape)
    if axis is None:
        if ord is None:  # the 2-norm of all the entries
            return _vector_norm(x, None, tuple(range(n)), keepdims)
        if n not in (1, 2):
            raise shape_error("norm", [x], f"ord={ord!r} without axis needs a 1-d or 2-d array")
        axes = tuple(range(n))
    else:
        axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for a in axes:
        if not -n <= a < n:
            raise shape_error("norm", [x], f"axis {a} is out of range for {n} axes")
    axes = tuple(a % n for a in axes)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2 and axes[0] != axes[1]:
        return _matrix_norm(x, ord, axes, keepdims)
    raise shape_error("norm", [x], f"axis={axis!r}: one axis (a vector norm) or two different ones (a matrix norm)")


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {}), ((S.normal(rng, 3, 4),), dict(axis=1, ord=1)),
                                ((S.normal(rng, 2, 3, 4),), dict(axis=(0, 2), ord=3, keepdims=True))],
           reference=lambda jax: jax.numpy.linalg.vector_norm, numpy_name="linalg.vector_norm",
           vjp_math="as norm's vector norms")
def vector_norm(x, axis=None, keepdims=False, ord=2):
    """A vector norm over `axis` (all axes, flattened, when None; a tuple of axes counts as one flattened vector),
    np.linalg.vector_norm."""
    n = len(x.shape)
    axes = tuple(range(n)) if axis is None else (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    axes = tuple(a % n for a in axes)
    return _vector_norm(x, ord, axes, keepdims)


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {}), ((_distinct_singular_values(rng, 2, 3, 3),),
                                                            dict(ord="nuc", keepdims=True)),
                                ((S.distinct(rng, (3, 4))[0],), dict(ord=np.inf))],
           reference=lambda jax: jax.numpy.linalg.matrix_norm, numpy_name="linalg.matrix_norm",
           vjp_math="as norm's matrix norms")
def matrix_norm(x, keepdims=False, ord="fro"):
    """A matrix norm of the last two axes (np.linalg.matrix_norm)."""
    _check_matrices("matrix_norm", [x])
    n = len(x.shape)
    return _matrix_norm(x, ord, (n - 2, n - 1), keepdims)

