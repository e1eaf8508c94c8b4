"""The backprop step-through and the live graph, on the Python side: the numbers each step shows, the order of
the walk, and a Run's graph whose edge weights follow training (the browser side is in test_browser_graph.py)."""
import re

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.viz import backprop_steps


def scalar_program(a, b):
    c = a * b
    d = bp.tanh(c) + a
    return d * d


def central_difference(f, args, i, eps=1e-6):
    up, down = list(args), list(args)
    up[i], down[i] = args[i] + eps, args[i] - eps
    return (f(*up) - f(*down)) / (2 * eps)


def test_scalar_program_walks_back_node_by_node():
    a, b = np.float64(1.5), np.float64(-0.5)
    steps = backprop_steps(scalar_program, a, b)
    # reverse topological order: d * d, then + a, then tanh, then a * b
    assert [s.node for s in steps] == ["e3", "e2", "e1", "e0"]
    assert [s.code.split(" = ")[1].split("(")[0] for s in steps] == ["multiply", "add", "tanh", "multiply"]
    assert float(steps[0].adjoint) == 1.0
    # names come from the user's assignments
    assert steps[3].code == "c = multiply(a, b)"
    # each scalar step: product = incoming adjoint × local derivative
    for s in steps:
        for c in s.contributions:
            assert float(c.product) == pytest.approx(float(s.adjoint) * float(c.local), rel=1e-12)
    # tanh's local rule is written with its output: g * (1 - out²)
    assert steps[2].contributions[0].rule.startswith("g * (1")
    # a is used twice (in c = a * b and in d = ... + a): its adjoint is the sum
    from_add = [c for c in steps[1].contributions if c.input == "a"][0]
    from_mul = [c for c in steps[3].contributions if c.input == "a"][0]
    assert float(from_mul.total) == pytest.approx(float(from_add.product) + float(from_mul.product), rel=1e-12)
    assert "summed with earlier uses" in steps[3].text
    # the end result is the gradient: equal to bp.grad and to central differences
    ga, gb = bp.grad(scalar_program, argnums=(0, 1))(a, b)
    assert float(steps.gradients["a"]) == pytest.approx(float(ga), rel=1e-12)
    assert float(steps.gradients["b"]) == pytest.approx(float(gb), rel=1e-12)
    assert float(steps.gradients["a"]) == pytest.approx(central_difference(scalar_program, (a, b), 0), rel=1e-7)
    assert float(steps.gradients["b"]) == pytest.approx(central_difference(scalar_program, (a, b), 1), rel=1e-7)


def test_tiny_mlp_steps_match_the_gradient():
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((2, 3)), rng.standard_normal((3, 1))
    x, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))

    def mlp(W1, W2):
        h = bp.tanh(x @ W1)
        return bp.mean((h @ W2 - y) ** 2)

    steps = backprop_steps(mlp, W1, W2)
    g1, g2 = bp.grad(mlp, argnums=(0, 1))(W1, W2)
    np.testing.assert_allclose(steps.gradients["W1"], g1, rtol=1e-12)
    np.testing.assert_allclose(steps.gradients["W2"], g2, rtol=1e-12)
    matmul_w1 = [s for s in steps if "W1" in [c.input for c in s.contributions]][0]
    assert matmul_w1.line == mlp.__code__.co_firstlineno + 1 and "matmul" in matmul_w1.code
    assert [s.output for s in steps if "tanh" in s.code] == ["h"]
    rule = [c for c in matmul_w1.contributions if c.input == "W1"][0].rule
    assert rule.startswith("transpose(") and rule.endswith("@ g")  # dW1 = xᵀ g
    assert matmul_w1.contributions[0].local is None  # arrays show the rule, not a Jacobian
    # every node of the drawing the step names exists, and its edges end at it
    for s in steps:
        assert f"\t{s.node} [" in steps.dot.source
        assert all(edge.endswith("->" + s.node) for edge in s.edges)


def test_step_through_widget_state():
    st = bp.viz.step_through(scalar_program, np.float64(1.5), np.float64(-0.5))
    assert st.index == -1 and st.current is None
    assert [s["node"] for s in st.steps] == ["e3", "e2", "e1", "e0"]
    assert st.step().node == "e3" and st.index == 0
    st.step(), st.step(), st.step(), st.step()
    assert st.index == 3  # stops at the last step
    assert st.back().node == "e1"
    st.reset()
    assert st.index == -1
    assert "dL/da" in st.status and "Step" in st.intro


def test_step_through_needs_a_scalar():
    with pytest.raises(bp.BackpropError, match="scalar"):
        backprop_steps(lambda w: w * 2, np.ones(3))


def test_live_graph_follows_training():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    Y = (X[:, :1] > 0).astype(np.float64)
    params = {"W1": rng.standard_normal((4, 8)) * 0.5, "W2": rng.standard_normal((8, 1)) * 0.5}

    def loss(p, x, y):
        return bp.binary_cross_entropy(bp.sigmoid(bp.tanh(x @ p["W1"]) @ p["W2"]), y)

    run = bp.fit(loss, params, (X, Y), steps=400, optimizer=bp.optim.SGD(lr=0.5), backend="numpy",
                 background=True)
    view = bp.viz.live(run, interval=0.0)
    first = dict(view.edge_weights)
    run.wait()
    # every value edge of the drawing has a weight in [0, 1]; they changed as the parameters did
    assert first and set(view.edge_weights) == set(first)
    assert all(0.0 <= w <= 1.0 for w in view.edge_weights.values())
    assert view.edge_weights != first
    assert "finished" in view.status and "step 400" in view.status
    assert not run.step.watching_values, "the run ended: the step measures for nobody"
    keys = set(view.edge_weights)
    assert all(f"{k.split('->')[0]} -> {k.split('->')[1]}" in view.dot + view.dot_expanded for k in keys)


def test_live_graph_reads_the_steps_own_measurements_and_traces_nothing_while_training(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 3))
    Y = rng.standard_normal((32, 1))
    params = {"W1": rng.standard_normal((3, 5)) * 0.5, "W2": rng.standard_normal((5, 1)) * 0.5}

    def loss(p, x, y):
        h = np.tanh(x @ p["W1"])
        return ((h @ p["W2"] - y) ** 2).mean()

    run = bp.fit(loss, params, (X, Y), steps=1, optimizer=bp.optim.SGD(lr=0.1), backend="numpy")
    view = bp.viz.live(run, interval=0.0)
    step = run.step
    assert not step.watching_values, "the run has ended: its view stops the step measuring"
    step.watch_values()  # as while the run trains
    # the reference, before the step: reverse mode over the step's own loss graph, interpreted
    plan, inputs = step.plan_and_inputs(X, Y)  # compiles the watched step now
    value_of = dict(zip(plan.graph.inputs, inputs))
    graph = plan.loss_graph
    reference = bp.autodiff.grad_of_graph(graph, [value_of[v] for v in graph.inputs], wrt=graph.inputs[:2])
    _, grads = bp.value_and_grad(loss)({k: v.copy() for k, v in params.items()}, X, Y)

    def no_tracing(*args, **kwargs):
        raise AssertionError("the live graph traced or differentiated while the run trained")

    import bpmagic.viz.views as views

    for module, name in ((views, "gradient_flow"), (bp.autodiff, "grad_of_graph"), (bp.autodiff, "backward")):
        monkeypatch.setattr(module, name, no_tracing)
    step(X, Y)
    view._update(run)  # what the run's listener does after each step: it reads the step's numbers
    measured = step.last.value_grads
    assert len(measured) >= len(graph.eqns), "a watched step measures the gradient at every value"
    for v, norm in measured.items():
        assert norm == pytest.approx(float(np.linalg.norm(reference.adjoints[v])), rel=1e-9), v
    assert measured[graph.inputs[0]] == pytest.approx(float(np.linalg.norm(grads["W1"])), rel=1e-9)
    assert view.edge_weights and all(0.0 <= w <= 1.0 for w in view.edge_weights.values())


def test_a_live_graph_ending_on_a_partial_batch_keeps_the_full_batchs_drawing_and_colours_it():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((50, 3)), rng.standard_normal((50, 1))
    params = {"W1": rng.standard_normal((3, 4)) * 0.5, "W2": rng.standard_normal((4, 1)) * 0.5}
    run = bp.fit(lambda p, x, y: bp.mse(np.tanh(x @ p["W1"]) @ p["W2"], y), params, (X, Y), steps=8,
                 batch_size=16, optimizer=bp.optim.SGD(lr=0.1), backend="numpy", background=True)
    run.pause()
    view = bp.viz.live(run, interval=0.0)
    first = dict(view.edge_weights)
    run.resume().wait()
    assert next(v for v in run.step.plan.graph.inputs if v.name == "x").shape == (2, 3)  # it ended on 50 mod 16
    assert set(view.edge_weights) == set(first) and view.edge_weights != first  # coloured by the last step
    record = view.static_drawing().source
    assert "16×4" in record and "2×4" not in record
    assert len(set(re.findall(r'color="(#[0-9a-f]{6})"', record))) > 2, "the record's edges are coloured"


def test_step_through_hides_each_answer_until_its_step():
    st = bp.viz.step_through(scalar_program, np.float64(1.5), np.float64(-0.5))
    grads = st.steps_data.gradients
    shown = lambda name: f"dL/d{name} = {bp.viz.steps.show(grads[name])}" in st.status  # noqa: E731
    assert not shown("a") and not shown("b") and "dL/da = ?" in st.status  # before the first Step
    for _ in range(3):
        st.step()
        assert not shown("a") and not shown("b")  # a and b first receive their adjoints at the last node, a * b
    st.step()
    assert shown("a") and shown("b")
    st.back()
    assert "dL/db = ?" in st.status


def test_a_closed_live_graph_stops_following_the_run_and_its_step_stops_measuring():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((64, 3)), rng.standard_normal((64, 1))
    params = {"W1": rng.standard_normal((3, 4)) * 0.5, "W2": rng.standard_normal((4, 1)) * 0.5}
    run = bp.fit(lambda p, x, y: bp.mse(np.tanh(x @ p["W1"]) @ p["W2"], y), params, (X, Y), steps=10**7,
                 optimizer=bp.optim.SGD(lr=0.01), backend="numpy", background=True)
    try:
        view = bp.viz.live(run, interval=0.0)
        assert run.step.watching_values
        run.wait(until_step=run.steps_done + 5)  # an event, not a time: steps taken while it watches
        assert run.step.last.value_grads
        view.close()
        assert not run.step.watching_values and view._update not in run._listeners
        run.wait(until_step=run.steps_done + 5)
        assert not run.step.last.value_grads, "a step after the close measures nothing for the view"
    finally:
        run.stop().wait()
