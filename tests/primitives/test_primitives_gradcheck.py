"""The check table: every registered op (primitive or composite, built in or a plugin's) on every sample input it
declares with itself (OpInfo, PyTorch's idea), generated from `bpmagic.ops.registry()`:

  * test_gradcheck_order1 / _order2: bp.gradcheck (central differences, per entry for these small arrays, plus
    random directions) of the op and of the gradient of <grad op, probe>, in float64;
  * test_matches_jax: the forward value, and the gradient of a random weighting of the output, against the op's
    JAX reference (an independent implementation), to 1e-10 relative;
  * test_every_op_declares_samples_and_reference fails naming each op that declares no samples or no reference;
    ops without a gradient say so (differentiable=False) and are still compared with JAX forward.

float64 arrays among a sample's arguments are differentiated; integer and boolean arrays, Python numbers and other
arguments are held fixed. Test ids read `tanh[0]`: the op and the index of its sample.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.ops.core import PRIMITIVES, op_info
from bpmagic.ops.samples import away0, distinct, normal, positive
from op_samples import OPS, SAMPLES

try:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
except ImportError:  # pragma: no cover - JAX is a test dependency; only the JAX comparisons need it
    jax = jnp = None

needs_jax = pytest.mark.skipif(jax is None, reason="JAX (a test dependency) is not installed: no reference to compare")


def _params(samples):
    return [pytest.param(s, id=s.id) for s in samples]


def _checked(order):
    return [s for s in SAMPLES if s.info.differentiable and s.diff and order in s.info.orders]


def test_every_op_declares_samples_and_reference():
    lacking = {name: [what for what, missing in
                      [("OpInfo", op_info(op) is None),
                       ("samples", op_info(op) is not None and op_info(op).samples is None),
                       ("reference", op_info(op) is not None and op_info(op).reference is None)] if missing]
               for name, op in OPS.items()}
    lacking = {name: what for name, what in lacking.items() if what}
    assert not lacking, "ops without samples or a JAX reference (declare them with the op): " + ", ".join(
        f"{name} (no {' / '.join(what)})" for name, what in sorted(lacking.items()))


def test_table_covers_the_ops():
    """Sanity: the registry holds the built-ins, and every op with samples has at least one."""
    assert {"add", "tanh", "matmul", "getitem", "conv2d", "softmax", "gelu", "var", "cumsum", "arcsin"} <= set(OPS)
    with_samples = {s.name for s in SAMPLES}
    empty = sorted(n for n, op in OPS.items() if op_info(op) and op_info(op).samples and n not in with_samples)
    assert not empty, f"ops whose samples() returned nothing: {empty}"


def test_differentiable_primitives_have_a_vjp():
    """A primitive without a VJP must say it is not differentiable (or the table would silently skip it)."""
    silent = sorted(n for n, p in PRIMITIVES.items() if p.vjp is None and p.op_info.differentiable)
    assert not silent, f"primitives with no VJP that do not declare differentiable=False: {silent}"


@pytest.mark.parametrize("s", _params(_checked(1)))
def test_gradcheck_order1(s):
    diff_args = [s.args[i] for i in s.diff]
    result = bp.gradcheck(lambda *d: s.flat(s.op, *d), *diff_args, order=1, **s.info.gradcheck)
    assert result, result


@pytest.mark.parametrize("s", _params(_checked(2)))
def test_gradcheck_order2(s):
    diff_args = [s.args[i] for i in s.diff]
    result = bp.gradcheck(lambda *d: s.flat(s.op, *d), *diff_args, order=2, **s.info.gradcheck)
    assert result, result


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, JAX gives {expected.shape}"
    if expected.dtype.kind not in "fc":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12 * scale + 1e-300, err_msg=what)


@needs_jax
@pytest.mark.parametrize("s", _params(SAMPLES))
def test_matches_jax(s):
    reference = s.info.reference(jax)
    diff_args = [s.args[i] for i in s.diff]
    ours = np.asarray(s.flat(s.op, *diff_args))
    theirs = s.call(reference, *diff_args)
    if isinstance(theirs, (list, tuple)):
        theirs = jnp.concatenate([jnp.ravel(t) for t in theirs])
    _assert_close(ours, theirs, f"{s.id}: forward value")
    if not (s.info.differentiable and s.diff):
        return
    w = np.random.default_rng(1).standard_normal(ours.shape)
    nums = tuple(range(len(diff_args)))
    g_ours = bp.grad(lambda *d: bp.sum(s.flat(s.op, *d) * w), argnums=nums)(*diff_args)

    def weighted(*d):
        out = s.call(reference, *d)
        if isinstance(out, (list, tuple)):
            out = jnp.concatenate([jnp.ravel(t) for t in out])
        return jnp.sum(out * w)

    g_theirs = jax.grad(weighted, argnums=nums)(*diff_args)
    for k, (a, e) in enumerate(zip(_leaves(g_ours), _leaves(g_theirs))):
        _assert_close(a, e, f"{s.id}: gradient, leaf {k}")


# -- coverage: every built-in differentiable primitive is exercised by the table, forward or backward ----------------
def _primitives_used(s):
    diff_args = [s.args[i] for i in s.diff]
    names = {e.primitive.name for e in bp.trace(lambda *d: s.flat(s.op, *d), *diff_args).eqns}
    if s.info.differentiable and s.diff:
        out = np.asarray(s.flat(s.op, *diff_args))
        w = np.ones(out.shape)
        g = bp.grad(lambda *d: bp.sum(s.flat(s.op, *d) * w), argnums=tuple(range(len(diff_args))))
        names |= {e.primitive.name for e in bp.trace(g, *diff_args).eqns}
    return names


def test_every_builtin_differentiable_primitive_is_gradchecked():
    builtin = {name for name, p in PRIMITIVES.items()
               if p.vjp is not None and getattr(p.impl, "__module__", "").startswith("bpmagic.")}
    assert {"add", "matmul", "getitem", "scatter_add", "unfold", "fold", "pad2d", "max", "sum", "where", "cumsum",
            "erf"} <= builtin
    used = set()
    for s in _checked(1):
        try:
            used |= _primitives_used(s)
        except bp.BackpropError:  # a crash fails the sample's own tests; here it just covers nothing
            pass
    missing = builtin - used
    assert not missing, f"built-in differentiable primitives that no sample reaches: {sorted(missing)}"


# -- the Tracer's operators and methods (gradcheck's finite differences run them on plain NumPy arrays) -------------
def _const(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


IDX_REP = np.array([0, 2, 0, 1, 2, 2])
K34 = _const(5, 3, 4)


def case(id, fn, *gens):
    rng = np.random.default_rng(zlib.crc32(id.encode()))
    return pytest.param(fn, [g(rng) for g in gens], id=id)


def shaped(gen, *shape):
    return lambda rng: gen(rng, *shape)


def distinct1(*shape):
    return lambda rng: distinct(rng, shape)[0]


OPERATOR_CASES = [
    case("op:+", lambda a, b: a + b, shaped(normal, 3, 1), shaped(normal, 1, 4)),
    case("op:-", lambda a, b: a - b, shaped(normal, 2, 3, 4), shaped(normal, 4)),
    case("op:*", lambda a, b: a * b, shaped(normal), shaped(normal, 3)),
    case("op:/", lambda a, b: a / b, shaped(normal, 3, 4), shaped(away0, 3, 1)),
    case("op:**", lambda a, b: a ** b, shaped(positive, 3, 4), shaped(normal, 4)),
    case("op:**2", lambda a: a ** 2, shaped(normal, 3, 4)),
    case("op:@", lambda a, b: a @ b, shaped(normal, 2, 3, 4), shaped(normal, 4, 2)),
    case("op:unary-", lambda a: -a, shaped(normal, 3, 4)),
    case("op:abs()", lambda a: abs(a), shaped(away0, 3, 4)),
    case("op:radd-const-array", lambda a: K34 + a, shaped(normal, 3, 4)),
    case("op:rsub-scalar", lambda a: 1.0 - a, shaped(normal, 3, 4)),
    case("op:rmul-const-array", lambda a: K34 * a, shaped(normal, 4)),
    case("op:rtruediv-scalar", lambda a: 2.0 / a, shaped(away0, 3, 4)),
    case("op:rpow-scalar", lambda a: 3.0 ** a, shaped(normal, 3, 4)),
    case("op:rmatmul-const-array", lambda a: K34 @ a, shaped(normal, 4, 2)),
    case("op:x[...]-mixed", lambda a: a[1:, None, ::-2], shaped(normal, 3, 4)),
    case("op:x[intarray]", lambda a: a[IDX_REP], shaped(normal, 3, 4)),
    case("op:x.reshape(tuple)", lambda a: a.reshape((4, 3)), shaped(normal, 3, 4)),
    case("op:x.reshape(*ints)", lambda a: a.reshape(2, -1), shaped(normal, 3, 4)),
    case("op:x.flatten()", lambda a: a.flatten(), shaped(normal, 3, 4)),
    case("op:x.T", lambda a: a.T, shaped(normal, 3, 4)),
    case("op:x.transpose(axes)", lambda a: a.transpose(2, 0, 1), shaped(normal, 2, 3, 4)),
    case("op:x.sum(axis)", lambda a: a.sum(1), shaped(normal, 3, 4)),
    case("op:x.sum(axis,keepdims)", lambda a: a.sum(axis=0, keepdims=True), shaped(normal, 3, 4)),
    case("op:x.mean()", lambda a: a.mean(), shaped(normal, 3, 4)),
    case("op:x.mean(axis)", lambda a: a.mean(axis=-1), shaped(normal, 3, 4)),
    case("op:x.max(axis)", lambda a: a.max(1), distinct1(3, 4)),
    case("op:x.max()", lambda a: a.max(), distinct1(3, 4)),
    case("op:chain", lambda a, b: ((a @ b).T ** 2).sum(0) / (1.0 + abs(b).mean()), shaped(normal, 3, 4),
         shaped(normal, 4, 2)),
]


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("fn,args", OPERATOR_CASES)
def test_operators_gradcheck(fn, args, order):
    result = bp.gradcheck(fn, *args, order=order)
    assert result, result


# -- specific properties --------------------------------------------------------------------------------------------
def test_stop_gradient_blocks_the_gradient():
    x = np.random.default_rng(1).standard_normal((3, 4))
    g = bp.grad(lambda x: bp.sum(bp.stop_gradient(x) ** 2))(x)
    assert g.shape == x.shape and g.dtype == np.float64
    np.testing.assert_array_equal(g, np.zeros_like(x))
    # only the path outside stop_gradient contributes: d/dx sum(sg(x) * x) = x
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.stop_gradient(x) * x))(x), x)
    # and the same holds at second order
    h = bp.grad(lambda x: bp.sum(bp.grad(lambda y: bp.sum(bp.stop_gradient(y) * y ** 2))(x)))(x)
    np.testing.assert_allclose(h, 2.0 * x, rtol=1e-14)


def test_stop_gradient_value_is_identity():
    x = np.random.default_rng(2).standard_normal((2, 3))
    np.testing.assert_array_equal(bp.stop_gradient(x), x)


def _dropout_mask(x, rate, key):
    return np.asarray(bp.random_uniform(key, x.shape, x.dtype)) >= rate


def test_dropout_gradient_is_the_scaled_mask():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    rate, key = 0.4, 12
    mask = _dropout_mask(x, rate, key)
    assert 0 < mask.sum() < mask.size
    out = bp.dropout(x, rate, key=key)
    np.testing.assert_allclose(out, np.where(mask, x / (1 - rate), 0.0), rtol=1e-15)
    g = bp.grad(lambda x: bp.sum(bp.dropout(x, rate, key=key) * w))(x)
    np.testing.assert_allclose(g, np.where(mask, w / (1 - rate), 0.0), rtol=1e-15)


def test_dropout_is_reproducible_by_key():
    x = np.random.default_rng(4).standard_normal((8, 8))
    a, b = bp.dropout(x, 0.5, key=5), bp.dropout(x, 0.5, key=5)
    np.testing.assert_array_equal(a, b)
    c = bp.dropout(x, 0.5, key=6)
    assert not np.array_equal(a, c)
    # traced and eager runs agree, and the gradient uses the same mask as the forward pass
    g = bp.grad(lambda x: bp.sum(bp.dropout(x, 0.5, key=5)))(x)
    np.testing.assert_array_equal(g != 0, a != 0)


def test_dropout_rate_statistics_and_rate0():
    x = np.ones((40, 50))
    kept = np.mean(bp.dropout(x, 0.3, key=0) != 0)
    assert 0.6 < kept < 0.8
    np.testing.assert_array_equal(bp.dropout(x, 0.0, key=0), x)


@pytest.mark.parametrize("shape,kernel,stride", [((2, 3, 5, 5), (2, 2), 1), ((1, 2, 5, 6), (2, 3), 2),
                                                 ((1, 1, 4, 4), (3, 3), 1), ((2, 1, 6, 5), (1, 1), 2)],
                         ids=["k2-s1", "k2x3-s2", "k3-s1", "k1-s2"])
def test_unfold_fold_are_adjoint(shape, kernel, stride):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    cols = bp.unfold(x, kernel=kernel, stride=stride)
    y = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, y)
    rhs = np.vdot(x, bp.fold(y, image_shape=shape[2:], stride=stride))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_astype_float32_gradient_value_and_dtype():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4)).astype(np.float32)
    g = bp.grad(lambda x: bp.sum(bp.astype(x, np.float32) * w))(x)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, w.astype(np.float64))
    # and back: a float32 argument gets a float32 gradient
    x32 = x.astype(np.float32)
    g32 = bp.grad(lambda x: bp.sum(bp.astype(x, np.float64) * w.astype(np.float64)))(x32)
    assert g32.dtype == np.float32
    np.testing.assert_array_equal(g32, w)
