"""grad / value_and_grad over pytrees and argnums, grad of grad, gradcheck, user-defined primitives."""
import numpy as np
import pytest

import bpmagic as bp


def loss(params, x):
    h = bp.tanh(x @ params["W"] + params["b"])
    return bp.mean(h ** 2)


@pytest.fixture
def setup():
    rng = np.random.default_rng(1)
    return {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}, rng.standard_normal((5, 3))


def test_grad_of_dict_has_the_same_structure(setup):
    params, x = setup
    g = bp.grad(loss)(params, x)
    assert set(g) == {"W", "b"} and g["W"].shape == (3, 2) and g["b"].shape == (2,)
    assert isinstance(g["W"], np.ndarray)


def test_value_and_grad_argnums_tuple_and_lists(setup):
    params, x = setup
    value, (gp, gx) = bp.value_and_grad(loss, argnums=(0, 1))(params, x)
    assert np.isclose(value, loss(params, x))
    assert gx.shape == x.shape
    g_list = bp.grad(lambda ws: bp.sum(ws[0] * ws[1]))([np.arange(3.0), np.ones(3)])
    assert isinstance(g_list, list) and np.allclose(g_list[0], 1) and np.allclose(g_list[1], np.arange(3.0))
    g_tuple = bp.grad(lambda ws: bp.sum(ws[0] * ws[1]))((np.arange(3.0), np.ones(3)))
    assert isinstance(g_tuple, tuple)


def test_grad_matches_jax(setup):
    jax = pytest.importorskip("jax", reason="jax[cpu] is the independent reference (pip install 'jax[cpu]')")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    params, x = setup

    def jloss(p, x):
        return jnp.mean(jnp.tanh(x @ p["W"] + p["b"]) ** 2)

    g, jg = bp.grad(loss)(params, x), jax.grad(jloss)(params, x)
    for k in params:
        np.testing.assert_allclose(g[k], jg[k], rtol=1e-12)


def test_grad_of_grad():
    x = np.array([0.3, -1.2, 2.0])
    f = lambda x: bp.sum(bp.tanh(x) ** 3)
    hess_diag = bp.grad(lambda x: bp.sum(bp.grad(f)(x)))(x)
    t = np.tanh(x)
    # d/dx [3 t^2 (1 - t^2)] = (6t - 12 t^3)(1 - t^2)
    np.testing.assert_allclose(hess_diag, (6 * t - 12 * t ** 3) * (1 - t ** 2), rtol=1e-12)
    third = bp.grad(lambda x: bp.sum(bp.grad(lambda x: bp.sum(bp.grad(f)(x)))(x)))(x)
    assert third.shape == x.shape and np.all(np.isfinite(third))


def test_grad_needs_scalar_and_float():
    with pytest.raises(bp.ShapeError, match=r"returns a scalar.*shape \(3,\)"):
        bp.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(bp.BackpropError, match="integers"):
        bp.grad(lambda x: bp.sum(x))(np.arange(3))


def test_grad_of_unused_argument_is_zero():
    g = bp.grad(lambda x, y: bp.sum(x * 2), argnums=1)(np.ones(2), np.ones(3))
    assert np.array_equal(g, np.zeros(3))


def test_has_aux():
    g, aux = bp.grad(lambda x: (bp.sum(x * x), x * 3), has_aux=True)(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g, [2.0, 4.0])
    np.testing.assert_allclose(aux, [3.0, 6.0])


def test_gradcheck_passes_and_reports(setup):
    params, x = setup
    result = bp.gradcheck(loss, params, x)
    assert result and "worst entry: params.W[" in repr(result) and "gradcheck passed" in repr(result)
    assert bp.gradcheck(loss, params, x, order=2)


def test_gradcheck_catches_a_wrong_vjp():
    @bp.primitive
    def cube(xp, x):
        return x ** 3

    @cube.defvjp
    def _(g, out, x):
        return g * 2 * x * x  # wrong: should be 3 x^2

    x = np.array([[0.5, -1.0], [2.0, 1.5]])
    result = bp.gradcheck(lambda x: bp.sum(cube(x)), x)
    assert not result
    report = repr(result)
    assert "gradcheck FAILED" in report and "analytic" in report and "numeric" in report
    assert "x[1, 0]" in report  # the worst single entry is the largest x


def test_user_primitive_is_registered_and_differentiable_twice():
    @bp.primitive
    def softsign(xp, x):
        return x / (1 + xp.abs(x))

    @softsign.defvjp
    def _(g, out, x):
        return g / bp.square(1 + bp.abs(x))

    from bpmagic.ops.core import PRIMITIVES

    assert PRIMITIVES["softsign"] is softsign
    x = np.array([0.3, -0.7, 1.9])
    assert bp.gradcheck(lambda x: bp.sum(softsign(x) ** 2), x)
    assert bp.gradcheck(lambda x: bp.sum(softsign(x) ** 2), x, order=2)
    assert "softsign(x)" in str(bp.trace(softsign, x))


def test_primitive_declared_without_gradient_passes_none():
    @bp.primitive(differentiable=False)
    def my_floor(xp, x):  # not named floor: a user primitive of a built-in's name replaces it in PRIMITIVES
        return xp.floor(x)

    g = bp.grad(lambda x: bp.sum(my_floor(x) + x))(np.array([1.5, 2.5]))
    np.testing.assert_allclose(g, [1.0, 1.0])


def test_primitive_that_forgot_its_vjp_is_refused_by_name():
    """A missing VJP must not pass for a zero gradient: the message names the op, the line and both ways out."""
    @bp.primitive
    def my_round(xp, x):
        return xp.round(x)

    from bpmagic.ops.core import PRIMITIVES

    try:
        x = np.array([1.2, 2.7])
        np.testing.assert_allclose(my_round(x), [1.0, 3.0])  # the forward pass is fine
        with pytest.raises(bp.BackpropError) as err:
            bp.grad(lambda x: bp.sum(my_round(x) * x))(x)
        msg = str(err.value)
        assert "my_round" in msg and "@my_round.defvjp" in msg and "differentiable=False" in msg
        assert msg.startswith("test_api.py, line "), msg
    finally:
        del PRIMITIVES["my_round"]  # the registry-wide checks cover built-ins and primitives that declare themselves


def test_eager_ops_work_on_plain_arrays():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    np.testing.assert_allclose(bp.relu(x), np.maximum(x, 0))
    np.testing.assert_allclose(bp.softmax(x).sum(-1), 1.0)
    with pytest.raises(bp.ShapeError, match=r"matmul of \(2, 2\) and \(3, 1\)"):
        bp.matmul(x, np.ones((3, 1)))


def test_the_random_op_is_random_uniform_and_its_old_name_warns():
    # the keyed op is random_uniform; `uniform` is the per-step draw of a cell's body (a Param's initialiser when
    # declared), and its old keyed call bp.uniform(key, shape) still answers, with a warning
    assert "random_uniform" in bp.ops.registry() and bp.ops.registry()["uniform"].__name__ == "uniform"
    with pytest.warns(DeprecationWarning, match="random_uniform"):
        old = bp.uniform(7, (3,))
    np.testing.assert_array_equal(old, bp.random_uniform(7, (3,)))
