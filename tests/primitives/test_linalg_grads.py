"""np.linalg with gradients, as a learner uses it: NumPy's spelling inside a function given to bp.grad, and bare names
in a %%backprop cell. The ops' own samples (first and second order in float64, and against JAX) are checked by the
registry-wide table in test_primitives_gradcheck.py; here: the classic textbook gradients in closed form, batches,
grad of grad through a learner's program, and the messages where a gradient does not exist or the call is wrong.
"""
from __future__ import annotations

import numpy as np
import pytest

import bpmagic as bp

jax = pytest.importorskip("jax", reason="JAX is the independent reference these checks compare with")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

rng = np.random.default_rng(7)
A = rng.standard_normal((3, 3)) + 3 * np.eye(3)
B = rng.standard_normal(3)


def spd(n, seed=0):
    m = np.random.default_rng(seed).standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


# -- the textbook gradients ---------------------------------------------------------------------------------------
def test_inverse_times_vector_has_the_textbook_gradient():
    w = rng.standard_normal(3)

    def loss(A, b):
        x = np.linalg.inv(A) @ b  # as a learner writes it
        return np.sum(x * w)

    dA, db = bp.grad(loss, argnums=(0, 1))(A, B)
    Ainv = np.linalg.inv(A)
    x = Ainv @ B
    np.testing.assert_allclose(db, Ainv.T @ w, rtol=1e-12)
    np.testing.assert_allclose(dA, -np.outer(Ainv.T @ w, x), rtol=1e-12)  # −A⁻ᵀ w xᵀ
    jA, jb = jax.grad(lambda A, b: jnp.sum((jnp.linalg.inv(A) @ b) * w), argnums=(0, 1))(A, B)
    np.testing.assert_allclose(dA, jA, rtol=1e-10)
    np.testing.assert_allclose(db, jb, rtol=1e-10)


def test_solve_and_inverse_agree_and_so_do_their_gradients():
    f_solve = lambda A, b: np.sum(np.linalg.solve(A, b) ** 2)  # noqa: E731
    f_inv = lambda A, b: np.sum((np.linalg.inv(A) @ b) ** 2)  # noqa: E731
    for got, want in zip(bp.grad(f_solve, argnums=(0, 1))(A, B), bp.grad(f_inv, argnums=(0, 1))(A, B)):
        np.testing.assert_allclose(got, want, rtol=1e-11)


def test_determinant_gradient_is_the_cofactor_matrix():
    g = bp.grad(lambda A: np.linalg.det(A))(A)
    np.testing.assert_allclose(g, np.linalg.det(A) * np.linalg.inv(A).T, rtol=1e-12)
    sign, logdet = bp.trace(lambda A: np.linalg.slogdet(A), A).outputs  # a named pair, as NumPy's
    assert sign.shape == () and logdet.shape == ()
    g = bp.grad(lambda A: np.linalg.slogdet(A).logabsdet)(A)
    np.testing.assert_allclose(g, np.linalg.inv(A).T, rtol=1e-12)


def test_log_likelihood_of_a_gaussian_through_cholesky():
    """−log N(x | 0, Σ) with Σ = L Lᵀ: the gradient with respect to Σ is ½ (Σ⁻¹ − Σ⁻¹ x xᵀ Σ⁻¹), read (as NumPy
    reads Σ) from the lower triangle."""
    sigma, x = spd(3, 1), rng.standard_normal(3)

    def nll(sigma):
        L = np.linalg.cholesky(sigma)
        z = np.linalg.solve(L, x)
        return 0.5 * np.sum(z ** 2) + np.sum(np.log(np.diagonal(L)))

    g = bp.grad(nll)(sigma)
    si = np.linalg.inv(sigma)
    full = 0.5 * (si - si @ np.outer(x, x) @ si)
    lower = np.tril(full + full.T, -1) + np.diag(np.diag(full))  # the symmetric gradient, in the lower triangle
    np.testing.assert_allclose(g, lower, rtol=1e-10, atol=1e-12)


def test_largest_eigenvalue_gradient_is_the_eigenvector_outer_product():
    S = spd(4, 2)
    w, V = np.linalg.eigh(S)
    g = bp.grad(lambda S: np.linalg.eigh(S).eigenvalues[-1])(S)
    v = V[:, -1]
    full = np.outer(v, v)
    np.testing.assert_allclose(g, np.tril(2 * full, -1) + np.diag(np.diag(full)), rtol=1e-10, atol=1e-12)


def test_nuclear_and_spectral_norms_have_their_closed_forms():
    M = rng.standard_normal((4, 3))
    U, s, Vh = np.linalg.svd(M, full_matrices=False)
    np.testing.assert_allclose(bp.grad(lambda M: np.linalg.norm(M, "nuc"))(M), U @ Vh, rtol=1e-10)
    np.testing.assert_allclose(bp.grad(lambda M: np.linalg.norm(M, 2))(M), np.outer(U[:, 0], Vh[0]), rtol=1e-10)


@pytest.mark.parametrize("ord", [None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf])
def test_every_matrix_norm_matches_numpy_and_jax(ord):
    M = np.random.default_rng(3).permutation(12).reshape(3, 4) * 0.37 - 2.0  # distinct sums, distinct s
    np.testing.assert_allclose(_value(lambda M: np.linalg.norm(M, ord), M), np.linalg.norm(M, ord), rtol=1e-12)
    g = bp.grad(lambda M: np.linalg.norm(M, ord))(M)
    np.testing.assert_allclose(g, jax.grad(lambda M: jnp.linalg.norm(M, ord))(M), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ord", [None, 1, 2, 3, 0.5, -1, 0, np.inf, -np.inf])
def test_every_vector_norm_matches_numpy(ord):
    v = np.array([0.5, -1.25, 2.0, -0.75])
    np.testing.assert_allclose(_value(lambda v: np.linalg.norm(v, ord), v), np.linalg.norm(v, ord), rtol=1e-12)
    assert bp.gradcheck(lambda v: np.linalg.norm(v, ord), v)


def _value(fn, *args):
    from bpmagic.ops.evaluate import evaluate

    return np.asarray(evaluate(bp.trace(fn, *args), list(args), np)[0])


# -- batches, grad of grad -----------------------------------------------------------------------------------------
def test_a_batch_of_inverses_and_determinants_matches_jax():
    batch = rng.standard_normal((5, 3, 3)) + 3 * np.eye(3)
    w = rng.standard_normal((5, 3, 3))

    def ours(a):
        return np.sum(np.linalg.inv(a) * w) + np.sum(np.linalg.det(a))

    def theirs(a):
        return jnp.sum(jnp.linalg.inv(a) * w) + jnp.sum(jnp.linalg.det(a))

    np.testing.assert_allclose(bp.grad(ours)(batch), jax.grad(theirs)(batch), rtol=1e-10)


def test_grad_of_grad_through_logdet_and_a_solve():
    """The Hessian-vector product of f(A) = log|det A| + bᵀ A⁻¹ b, compared with JAX's."""
    v = rng.standard_normal((3, 3))

    def f(A):
        return np.linalg.slogdet(A).logabsdet + B @ np.linalg.solve(A, B)

    hvp = bp.grad(lambda A: bp.sum(bp.grad(f)(A) * v))(A)
    jf = lambda A: jnp.linalg.slogdet(A)[1] + B @ jnp.linalg.solve(A, B)  # noqa: E731
    want = jax.grad(lambda A: jnp.sum(jax.grad(jf)(A) * v))(A)
    np.testing.assert_allclose(hvp, want, rtol=1e-9)


def test_matrix_power_and_pinv_in_a_learners_least_squares():
    X, y = rng.standard_normal((6, 3)), rng.standard_normal(6)

    def residual(X):
        w = np.linalg.pinv(X) @ y  # least squares
        return np.sum((X @ w - y) ** 2) + np.trace(np.linalg.matrix_power(X.T @ X, 2)) * 1e-3

    assert bp.gradcheck(residual, X)
    assert bp.gradcheck(residual, X, order=2)


# -- where the gradient does not exist, and wrong calls: one message naming the line --------------------------------
def _error(fn, *args):
    with pytest.raises(bp.BackpropError) as info:
        fn(*args)
    return str(info.value)


def test_eigenvectors_of_a_repeated_eigenvalue_have_no_gradient():
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    S = q @ np.diag([1.0, 1.0, 3.0]) @ q.T  # eigenvalue 1 twice

    def first_vector(S):
        w, V = np.linalg.eigh(S)
        return np.sum(V[:, 0] ** 3)

    msg = _error(bp.grad(first_vector), S)
    assert msg.startswith("test_linalg_grads.py, line ")
    assert "w, V = np.linalg.eigh(S)" in msg and "eigenvectors is undefined" in msg and "are equal (1)" in msg
    assert "eigvalsh" in msg
    # even a function of the whole eigenspace: its limit is not the eigenvector VJP's to see, so no guess is made
    # (JAX and PyTorch give NaN or a wrong number here)
    W = rng.standard_normal((3, 3))

    def rebuilt(S):
        w, V = np.linalg.eigh(S)
        return np.sum((V * w) @ V.T * W)

    assert "eigenvectors is undefined" in _error(bp.grad(rebuilt), S)
    # the eigenvalues alone, and the eigenvector of the eigenvalue that does not repeat, have their gradients
    assert np.all(np.isfinite(bp.grad(lambda S: np.sum(np.linalg.eigvalsh(S) ** 2))(S)))
    # (squared: an eigenvector's sign is LAPACK's choice, which may flip between S and S ± ε)
    assert bp.gradcheck(lambda S: np.sum(np.linalg.eigh(S).eigenvectors[:, 2] * W[0]) ** 2, S)


def test_singular_vectors_of_repeated_singular_values_have_no_gradient():
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    M = q @ np.diag([2.0, 2.0, 0.5])  # singular values 2, 2, 0.5

    def top_direction(M):
        U, s, Vh = np.linalg.svd(M)
        return np.sum(U[:, 0] ** 3)

    msg = _error(bp.grad(top_direction), M)
    assert "U, s, Vh = np.linalg.svd(M)" in msg and "singular vectors is undefined" in msg and "svdvals" in msg
    # the singular values keep their gradient
    g = bp.grad(lambda M: np.sum(np.linalg.svd(M, compute_uv=False) ** 2))(M)
    np.testing.assert_allclose(g, 2 * M, rtol=1e-10)  # Σ s² = ‖M‖_F²


def test_full_matrices_of_a_tall_svd_have_no_gradient_for_the_extra_columns():
    M = rng.standard_normal((4, 2))
    msg = _error(bp.grad(lambda M: np.sum(np.linalg.svd(M)[0])), M)  # NumPy's default full_matrices=True
    assert "svd of (4, 2) with full_matrices=True" in msg and "full_matrices=False" in msg
    # S alone from the same call is fine
    assert np.all(np.isfinite(bp.grad(lambda M: np.sum(np.linalg.svd(M)[1]))(M)))
    # and so is the thin U
    assert bp.gradcheck(lambda M: np.linalg.svd(M, full_matrices=False)[0] ** 3, M)


def test_wrong_shapes_and_singular_matrices_are_one_message_naming_the_line():
    msg = _error(bp.grad(lambda x: np.linalg.det(x.reshape(2, 3))), np.ones(6))
    assert msg.startswith("test_linalg_grads.py, line ") and "det of (2, 3): needs square matrices" in msg
    msg = _error(bp.grad(lambda x: np.sum(np.linalg.solve(x.reshape(3, 3), np.ones(4)))), np.arange(9.0))
    assert "solve of (3, 3) and (4, 1): b needs 3 rows" in msg
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    msg = _error(bp.grad(lambda a: np.sum(np.linalg.inv(a))), singular)
    assert "line " in msg and "matrix is singular" in msg and "pinv" in msg
    msg = _error(bp.grad(lambda a: np.linalg.det(a)), singular)
    assert "line " in msg and "det (or slogdet): the gradient" in msg and "adjugate" in msg
    msg = _error(bp.grad(lambda a: np.sum(np.linalg.cholesky(a))), -np.eye(2))
    assert "cholesky" in msg and "not positive definite" in msg
    assert "Traceback" not in msg


def test_qr_of_a_tall_matrix_is_numpys_with_the_gradient_of_jax():
    M = rng.standard_normal((5, 3))
    Q, R = bp.qr(M)
    np.testing.assert_allclose(Q @ R, M, atol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.abs(R), np.abs(np.linalg.qr(M).R), rtol=1e-12)  # NumPy's (signs: LAPACK's)
    W = rng.standard_normal((5, 3))
    g = bp.grad(lambda M: np.sum(np.linalg.qr(M).Q * W))(M)
    np.testing.assert_allclose(g, jax.grad(lambda M: jnp.sum(jnp.linalg.qr(M)[0] * W))(M), rtol=1e-9, atol=1e-12)
    assert bp.gradcheck(lambda M: np.linalg.qr(M).R, M, order=2)


# -- a %%backprop cell with bare names ---------------------------------------------------------------------------------
GAUSSIAN_CELL = """\
%%backprop --epochs 60 --lr 0.05 --optimizer adam --batch-size 64 --name fit_cov --no-dashboard --dtype float64
L: Param = eye(2) * 0.5
x: Input = SAMPLES
# the negative log-likelihood of a zero-mean Gaussian with covariance Σ = L Lᵀ + εI
cov = L @ L.T + 1e-3 * eye(2)
z = solve(cholesky(cov), x.T)
loss: Loss = 0.5 * mean((z ** 2).sum(axis=0)) + 0.5 * slogdet(cov).logabsdet
"""


def test_a_cell_fits_a_covariance_with_bare_linalg_names(ip):
    ip.run_cell("import numpy as np\n"
                "SAMPLES = np.random.default_rng(0).multivariate_normal([0, 0], [[2.0, 0.8], [0.8, 1.0]], 512)")
    result = ip.run_cell(GAUSSIAN_CELL)
    assert result.success, result.error_in_exec
    run = ip.user_ns["fit_cov"]
    losses = run.history["loss"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    L = ip.user_ns["L"]
    fitted = L @ L.T
    np.testing.assert_allclose(fitted, [[2.0, 0.8], [0.8, 1.0]], atol=0.35)  # near the true covariance
