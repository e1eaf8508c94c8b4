"""A backward graph reads like the math: VJPs record no work for a constant operand, and clip's gradient is
ḡ · [lo < x < hi] with no tie-breaking, while two traced operands of maximum / minimum still share a tie."""
from __future__ import annotations

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.tracing import new_trace


def _recorded_vjp(prim, *operands, traced=(0,)):
    """The cotangents of prim's VJP at `operands` (those at positions `traced` traced, the others plain constants,
    as a Literal reaches a VJP) and the names of the primitives it recorded."""
    prim = getattr(prim, "primitive", prim)  # bp.where is the face of the primitive
    rng = np.random.default_rng(0)
    with new_trace("numpy") as tr:
        ins = [tr.new_input(x) if i in traced else np.asarray(x) for i, x in enumerate(operands)]
        out = prim(*ins)
        g = tr.new_input(rng.standard_normal(out.shape))
        start = len(tr.eqns)
        cts = prim.vjp(g, out, *ins)
        return cts, [e.primitive.name for e in tr.eqns[start:]]


X = np.random.default_rng(1).standard_normal((3, 4))


@pytest.mark.parametrize("prim,const,expected", [
    (bp.add, 2.0, []),
    (bp.subtract, 2.0, []),
    (bp.multiply, 2.0, ["multiply"]),
    (bp.divide, 2.0, ["divide"]),
    (bp.logaddexp, 2.0, ["subtract", "exp", "multiply"]),
    (bp.maximum, 0.3, ["greater", "multiply"]),
    (bp.minimum, 0.3, ["less", "multiply"]),
], ids=lambda v: getattr(v, "name", None))
def test_a_constant_operand_gets_no_cotangent_and_costs_no_equation(prim, const, expected):
    for traced, operands in [((0,), (X, const)), ((1,), (const, X))]:
        cts, recorded = _recorded_vjp(prim, *operands, traced=traced)
        other = 1 - traced[0]
        assert cts[other] is None, f"{prim.name}: a cotangent for the constant operand"
        assert cts[traced[0]].shape == X.shape
        if prim.name in ("subtract", "divide") and traced == (1,):
            continue  # b's rule differs (−ḡ, −ḡ·y/b): only the cotangent is checked here
        assert recorded == expected, f"{prim.name} recorded {recorded}"


def test_where_and_power_skip_their_constant_operands():
    mask = X > 0
    cts, recorded = _recorded_vjp(bp.where, mask, X, 0.0, traced=(1,))
    assert cts[0] is None and cts[2] is None and recorded == ["where"]
    cts, recorded = _recorded_vjp(bp.power, np.abs(X) + 0.5, np.array([1.0, 2.0, -1.0, 3.0]), traced=(0,))
    assert cts[1] is None and "log" not in recorded  # a constant exponent array: no d/dy x**y = log(x) x**y
    cts, recorded = _recorded_vjp(bp.power, 2.0, X, traced=(1,))
    assert cts[0] is None and "power" not in recorded


def test_two_traced_operands_of_maximum_and_minimum_share_a_tie():
    a = np.array([0.3, -1.0, 2.0])
    ga, gb = bp.grad(lambda a, b: bp.sum(bp.maximum(a, b)), argnums=(0, 1))(a, a.copy())
    np.testing.assert_array_equal(ga, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(gb, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.maximum(x, x)))(a), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.minimum(x, x * 1.0)))(a), [1.0, 1.0, 1.0])


def test_against_a_number_maximum_has_relus_gradient_and_clip_passes_strictly_inside():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.maximum(x, 0.0)))(x),
                                  bp.grad(lambda x: bp.sum(bp.relu(x)))(x))
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.clip(x, 0.0, 1.0)))(x), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.clip(x, None, 1.0)))(x), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.minimum(2.0, x)))(x), [1, 1, 1, 1, 0])


def test_binary_cross_entropy_backward_reads_like_the_math():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, (4, 1))
    y = (rng.uniform(size=(4, 1)) > 0.5).astype(np.float64)
    back = bp.trace(bp.grad(bp.binary_cross_entropy), p, y).part("backward")
    names = [e.primitive.name for e in back.eqns]
    # the clip's gradient is one comparison per bound and a multiply each: no ties split, no bound's cotangent
    assert names.count("less") == names.count("greater") == 1, names
    assert not {"equal", "astype"} & set(names), names
    assert len(back.eqns) <= 14, back
    want = (p - y) / (p * (1 - p)) / p.size
    np.testing.assert_allclose(bp.grad(bp.binary_cross_entropy)(p, y), want, rtol=1e-12)
    # clipped entries get no gradient
    edge = np.array([0.0, 0.5, 1.0])
    np.testing.assert_array_equal(bp.grad(bp.binary_cross_entropy)(edge, np.array([1.0, 1.0, 0.0]))[[0, 2]], [0, 0])


def test_layering_moves_keep_eager_calls_on_numpy_arrays():
    m = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(bp.unbroadcast(np.ones((2, 3, 4)), (3, 1)), np.full((3, 1), 8.0))
    assert bp.unbroadcast(m, (3, 4)) is m
    assert float(bp.matrix_trace(m)) == np.trace(m)
    np.testing.assert_array_equal(bp.matrix_trace(np.ones((2, 3, 3)), axis1=1, axis2=2), [3.0, 3.0])
    np.testing.assert_array_equal(bp.triu(m), np.triu(m))
    np.testing.assert_array_equal(bp.clip(m, 2, 9), np.clip(m, 2, 9))
    np.testing.assert_array_equal(bp.broadcast_to(np.ones(4), (3, 4)), np.ones((3, 4)))
