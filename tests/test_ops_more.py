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
