"""Every optimizer's update, as written in the step graph, against optax's implementation of the same rule: the
parameters after 50 steps of a small tanh network in float64 agree to 1e-10 (optax differentiates the same network
with JAX). Then the magic's names for them, and their hyperparameters as the run's history records them."""
import numpy as np
import pytest

import bpmagic as bp
from bpmagic.train import optim

optax = pytest.importorskip("optax", reason="optax is a test dependency (pip install -e '.[test]')")
jax = pytest.importorskip("jax", reason="jax is a test dependency")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

RNG = np.random.default_rng(0)
X = RNG.standard_normal((32, 3))
Y = np.sin(X[:, :1]) + 0.1 * X[:, 1:2]
START = {"W1": RNG.standard_normal((3, 8)) * 0.5, "b1": np.zeros(8), "W2": RNG.standard_normal((8, 1)) * 0.5,
         "b2": np.zeros(1)}


def bp_loss(p, x, y):
    return bp.mean(bp.square(bp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"] - y))


def jax_loss(p, x, y):
    return jnp.mean(jnp.square(jnp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"] - y))


CASES = {
    "sgd": (optim.SGD(lr=0.1), optax.sgd(0.1)),
    "momentum": (optim.SGD(lr=0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9)),
    "nesterov": (optim.Nesterov(lr=0.05), optax.sgd(0.05, momentum=0.9, nesterov=True)),
    "adam": (optim.Adam(lr=0.01, betas=(0.9, 0.99), eps=1e-8), optax.adam(0.01, b1=0.9, b2=0.99, eps=1e-8)),
    "adamw": (optim.AdamW(lr=0.01, weight_decay=0.05), optax.adamw(0.01, weight_decay=0.05)),
    "rmsprop": (optim.RMSprop(lr=0.01, alpha=0.9, eps=1e-8),
                optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False)),
    "adagrad": (optim.Adagrad(lr=0.1, eps=1e-7, initial_accumulator_value=0.1),
                optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_update_equals_optax_over_50_steps_in_float64(name):
    ours, theirs = CASES[name]
    params = {k: v.copy() for k, v in START.items()}
    step = bp.compile_step(bp_loss, params, X, Y, optimizer=ours, backend="numpy")
    for _ in range(50):
        step(X, Y)
    p = {k: jnp.asarray(v) for k, v in START.items()}
    state = theirs.init(p)
    grad = jax.jit(jax.grad(jax_loss))
    for _ in range(50):
        updates, state = theirs.update(grad(p, X, Y), state, p)
        p = optax.apply_updates(p, updates)
    for k in START:
        np.testing.assert_allclose(params[k], np.asarray(p[k]), rtol=1e-10, atol=1e-12, err_msg=f"{name}: {k}")
    assert not np.allclose(params["W1"], START["W1"])  # it moved


def test_each_optimizer_is_found_by_name_and_printed_in_the_step():
    for name in ("sgd", "nesterov", "adam", "adamw", "rmsprop", "adagrad"):
        opt = optim.get_optimizer(name)
        step = bp.compile_step(bp_loss, {k: v.copy() for k, v in START.items()}, X, Y, optimizer=opt,
                               backend="numpy")
        assert f"update: {opt!r} update" in str(step.update_graph)  # the update is named where it is printed
        assert opt.hypers[0].name == "lr" and str(opt).startswith(type(opt).__name__ + "(lr=")


@pytest.mark.parametrize("how", ["norm", "value", "both"])
def test_clipping_equals_optax_and_marks_the_steps_where_it_engaged(how):
    X3 = X * 3  # large gradients, so that clipping engages at first
    norm, value = {"norm": (0.5, None), "value": (None, 0.05), "both": (0.5, 0.05)}[how]
    params = {k: v.copy() for k, v in START.items()}
    opt = optim.SGD(lr=0.05, momentum=0.9).clipped(norm=norm, value=value)
    run = bp.fit(bp_loss, params, (X3, Y), steps=50, optimizer=opt, backend="numpy")
    chain = ([optax.clip(value)] if value else []) + ([optax.clip_by_global_norm(norm)] if norm else [])
    tx = optax.chain(*chain, optax.sgd(0.05, momentum=0.9))
    p = {k: jnp.asarray(v) for k, v in START.items()}
    state, grad, engaged = tx.init(p), jax.grad(jax_loss), []
    for _ in range(50):
        g = grad(p, X3, Y)
        flat = jnp.concatenate([jnp.ravel(v) for v in g.values()])
        big = bool(jnp.abs(flat).max() > value) if value else False
        clipped_g = jax.tree.map(lambda v: jnp.clip(v, -value, value), g) if value else g
        total = float(jnp.sqrt(sum(jnp.sum(v * v) for v in clipped_g.values())))
        engaged.append(big or (norm is not None and total > norm))
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    for k in START:
        np.testing.assert_allclose(params[k], np.asarray(p[k]), rtol=1e-10, atol=1e-12, err_msg=k)
    assert run.history["clipped"] == engaged and any(engaged)  # the history marks exactly those steps
    assert len(run.history["grad_norm"]) == 50
    assert "gradient clipping of SGD(" in str(run.backward_graph)  # part of the backward graph, printed and drawn
    if norm:
        assert set(run.history["clip_norm"]) == {norm}  # a hyperparameter: live, in the history


def test_a_negative_clip_is_one_message():
    with pytest.raises(ValueError, match="clip_norm must be a finite number > 0, got -1"):
        optim.SGD().clipped(norm=-1)
