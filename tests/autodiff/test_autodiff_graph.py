"""Reverse mode over a finished Graph (autodiff.grad_of_graph): the same gradients as bp.grad and JAX, the graph's own
Vars and equations kept, and a hook that sees each adjoint as it is formed, in reverse order."""
import numpy as np
import pytest

import bpmagic as bp
from bpmagic import autodiff


def program(x, W, b):
    h = np.tanh(x @ W + b)
    z = h * x.sum()          # x is used twice: its adjoint is a sum
    return (z ** 2).mean() + np.maximum(h, 0.1).sum()


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 3)), rng.standard_normal((3, 3)), rng.standard_normal(3)


def test_gradients_of_a_graph_match_bp_grad_and_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    args = inputs()
    graph = bp.trace(program, *args)
    result = autodiff.grad_of_graph(graph, args)
    expected = bp.grad(program, argnums=(0, 1, 2))(*args)

    def jax_program(x, W, b):
        jnp = jax.numpy
        h = jnp.tanh(x @ W + b)
        return ((h * x.sum()) ** 2).mean() + jnp.maximum(h, 0.1).sum()

    reference = jax.grad(jax_program, argnums=(0, 1, 2))(*args)
    for v, ours, theirs in zip(graph.inputs, expected, reference):
        np.testing.assert_allclose(result.adjoints[v], np.asarray(ours), rtol=1e-12)
        np.testing.assert_allclose(result.adjoints[v], np.asarray(theirs), rtol=1e-10)
    # the returned graph computes the loss and then the gradients: run it and compare
    from bpmagic.ops.evaluate import evaluate

    loss, *grads = evaluate(result.graph, list(args), np)
    assert float(loss) == pytest.approx(float(program(*args)), rel=1e-12)
    for g, ours in zip(grads, expected):
        np.testing.assert_allclose(g, np.asarray(ours), rtol=1e-12)


def test_the_graph_is_differentiated_as_it_is_not_traced_again():
    args = inputs(1)
    graph = bp.trace(program, *args)
    eqns = list(graph.eqns)
    result = autodiff.grad_of_graph(graph, args)
    assert result.graph.eqns[:len(eqns)] == eqns and all(a is b for a, b in zip(result.graph.eqns, eqns))
    assert graph.eqns == eqns  # the graph itself is left as it was
    forward = [v for e in graph.eqns for v in e.outputs]
    assert set(forward) <= set(result.values)
    # every forward value the loss depends on has its adjoint, keyed by the graph's own Var
    assert set(forward) <= set(result.adjoints)


def test_the_hook_sees_each_adjoint_once_in_reverse_order_with_running_totals():
    args = inputs(2)
    graph = bp.trace(program, *args)
    seen = []
    result = autodiff.grad_of_graph(graph, args, on_adjoint=seen.append)
    order = [graph.eqns.index(pb.eqn) for pb in seen]
    assert order == sorted(order, reverse=True) and len(set(order)) == len(order) == len(graph.eqns)
    x = graph.inputs[0]
    contributions = [(pb, i) for pb in seen for i, v in enumerate(pb.eqn.inputs) if v is x]
    assert len(contributions) >= 2, "x is read twice"
    total = np.zeros(x.shape)
    for pb, i in contributions:  # in the order the hook saw them
        total = total + np.asarray(pb.cotangents[i].value)
        np.testing.assert_allclose(np.asarray(pb.totals[i].value), total, rtol=1e-12)
    np.testing.assert_allclose(total, result.adjoints[x], rtol=1e-12)
    for pb in seen:  # the adjoint that arrives has the shape of the value it belongs to
        assert tuple(pb.adjoint.shape) == pb.eqn.outputs[0].shape


def test_a_graph_whose_output_ignores_an_input_gives_it_a_zero_gradient():
    graph = bp.trace(lambda a, b: (a * a).sum(), np.ones(3), np.ones(2))
    result = autodiff.grad_of_graph(graph, [np.arange(3.0), np.ones(2)])
    np.testing.assert_allclose(result.adjoints[graph.inputs[0]], 2 * np.arange(3.0))
    assert graph.inputs[1] not in result.adjoints
