"""Fewer, larger calls (compile/batching.py): an unrolled RNN's products made as one, checked against JAX in float64,
with the drawn graph and the guard as a learner meets them."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpmagic as bp

jax.config.update("jax_enable_x64", True)

T, B, N_IN, H = 12, 5, 3, 7


def params_of(seed=0):
    rng = np.random.default_rng(seed)
    return {"Wx": rng.standard_normal((N_IN, H)) / 2, "Wh": rng.standard_normal((H, H)) / 3,
            "b": rng.standard_normal(H) / 4, "Wo": rng.standard_normal((H, 1)) / 2}


def rnn(np_, time_major, bias_first):
    """A learner's RNN, written two ways: data (T, B, n) or (B, T, n); the bias before or after the products."""
    def loss_fn(p, x, y):
        h = np_.zeros((B, H))
        for t in range(T):
            xt = x[t] if time_major else x[:, t]
            if bias_first:
                h = np_.tanh(p["b"] + xt @ p["Wx"] + h @ p["Wh"])
            else:
                h = np_.tanh(xt @ p["Wx"] + h @ p["Wh"] + p["b"])
        return np_.mean((h @ p["Wo"] - y) ** 2)
    return loss_fn


@pytest.mark.parametrize("time_major", [True, False], ids=["x[t]", "x[:, t]"])
@pytest.mark.parametrize("bias_first", [False, True], ids=["bias last", "bias first"])
def test_an_unrolled_rnn_trains_as_jax_computes_it(time_major, bias_first):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, N_IN) if time_major else (B, T, N_IN))
    y = rng.standard_normal((B, 1))
    params, lr = params_of(), 0.05
    step = bp.compile_step(rnn(bp, time_major, bias_first), params, x, y, optimizer=bp.optim.SGD(lr=lr),
                           backend="numpy")

    expected = {k: jnp.asarray(v) for k, v in params_of().items()}
    value_and_grad = jax.jit(jax.value_and_grad(rnn(jnp, time_major, bias_first)))
    for _ in range(3):
        loss = step(x, y)
        want, grads = value_and_grad(expected, x, y)
        expected = {k: v - lr * grads[k] for k, v in expected.items()}
        assert loss == pytest.approx(float(want), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)

    code = str(step)
    # the input projection is one product of all of x (+ the bias, once); the weights' gradients one product each
    assert len(re.findall(r"xp\.dot\(t\d+, Wx, ", code)) == 1, code
    assert re.search(r"xp\.dot\([^\n]*-> dWx\n", code), code
    products = [line for line in code.splitlines()  # the model's: not its sums (products with ones), not the guard's
                if "xp.dot(" in line and "_ones_" not in line and "# update" not in line]
    assert len(products) <= 2 * T + 6, code  # h @ Wh and its backward at each step, and a few; not 5 T
    # the stacked rows are written where the stack reads them: nothing is copied, but x[:, t], views of x's columns
    assert "parts were written into it" in code and code.count("xp.concatenate(") == (0 if time_major else 1), code
    # what a learner draws is the model's own graph: one product per step and use
    assert sum(e.primitive.name == "matmul" for e in step.forward_graph.eqns) == 2 * T + 1


def test_a_few_rows_of_a_long_sequence_are_not_projected_whole():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, B, N_IN))

    def loss_fn(p, x):
        return bp.sum(bp.tanh(x[0] @ p["Wx"]) * bp.tanh(x[99] @ p["Wx"]))

    step = bp.compile_step(loss_fn, {"Wx": params_of()["Wx"]}, x, backend="numpy")
    step(x)
    assert "reshape((500, 3))" not in str(step) and str(step).count("xp.dot(x") == 0


def test_a_nan_at_one_time_step_keeps_the_parameters_and_names_the_line():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((T, B, N_IN)), rng.standard_normal((B, 1))
    params = params_of()
    loss_fn = rnn(bp, True, False)
    step = bp.compile_step(loss_fn, params, x, y, optimizer=bp.optim.SGD(lr=0.05), backend="numpy")
    step(x, y)
    before = {k: v.copy() for k, v in params.items()}
    x[5, 2, 1] = np.nan
    with pytest.raises(bp.NonFiniteError) as info:
        step(x, y)
    assert "getitem of (12, 5, 3) produced nan at step 2.\n    xt = x[t] if time_major" in str(info.value)
    for k in params:
        assert np.array_equal(params[k], before[k])


def test_a_learners_concatenation_is_written_in_place_and_stays_intact():
    """The parts of a concatenation are computed into its buffer; a part read again after it, at its last use, is
    not overwritten there by an elementwise result (which would change the stack)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 4))
    params = {"W": rng.standard_normal((4, 3)), "V": rng.standard_normal((4, 3))}

    def loss(np_, p, x):
        a = x @ p["W"]
        b = x @ p["V"]
        c = np_.concatenate([a, b])  # b's last use comes after: exp(b), which must not be written over b
        return np_.sum(np_.exp(b)) + np_.sum(c * c[::-1])

    step = bp.compile_step(lambda p, x: loss(bp, p, x), params, x, optimizer=bp.optim.SGD(lr=0.1), backend="numpy")
    expected = {k: jnp.asarray(v) for k, v in params.items()}
    want, grads = jax.value_and_grad(lambda p: loss(jnp, p, x))(expected)
    assert step(x) == pytest.approx(float(want), rel=1e-12)
    assert "parts were written into it" in str(step), str(step)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k] - 0.1 * grads[k], rtol=1e-12)


def test_the_backward_of_tanh_at_every_layer_is_one_chain_of_the_stacked_outputs():
    """A deep tanh net of one width: `1 - y * y` for the six layers' y is computed once, over the y stacked (each
    written into its place), and read at each layer as a view; the y stay intact for the weights' gradients read
    after it (JAX's values, float64). A recurrence (the RNN's state) is never batched: its chain needs the step
    before; test_an_unrolled_rnn_trains_as_jax_computes_it covers it."""
    rng = np.random.default_rng(5)
    layers, width = 6, 16
    x, y = rng.standard_normal((32, width)), rng.standard_normal((32, 1))
    start = {f"W{k}": rng.standard_normal((width, width)) * 0.4 for k in range(layers)}
    start["Wo"] = rng.standard_normal((width, 1)) * 0.3

    def loss(np_, p, x, y):
        h = x
        for k in range(layers):
            h = np_.tanh(h @ p[f"W{k}"])
        return np_.mean((h @ p["Wo"] - y) ** 2)

    params = {k: v.copy() for k, v in start.items()}
    step = bp.compile_step(lambda p, x, y: loss(bp, p, x, y), params, x, y, optimizer=bp.optim.SGD(lr=0.1),
                           backend="numpy")
    expected = {k: jnp.asarray(v) for k, v in start.items()}
    for _ in range(3):
        got = step(x, y)
        want, grads = jax.value_and_grad(lambda p: loss(jnp, p, x, y))(expected)
        expected = {k: v - 0.1 * grads[k] for k, v in expected.items()}
        assert got == pytest.approx(float(want), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)
    code = str(step)
    backward = [line for line in code.splitlines() if "# backward" in line]
    assert sum("xp.subtract(_k" in line for line in backward) == 1, code  # 1 - Y * Y, once
    assert re.search(r"reshape\(\(6, 32, 16\)\)", code) and "its 6 parts were written into it" in code, code


def test_a_chain_whose_value_another_like_chain_starts_from_is_left_alone():
    """arctan2's backward squares its operands (x * x); here one operand is itself x * x of the forward: that
    value is made by the earliest like chain, so the chains are not stacked (the stack would read it before it is
    made). The step compiles and is JAX's (a reviewer's case: it raised KeyError in the emitter)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 3))
    start = {k: rng.standard_normal((3, 4)) for k in ("W1", "W2", "W3", "Wa")}

    def loss(np_, p, x):
        u1, u2, v, ya = x @ p["W1"], x @ p["W2"], x @ p["W3"], x @ p["Wa"]
        return np_.sum(np_.arctan2(u1, u2) * np_.arctan2(ya * ya, v))

    params = {k: v.copy() for k, v in start.items()}
    step = bp.compile_step(lambda p, x: loss(bp, p, x), params, x, optimizer=bp.optim.SGD(lr=0.1), backend="numpy")
    want, grads = jax.value_and_grad(lambda p: loss(jnp, p, x))({k: jnp.asarray(v) for k, v in start.items()})
    assert step(x) == pytest.approx(float(want), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], start[k] - 0.1 * np.asarray(grads[k]), rtol=1e-12, atol=1e-14)
