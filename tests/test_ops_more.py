"""The linear-algebra, shape, layer and loss ops added for issue 12, checked from the samples they declare.

For each sample of each op: first- and second-order float64 gradcheck, and forward value and gradient against the
op's JAX reference. This is the same check the registry-wide table in test_primitives_gradcheck.py makes for every
op; once that table runs on these ops, the parametrised tests here can be deleted (the behaviour tests below stay).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.ops.core import op_info

jax = pytest.importorskip("jax", reason="JAX is the independent reference these checks compare with")
jax.config.update("jax_enable_x64", True)

NEW_OPS = ["einsum", "tensordot", "inner", "outer", "dot",
           "pad", "split", "flip", "roll", "tile", "repeat", "take_along_axis", "tril", "triu",
           "batch_norm", "conv1d", "conv_transpose2d", "upsample_nearest", "upsample_bilinear",
           "scaled_dot_product_attention",
           "huber", "l1", "nll", "kl_div", "cosine_similarity"]


def _cases():
    ops = bp.ops.registry()
    for name in (n for n in NEW_OPS if n in ops):  # a missing op fails test_every_new_op_declares_...
        op = ops[name]
        info = op_info(op)
        for i, (args, kwargs) in enumerate(info.samples(np.random.default_rng(zlib.crc32(name.encode())))):
            yield pytest.param(name, op, info, args, kwargs, id=f"{name}-{i}")


CASES = list(_cases())


def _differentiated(args):
    return [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype == np.float64]


def _partial(fn, args, kwargs, nums):
    """fn of the differentiated args only, the others held fixed."""
    def f(*diff):
        full = list(args)
        for i, d in zip(nums, diff):
            full[i] = d
        return fn(*full, **kwargs)
    return f


def _outputs(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _joined(fn, weights_seed=0):
    """fn reduced to one scalar: a fixed random weighting of every output (split returns a list)."""
    rng = np.random.default_rng(weights_seed)
    cache = {}

    def scalar(*a):
        total = 0.0
        for k, out in enumerate(_outputs(fn(*a))):
            w = cache.setdefault(k, rng.standard_normal(np.shape(out)))
            total = total + (out * w).sum()
        return total
    return scalar


@pytest.mark.parametrize("name,op,info,args,kwargs", CASES)
def test_declared_samples_gradcheck_order1_and_2(name, op, info, args, kwargs):
    nums = _differentiated(args)
    assert nums, f"{name}: a sample with nothing to differentiate checks nothing"
    f = _joined(_partial(op, args, kwargs, nums))
    diff = [args[i] for i in nums]
    for order in (1, 2):
        result = bp.gradcheck(f, *diff, order=order)
        assert result, (order, result)


@pytest.mark.parametrize("name,op,info,args,kwargs", CASES)
def test_declared_samples_match_jax(name, op, info, args, kwargs):
    ref = info.reference(jax)
    nums = _differentiated(args)
    ours = _outputs(op(*args, **kwargs))
    theirs = _outputs(ref(*args, **kwargs))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    f = _joined(_partial(op, args, kwargs, nums))
    g = _joined(_partial(ref, args, kwargs, nums))
    diff = [args[i] for i in nums]
    ours = bp.grad(f, argnums=tuple(range(len(diff))))(*diff)
    theirs = jax.grad(g, argnums=tuple(range(len(diff))))(*diff)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", NEW_OPS)
def test_every_new_op_declares_its_reference_page_facts(name):
    info = op_info(bp.ops.registry()[name])
    assert info.samples and info.reference and info.vjp_math
    assert info.kind == "composite"  # all are compositions of existing primitives (see each module's docstring)


# -- behaviour the samples do not show ---------------------------------------------------------------------------
def test_batch_norm_running_averages_move_towards_the_batch_and_carry_no_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 2)) * 2.0 + 1.0
    g, b = np.ones(3), np.zeros(3)
    mean, var = np.zeros(3), np.ones(3)
    y, new_mean, new_var = bp.batch_norm(x, g, b, mean, var, training=True, momentum=0.25)
    np.testing.assert_allclose(new_mean, 0.75 * mean + 0.25 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(new_var, 0.75 * var + 0.25 * x.var(axis=(0, 2), ddof=1), rtol=1e-12)
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0.0, atol=1e-12)
    # the running averages are state, not trained: no gradient reaches the old averages through the output
    dmean = bp.grad(lambda m: bp.sum(bp.batch_norm(x, g, b, m, var, training=True)[0]))(mean)
    np.testing.assert_array_equal(dmean, np.zeros(3))


def test_batch_norm_evaluation_uses_the_running_averages():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2))
    mean, var = np.array([0.5, -1.0]), np.array([4.0, 0.25])
    y, m, v = bp.batch_norm(x, None, None, mean, var, training=False)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12)
    assert m is mean and v is var
    with pytest.raises(bp.ShapeError, match="training=False needs running_mean"):
        bp.batch_norm(x, training=False)


def test_shape_mistakes_name_the_shapes_and_the_fix():
    with pytest.raises(bp.ShapeError, match=r"einsum 'ij,jk->ik' of \(2, 3\) and \(4, 5\): 'j' has sizes 3 and 4"):
        bp.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(bp.ShapeError, match=r"batch_norm of \(4, 3\): gamma has shape \(4,\).*must be \(3,\)"):
        bp.batch_norm(np.ones((4, 3)), np.ones(4))
    with pytest.raises(bp.ShapeError, match=r"split of \(5, 2\).*does not split into 2 equal pieces"):
        bp.split(np.ones((5, 2)), 2)
    with pytest.raises(bp.ShapeError, match=r"scaled_dot_product_attention of \(4, 3\), \(5, 2\)"):
        bp.scaled_dot_product_attention(np.ones((4, 3)), np.ones((5, 2)), np.ones((5, 2)))


def test_a_shape_mistake_under_grad_is_one_shape_error():
    # (the cell line is put in front by the cell's error handling, issue 12 point 4, not by the op)
    def f(x, w):
        return bp.sum(bp.conv1d(x, w))  # the channels differ

    with pytest.raises(bp.ShapeError) as e:
        bp.grad(f)(np.ones((1, 2, 6)), np.ones((3, 4, 3)))
    assert "conv1d of (1, 2, 6) and (3, 4, 3)" in str(e.value) and "same C" in str(e.value)
