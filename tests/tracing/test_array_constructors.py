"""Constants (zeros ones full *_like eye arange linspace): NumPy's meaning, in traced code and in %%backprop cells."""
import numpy as np
import pytest

import bpmagic as bp
from bpmagic.ops import constants
from bpmagic.ops.core import op_info
from cells import backprop


@pytest.mark.parametrize("name", constants.__all__)
def test_each_constant_matches_numpy_and_its_jax_reference(name):
    jax = pytest.importorskip("jax", reason="JAX is the independent reference (pip install 'jax[cpu]')")
    jax.config.update("jax_enable_x64", True)
    op, info = getattr(bp, name), op_info(getattr(bp, name))
    assert name in bp.ops.registry() and info.samples and info.reference and info.numpy_name == name
    for args, kwargs in info.samples(np.random.default_rng(0)):
        got, want = op(*args, **kwargs), getattr(np, name)(*args, **kwargs)
        assert got.shape == want.shape and got.dtype == want.dtype
        if name.startswith("empty"):  # NumPy leaves its values unset: bpmagic's are zeros
            np.testing.assert_array_equal(got, 0)
            continue
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got, np.asarray(info.reference(jax)(*args, **kwargs)))


def test_constants_in_traced_code_are_constants_with_zero_gradient():
    x = np.random.default_rng(0).standard_normal((3, 4))

    def f(x):
        h = bp.zeros((x.shape[0], 2)) + bp.ones_like(x)[:, :2] + np.full_like(x, 0.5)[:, :2]
        return bp.sum(bp.tanh(x[:, :2] + h) * bp.arange(2) + bp.eye(3)[:, :1] * bp.linspace(0, 1, 2))

    graph = bp.trace(f, x)
    assert len(graph.inputs) == 1 and graph.consts
    assert not any(e.primitive.name in constants.__all__ for e in graph.eqns)  # values, not equations
    assert bp.gradcheck(f, x)


def test_a_constant_cannot_depend_on_a_traced_value():
    with pytest.raises(bp.ShapeError, match="full: fill_value must be a number, not a traced value"):
        bp.trace(lambda x: bp.sum(bp.full((2,), bp.sum(x))), np.ones(2))
    with pytest.raises(bp.BackpropError, match=r"line \d+: linspace: start and stop must be a number"):
        bp.trace(lambda x: bp.sum(np.linspace(x[0], 1.0, 3)), np.ones(2))


def test_cell_constants_take_the_cells_dtype_and_param_shapes():
    cell = constants.for_cell(np.float32)
    assert cell["zeros"](2, 8).shape == (2, 8) and cell["zeros"]((2, 8)).dtype == np.float32
    assert cell["ones"](3).dtype == np.float32 and cell["full"]((2,), 3).dtype == np.float32
    assert cell["eye"](2).dtype == np.float32 and cell["linspace"](0, 1, 3).dtype == np.float32
    assert cell["arange"](4).dtype == np.arange(4).dtype  # integer ranges are indices
    assert cell["arange"](0.0, 1.0, 0.5).dtype == np.float32
    assert cell["zeros"](2, dtype=np.int64).dtype == np.int64  # a dtype the user gives is kept


RNN_CELL = """\
Wx: Param = randn(1, 8) * 0.5
Wh: Param = randn(8, 8) * 0.1
b: Param = zeros(8)
Wo: Param = randn(8, 1) * 0.1
s: Input = S
y: Target = Ysum
h = zeros((s.shape[0], 8))
for t in range(s.shape[1]):
    h = tanh(s[:, t:t + 1] @ Wx + h @ Wh + b)
loss: Loss = mse(h @ Wo, y)
"""


def test_a_cell_body_zeros_is_a_graph_constant_not_a_param(ip, ns):
    rng = np.random.default_rng(0)
    ns["S"] = rng.standard_normal((16, 4)).astype(np.float32)
    ns["Ysum"] = ns["S"].sum(axis=1, keepdims=True)
    assert backprop(ip, "--steps 5 --no-dashboard --name rnn", RNN_CELL).success
    run = ns["rnn"]
    assert set(run.params) == {"Wx", "Wh", "b", "Wo"}  # h is not trained
    first_state = [v for v in run.graph.consts if v.shape == (16, 8)]
    assert first_state and all(v.dtype == np.float32 for v in run.graph.consts if v.shape == (16, 8))
    assert {v.dtype for v in run.graph.inputs} == {np.dtype(np.float32)}  # no float64 crept in
    assert ns["b"].dtype == np.float32 and ns["b"].shape == (8,)  # the Param initialiser zeros(8) still works
    ns.pop("S"), ns.pop("Ysum")
