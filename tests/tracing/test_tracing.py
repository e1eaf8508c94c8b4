"""Tracing: graphs print as readable Python, errors name the user's line and shapes, branching is refused."""
import numpy as np
import pytest

import bpmagic as bp


def mlp(x, W1, b1):
    h = bp.tanh(x @ W1 + b1)
    return bp.mean(h ** 2)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 2)), rng.standard_normal((2, 3)), np.zeros(3)


def test_graph_prints_as_python_with_source_lines(data):
    text = str(bp.trace(mlp, *data))
    lines = text.splitlines()
    assert lines[0] == "def mlp(x: f64[4,2], W1: f64[2,3], b1: f64[3]):"
    assert "matmul(x, W1)" in text and "tanh(" in text and "add(" in text
    assert "h = bp.tanh(x @ W1 + b1)" in text  # the user's own line, as a comment
    assert lines[-1].startswith("    return ")


def test_printed_graph_is_valid_python(data):
    text = str(bp.trace(bp.grad(mlp, argnums=1), *data))
    compile(text, "<graph>", "exec")  # every line is a Python statement
    assert "backward of line" in text
    assert "dW1 = matmul(" in text  # adjoints are named after what they are the gradient of


def wrapped_mlp(x, W1, b1):
    hidden = bp.tanh(
        x @ W1
        + b1)
    out: float = bp.mean(hidden ** 2)
    return out


def test_a_statement_over_several_lines_names_its_value_once(data, ip):
    """The name a statement assigns goes to the last value it computes, wherever its lines break; in a cell too."""
    text = str(bp.trace(bp.value_and_grad(wrapped_mlp, argnums=1), *data))
    assert "    hidden = tanh(" in text and "dhidden = " in text and "    out = " in text
    assert "hidden_2" not in text  # one statement, one name (not one per line)
    ip.run_cell("import numpy as np\nXS = np.ones((4, 2))")
    ip.run_cell("%%backprop --steps 1 --name wrapped --no-dashboard\nW: Param = zeros(2, 3)\nx: Input = XS\n"
                "act = tanh(\n    x @ W)\nloss: Loss = mean(act ** 2)")
    step = str(ip.user_ns["wrapped"].step)
    assert "-> act\n" in step and "-> dact\n" in step, step


def test_graph_structure(data):
    g = bp.trace(mlp, *data)
    assert [v.name for v in g.inputs] == ["x", "W1", "b1"]
    assert [e.primitive.name for e in g.eqns][:3] == ["matmul", "add", "tanh"]
    assert g.outputs[0].shape == () and g.eqns[0].out.shape == (4, 3)
    assert all(e.source.lineno == mlp.__code__.co_firstlineno + 1 for e in g.eqns[:3])


def test_backward_part_of_a_graph(data):
    g = bp.trace(bp.value_and_grad(mlp, argnums=(1, 2)), *data)
    fwd, bwd = g.part("forward"), g.part("backward")
    assert {e.phase for e in fwd.eqns} == {"forward"} and {e.phase for e in bwd.eqns} == {"backward"}
    assert {v.name for v in bwd.outputs} >= {"dW1", "db1"}
    assert "def f_backward(" in str(bwd) or "_backward(" in str(bwd)


def test_shape_error_names_line_and_shapes():
    def bad(x, w):
        y = x @ w
        return bp.sum(y)

    with pytest.raises(bp.ShapeError) as info:
        bp.trace(bad, np.ones((4, 2)), np.ones((3, 8)))
    msg = str(info.value)
    line = bad.__code__.co_firstlineno + 1
    assert f"line {line}: matmul of (4, 2) and (3, 8)" in msg
    assert "y = x @ w" in msg


def test_broadcast_error_names_shapes():
    with pytest.raises(bp.ShapeError, match=r"add of \(4, 3\) and \(2,\): shapes do not broadcast"):
        bp.trace(lambda a, b: bp.sum(a + b), np.ones((4, 3)), np.ones(2))


def test_branching_on_traced_value_is_a_clear_error():
    def branchy(x):
        if bp.sum(x) > 0:
            return bp.sum(x)
        return -bp.sum(x)

    with pytest.raises(bp.TracingError, match=r"line \d+: Python `if`.*bp.where"):
        bp.trace(branchy, np.ones(3))
    with pytest.raises(bp.TracingError, match="float"):
        bp.grad(lambda x: float(bp.sum(x)))(np.ones(3))


def test_python_control_flow_unrolls_and_print_works(capsys):
    def f(x):
        for _ in range(3):
            x = bp.tanh(x)
        print(x)
        return bp.sum(x)

    g = bp.trace(f, np.array([0.5, -0.5]))
    assert [e.primitive.name for e in g.eqns].count("tanh") == 3
    assert "Tracer(f64[2], value=[" in capsys.readouterr().out


def test_freezing_a_traced_value_into_a_numpy_array_is_refused_with_advice():
    with pytest.raises(bp.TracingError, match=r"line \d+: .*np.asarray.*np.tanh\(h\)"):
        bp.trace(lambda x: np.asarray(x), np.ones(2))


def test_arrays_from_outside_become_constants():
    w = np.array([1.0, 2.0])
    g = bp.trace(lambda x: bp.sum(x * w), np.ones(2))
    assert list(g.consts.values())[0] is w and len(g.inputs) == 1


def test_pytree_arguments_name_inputs():
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    g = bp.trace(lambda p, x: bp.sum(x @ p["W"] + p["b"]), params, np.ones((3, 2)))
    assert [v.name for v in g.inputs] == ["W", "b", "x"]


def test_a_composites_equations_carry_its_scope_forward_and_backward():
    import bpmagic as bp

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(4, 3)), np.array([0, 2, 1, 0])
    loss = lambda z: bp.cross_entropy(bp.tanh(z), labels)
    scopes = {e.primitive.name: e.scope for e in bp.trace(loss, logits).eqns}
    assert scopes["tanh"] == ()
    assert scopes["exp"][:1] == ("cross_entropy",) and "logsumexp" in scopes["exp"]
    assert bp.cross_entropy.op_info.kind == "composite" and bp.tanh.op_info.numpy_name == "tanh"

    back = [e for e in bp.trace(bp.grad(loss), logits).eqns if e.phase == "backward"]
    assert any(e.scope[:1] == ("cross_entropy",) for e in back)
    assert any(e.scope == () for e in back)  # tanh's VJP is outside the composite
