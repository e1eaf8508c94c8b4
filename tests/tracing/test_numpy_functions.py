"""NumPy's everyday functions on traced values, as a learner writes them: the defects of issue 27 (each failed before
its fix), the functions added with it through their NumPy names, and bpmagic's gradient at singular points.

Every op's own samples are gradient-checked (first and second order, float64) and compared with JAX by the
registry-wide table in test_primitives_gradcheck.py; here, the behaviour the samples do not show.
"""
from __future__ import annotations

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.ops.evaluate import evaluate

rng = np.random.default_rng(27)
X = rng.standard_normal((3, 4))
V = np.array([0.5, -1.5, 2.25])


def traced_value(fn, *args):
    """fn's value computed from its traced graph: what a compiled step would compute."""
    return np.asarray(evaluate(bp.trace(fn, *args), list(args), np)[0])


# -- the defects ----------------------------------------------------------------------------------------------------
def test_dot_with_a_python_number_scales():
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(np.dot(x, 2.0)))(V), np.full(3, 2.0))
    np.testing.assert_array_equal(traced_value(lambda x: np.dot(2.0, x), V), 2 * V)
    np.testing.assert_array_equal(traced_value(lambda x: np.inner(x, 3), V), 3 * V)
    x32 = V.astype(np.float32)
    assert bp.trace(lambda x: np.dot(x, 2.0), x32).outputs[0].dtype == np.float32  # a number does not promote


def test_hstack_and_vstack_take_numbers_and_0d_values_as_numpy_does():
    def f(x):
        return np.hstack([x[0], x[1], 7.0, x])

    np.testing.assert_array_equal(traced_value(f, V), np.hstack([V[0], V[1], 7.0, V]))
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(f(x) * np.arange(6.0)))(V), [0 + 3, 1 + 4, 5])
    np.testing.assert_array_equal(traced_value(lambda x: np.vstack([x[0], x[2]]), V), [[V[0]], [V[2]]])
    np.testing.assert_array_equal(traced_value(lambda x: np.column_stack([x, x * 2]), V), np.column_stack([V, 2 * V]))
    # a number cannot be concatenated along an axis: the message says what to use
    with pytest.raises(bp.ShapeError, match=r"line \d+: concatenate of \(3,\) and \(\): a number .* np.hstack"):
        bp.trace(lambda x: np.concatenate([x, x[0]]), V)


def test_percent_floor_division_and_divmod_on_traced_values():
    x = np.array([5.5, -5.5, 7.25, -0.75])

    def f(x):
        return x % 2 + (x // 2) * 10 + np.sum(divmod(x, 3.0)[1]) + 2.5 % (x * x + 1)

    want = x % 2 + (x // 2) * 10 + np.sum(divmod(x, 3.0)[1]) + 2.5 % (x * x + 1)
    np.testing.assert_allclose(traced_value(f, x), want, rtol=1e-15)
    # d(x % 2)/dx = 1; x // 2 is piecewise constant; d(2.5 % y)/dy = −⌊2.5 / y⌋
    g = bp.grad(lambda x: np.sum(x % 2 + x // 2))(x)
    np.testing.assert_array_equal(g, np.ones(4))
    assert bp.gradcheck(f, x) and bp.gradcheck(f, x, order=2)


# -- the added functions through NumPy's names -------------------------------------------------------------------------
CASES = {
    "np.cross": (lambda a: np.cross(a.reshape(4, 3), [0.5, -1.0, 2.0]), (4, 3)),
    "np.kron": (lambda a: np.kron(a.reshape(2, 6), np.eye(2) + 1), (2, 6)),
    "np.remainder / np.mod / np.fmod": (lambda a: np.remainder(a, 0.7) + np.mod(a, -0.9) + np.fmod(a, 0.8), (3, 4)),
    "np.arctan2 / np.hypot": (lambda a: np.arctan2(a, a[::-1] + 0.1) + np.hypot(a, 2.0), (3, 4)),
    "np.logaddexp2 / np.fmax / np.fmin": (lambda a: np.logaddexp2(a, 1.0) + np.fmax(a, 0.3) - np.fmin(a, -0.2),
                                           (3, 4)),
    "np.copysign / np.fabs / np.sinc": (lambda a: np.copysign(a, -1.0) + np.fabs(a) * np.sinc(a), (3, 4)),
    "np.deg2rad / np.rad2deg / np.degrees / np.radians": (
        lambda a: np.deg2rad(a) + np.rad2deg(a) + np.degrees(a) + np.radians(a), (3, 4)),
    "np.trunc / np.floor_divide / np.nan_to_num": (lambda a: np.trunc(a * 3) + np.floor_divide(a, 0.3)
                                                   + np.nan_to_num(a), (3, 4)),
    "np.real / np.imag / np.conj / np.angle": (lambda a: np.real(a) + np.imag(a) + np.conj(a) + np.angle(a), (3, 4)),
    "np.atleast_1d / 2d / 3d": (lambda a: np.atleast_3d(np.atleast_2d(np.atleast_1d(a[0, 0]))) + a.sum(), (3, 4)),
    "np.array_split / np.vsplit / np.hsplit / np.dsplit": (
        lambda a: np.array_split(a, 3, axis=1)[2] + np.vsplit(a, [1])[0][:, :2] + np.hsplit(a, 2)[1]
        + np.dsplit(a.reshape(3, 2, 2), 2)[0].reshape(3, 2), (3, 4)),
    "np.column_stack / np.dstack / np.append": (
        lambda a: np.sum(np.column_stack([a[0], a[1]])) + np.dstack([a, a]).sum(axis=2) + np.append(a, a)[:4],
        (3, 4)),
    "np.diag (both directions)": (lambda a: np.diag(np.diag(a)) + np.diag(a[0], k=-1)[1:, :4], (4, 4)),
    "np.select": (lambda a: np.select([a > 1, a < -1], [a * 2, a ** 3], default=a), (3, 4)),
    "np.rot90 / np.rollaxis": (lambda a: np.rot90(a) + np.rollaxis(a.reshape(2, 2, 4), 2).reshape(4, 4), (4, 4)),
    "np.unstack / np.broadcast_arrays / np.meshgrid": (
        lambda a: sum(np.unstack(a)) + np.broadcast_arrays(a[:1], a)[0] + np.meshgrid(a[0], a[1, :3])[0].sum(), (3, 4)),
    "np.median / np.percentile / np.quantile": (
        lambda a: np.median(a, axis=1) + np.percentile(a, 30, axis=1) + np.quantile(a, [0.1, 0.9], axis=1).sum(0),
        (3, 4)),
    "np.gradient": (lambda a: np.gradient(a, 0.5, axis=1) + np.gradient(a, axis=0), (3, 4)),
    "np.einsum (sublists)": (lambda a: np.einsum(a, [0, 1], a, [2, 1], [0, 2]), (3, 4)),
    "np.vecdot / np.linalg.vecdot / np.matrix_transpose": (
        lambda a: np.vecdot(a, a[::-1], axis=0) + np.linalg.vecdot(a, a).sum() + np.matrix_transpose(a)[:, 0],
        (3, 4)),
    "np.cumprod / np.count_nonzero": (lambda a: np.cumprod(a, axis=1) * np.count_nonzero(a > 0), (3, 4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_learners_numpy_spelling_gives_numpys_value_and_a_checked_gradient(name):
    fn, shape = CASES[name]
    x = np.random.default_rng(len(name)).permutation(np.prod(shape)).reshape(shape) * 0.31 - 1.7  # no ties
    x = x + 0.013  # off the integers and the quarter-turns, where remainder, trunc and friends jump
    np.testing.assert_allclose(traced_value(fn, x), fn(x), rtol=1e-12, atol=1e-12)
    assert bp.gradcheck(fn, x)


def test_median_sends_the_gradient_to_the_middle_entries():
    x = np.array([[3.0, -1.0, 2.0, 0.5], [1.0, 4.0, -2.0, 0.0]])
    g = bp.grad(lambda x: np.sum(np.median(x, axis=1)))(x)
    np.testing.assert_array_equal(g, [[0, 0, 0.5, 0.5], [0.5, 0, 0, 0.5]])  # the two middle entries of each row
    g = bp.grad(lambda x: np.percentile(x[0], 100))(x)  # the maximum
    np.testing.assert_array_equal(g, [[1, 0, 0, 0], [0, 0, 0, 0]])
    assert np.isnan(traced_value(lambda x: np.median(x), np.array([1.0, np.nan, 2.0])))  # NaN in, NaN out


def test_np_gradient_is_numpys_on_uneven_coordinates_and_second_order_edges():
    f = np.sin(np.linspace(0, 2, 7))
    coords = np.array([0.0, 0.1, 0.4, 0.5, 1.1, 1.3, 2.0])
    for edge_order in (1, 2):
        np.testing.assert_allclose(traced_value(lambda f: np.gradient(f, coords, edge_order=edge_order), f),
                                   np.gradient(f, coords, edge_order=edge_order), rtol=1e-13)
        np.testing.assert_allclose(traced_value(lambda f: np.gradient(f, 0.25, edge_order=edge_order), f),
                                   np.gradient(f, 0.25, edge_order=edge_order), rtol=1e-13)
    two = traced_value(lambda f: np.gradient(f.reshape(7, 1) * f)[1], f)
    np.testing.assert_allclose(two, np.gradient(np.outer(f, f))[1], rtol=1e-13)


def test_hypot_is_exact_at_a_tie_and_without_overflow():
    a, b = np.array([3.0, -1e200, 2.0]), np.array([4.0, 2e200, -2.0])
    np.testing.assert_allclose(traced_value(np.hypot, a, b), np.hypot(a, b), rtol=1e-15)
    ga, gb = bp.grad(lambda a, b: np.sum(np.hypot(a, b)), argnums=(0, 1))(a, b)
    h = np.hypot(a, b)
    np.testing.assert_allclose(ga, a / h, rtol=1e-14)  # including |a| = |b|, where maximum would split the gradient
    np.testing.assert_allclose(gb, b / h, rtol=1e-14)


def test_sinc_has_its_second_derivative_at_zero():
    d2 = bp.grad(lambda x: bp.sum(bp.grad(lambda y: np.sum(np.sinc(y)))(x)))(np.zeros(1))
    np.testing.assert_allclose(d2, [-np.pi ** 2 / 3], rtol=1e-12)


def test_bitwise_ops_and_signed_zeros():
    a, b = np.array([5, -3, 12]), np.array([3, 1, 2])
    np.testing.assert_array_equal(traced_value(lambda x: x.astype(np.int64) & 7 | 0, V), V.astype(np.int64) & 7)
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift"):
        np.testing.assert_array_equal(getattr(bp, name)(a, b), getattr(np, name)(a, b))
    np.testing.assert_array_equal(bp.invert(a), np.invert(a))
    with pytest.raises(bp.ShapeError, match="works on integers and booleans, not float64"):
        bp.bitwise_and(V, V)
    z = np.array([-0.0, 0.0, -2.0, np.inf, -np.inf])
    np.testing.assert_array_equal(bp.signbit(z), np.signbit(z))
    np.testing.assert_array_equal(bp.copysign(np.ones(5), z), np.copysign(np.ones(5), z))
    np.testing.assert_array_equal(bp.angle(z), np.angle(z))
    np.testing.assert_array_equal(bp.arctan2(np.array([0.0, -0.0, 0.0, -0.0]), np.array([0.0, 0.0, -0.0, -0.0])),
                                  np.arctan2(np.array([0.0, -0.0, 0.0, -0.0]), np.array([0.0, 0.0, -0.0, -0.0])))


def test_questions_about_dtypes_and_shapes_work_on_traced_values():
    def f(x):
        assert np.result_type(x, np.float32) == np.float64
        assert np.can_cast(x, np.float32, casting="same_kind") and not np.can_cast(x, np.float32)
        assert np.broadcast_shapes(x.shape, (1, 4)) == (3, 4)
        assert np.finfo(x.dtype).eps == np.finfo(np.float64).eps and np.iinfo(np.int8).max == 127
        assert np.isdtype(x.dtype, "real floating")
        return np.sum(x * np.finfo(x.dtype).eps)

    assert bp.grad(f)(X).shape == X.shape


# -- point 5: the gradient where a derivative does not exist ----------------------------------------------------------
def test_std_of_equal_values_and_norm_at_zero_have_gradient_zero():
    same = np.full(4, 2.5)
    np.testing.assert_array_equal(bp.grad(lambda x: np.std(x))(same), np.zeros(4))
    np.testing.assert_array_equal(bp.grad(lambda x: np.std(x, ddof=1))(same), np.zeros(4))
    np.testing.assert_array_equal(bp.grad(lambda x: np.linalg.norm(x))(np.zeros(3)), np.zeros(3))
    np.testing.assert_array_equal(bp.grad(lambda x: np.linalg.norm(x, 3))(np.zeros(3)), np.zeros(3))
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(np.hypot(x, x)))(np.zeros(2)), np.zeros(2))
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(np.arctan2(x, x)))(np.zeros(2)), np.zeros(2))
    # a row of equal values next to a spread row: each row gets its own answer
    rows = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    g = bp.grad(lambda x: np.sum(np.std(x, axis=1)))(rows)
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_allclose(g[1], (rows[1] - 1.0) / (3 * np.std(rows[1])), rtol=1e-14)
    # and the second derivative is finite too
    assert np.all(np.isfinite(bp.grad(lambda x: bp.sum(bp.grad(lambda y: np.std(y))(x) ** 2))(same)))


def test_powers_at_zero_give_their_limit_or_zero():
    x = np.array([0.0, 4.0])
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(np.sqrt(x)))(x), [0.0, 0.25])
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(x ** 0.5))(x), [0.0, 0.25])
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(x ** 0))(x), [0.0, 0.0])  # x⁰ = 1: no NaN at 0
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(x ** 1))(x), [1.0, 1.0])
    np.testing.assert_array_equal(bp.grad(lambda x: np.sum(x ** 3))(x), [0.0, 48.0])
    p = np.array([0.5, 1.0, 2.0, 0.0])
    gx, gp = bp.grad(lambda x, p: np.sum(x ** p), argnums=(0, 1))(np.zeros(4), p)
    np.testing.assert_array_equal(gx, [0.0, 1.0, 0.0, 0.0])  # p·0^(p−1): 0 (p < 1: bpmagic's rule), 1, 0, 0
    np.testing.assert_array_equal(gp, np.zeros(4))
    hess = bp.grad(lambda x: bp.sum(bp.grad(lambda y: np.sum(np.sqrt(y)))(x)))(x)
    np.testing.assert_allclose(hess, [0.0, -0.25 / 4 / 2], rtol=1e-14)  # −¼ x^(−3/2) away from 0


def test_the_rule_is_stated_on_the_ops_page():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "ops.md").read_text()
    assert "**Derivatives at singular points.**" in page and "zero_where_singular" in page
    assert "`np.std` of equal values" in page


def test_a_notebooks_data_named_like_a_new_op_stays_the_users():
    """Issue 27 adds common names (angle, gradient, diag, select, ...) as bare names of a cell: the notebook's own
    arrays and numbers under those names keep their meaning there; imported functions are still replaced."""
    from bpmagic.binding import cell_namespace

    angle, gradient = np.array([0.5]), 0.25
    ns = cell_namespace({"angle": angle, "gradient": gradient, "diag": np.diag, "np": np})
    assert ns["angle"] is angle and ns["gradient"] is gradient
    assert ns["diag"] is bp.diag and ns["inv"] is bp.inv
