"""On NumPy, a sum of a float matrix over its rows or its columns is generated as a product with ones (ops/reduce.py,
_sum_lowering): the same values as np.sum, NaN and inf carried as a sum carries them, and a learner's step trains as
JAX computes it."""
import jax
import numpy as np
import pytest

import bpmagic as bp
from bpmagic.compile import optimize
from bpmagic.compile.executor import Executable

jax.config.update("jax_enable_x64", True)


def compiled(fn, *xs):
    return Executable(optimize(bp.trace(fn, *xs)), bp.get_backend("numpy"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis,keepdims", [(0, False), (0, True), (1, False), (1, True), (-1, True)])
def test_a_sum_over_rows_or_columns_is_a_product_with_ones(dtype, axis, keepdims):
    x = np.random.default_rng(0).standard_normal((37, 5)).astype(dtype)
    exe = compiled(lambda a: bp.sum(a * 2.0, axis=axis, keepdims=keepdims), x)
    assert "_ones_" in exe.source, exe.source
    for data in (x, x[::-1].copy()):  # called again: the ones are the step's, never written
        got = np.array(exe(data)[0], copy=True)
        want = np.sum(data.astype(np.float64) * 2.0, axis=axis, keepdims=keepdims)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_nan_and_inf_reach_the_sum_as_np_sum_gives_them():
    x = np.ones((6, 4), np.float32)
    x[1, 2], x[3, 0], x[3, 1], x[5, 3] = np.nan, np.inf, -np.inf, np.inf
    exe = compiled(lambda a: bp.sum(a + 0.0, axis=0), x)
    assert "_ones_" in exe.source
    np.testing.assert_array_equal(exe(x)[0], np.sum(x, axis=0))  # [nan(inf - inf), nan, nan, inf]


def test_other_sums_keep_the_reduction():
    """Integers, a whole array, a 3-d array's axis and long rows are not products with ones."""
    cases = [(0, np.arange(12).reshape(3, 4)), (None, np.ones((3, 4))), (1, np.ones((2, 3, 4))),
             (1, np.ones((2, 2000)))]  # a long row: NumPy adds it pairwise, more exactly than a BLAS dot
    for axis, x in cases:
        exe = compiled(lambda a: bp.sum(a * 2, axis=axis), x)
        assert "_ones_" not in exe.source, exe.source
        np.testing.assert_array_equal(exe(x)[0], np.sum(x * 2, axis=axis))


def test_a_learners_bias_gradient_is_jaxs():
    """An MLP with biases and a row sum in its loss, float64: 3 SGD steps give JAX's losses and parameters."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((50, 3)), rng.standard_normal((50, 4))
    start = {"W1": rng.standard_normal((3, 8)) * 0.5, "b1": rng.standard_normal(8) * 0.1,
             "W2": rng.standard_normal((8, 4)) * 0.5, "b2": rng.standard_normal(4) * 0.1}

    def loss(p, x, y, np_=bp):
        h = np_.tanh(x @ p["W1"] + p["b1"])
        return np_.mean(np_.sum((h @ p["W2"] + p["b2"] - y) ** 2, axis=1))

    params = {k: v.copy() for k, v in start.items()}
    step = bp.compile_step(loss, params, X, Y, optimizer=bp.optim.SGD(0.1), backend="numpy")
    assert str(step).count("_ones_") >= 3  # the loss's row sum, db1 and db2
    expected = {k: jax.numpy.asarray(v) for k, v in start.items()}
    for _ in range(3):
        got = step(X, Y)
        want, g = jax.value_and_grad(lambda p: loss(p, X, Y, jax.numpy))(expected)
        expected = {k: expected[k] - 0.1 * g[k] for k in expected}
        assert got == pytest.approx(float(want), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)
