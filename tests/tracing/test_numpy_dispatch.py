"""NumPy on traced values: np.* functions, ufuncs and ndarray methods trace and differentiate like bpmagic's own ops.

Each NumPy spelling is checked against the same computation written with bpmagic's ops: equal values, equal
gradients, and the same primitives in the graph (so the NumPy spelling is not a slower or different program).
"""
import inspect

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.tracing.numpy_dispatch import _numpy_object, dispatched_names, numpy_table
from bpmagic.ops.core import op_info

rng = np.random.default_rng(0)
X = rng.standard_normal((4, 3))
W = rng.standard_normal((3, 5))
B = rng.standard_normal(5)
IDX = np.array([2, 0, 2])

# (what the learner writes with NumPy, the same with bpmagic's ops); each maps (x, W, b) to an array
PAIRS = {
    "np.tanh(x @ W + b)": (lambda x, W, b: np.tanh(x @ W + b), lambda x, W, b: bp.tanh(x @ W + b)),
    "np.sum(h, axis=0)": (lambda x, W, b: np.sum(x @ W, axis=0), lambda x, W, b: bp.sum(x @ W, axis=0)),
    "np.sum(h, 0, keepdims=True)": (lambda x, W, b: np.sum(x @ W, 0, keepdims=True),
                                    lambda x, W, b: bp.sum(x @ W, axis=0, keepdims=True)),
    "np.mean(h)": (lambda x, W, b: np.mean(x @ W), lambda x, W, b: bp.mean(x @ W)),
    "np.mean(h, axis=1, keepdims=True)": (lambda x, W, b: np.mean(x @ W, axis=1, keepdims=True),
                                          lambda x, W, b: bp.mean(x @ W, axis=1, keepdims=True)),
    "np.maximum(z, 0)": (lambda x, W, b: np.maximum(x @ W - 0.1, 0), lambda x, W, b: bp.maximum(x @ W - 0.1, 0)),
    "np.minimum(z, b)": (lambda x, W, b: np.minimum(x @ W, b), lambda x, W, b: bp.minimum(x @ W, b)),
    "np.exp, np.log, np.abs": (lambda x, W, b: np.log(np.abs(x @ W) + 1) * np.exp(-b),
                               lambda x, W, b: bp.log(bp.abs(x @ W) + 1) * bp.exp(-b)),
    "np.sqrt(np.square(h) + 1)": (lambda x, W, b: np.sqrt(np.square(x @ W) + 1),
                                  lambda x, W, b: bp.sqrt(bp.square(x @ W) + 1)),
    "np.power, np.divide, np.subtract": (lambda x, W, b: np.divide(np.power(x @ W, 2), np.subtract(3.0, np.tanh(b))),
                                         lambda x, W, b: (x @ W) ** 2 / (3.0 - bp.tanh(b))),
    "np.where(m, a, b)": (lambda x, W, b: np.where(x @ W > 0, x @ W, 0.1 * b),
                          lambda x, W, b: bp.where(x @ W > 0, x @ W, 0.1 * b)),
    "np.concatenate": (lambda x, W, b: np.concatenate([x @ W, np.tanh(x @ W)], axis=1),
                       lambda x, W, b: bp.concatenate([x @ W, bp.tanh(x @ W)], axis=1)),
    "np.stack": (lambda x, W, b: np.stack([b, b * 2], axis=0), lambda x, W, b: bp.stack([b, b * 2], axis=0)),
    "np.clip(h, a_min=, a_max=)": (lambda x, W, b: np.clip(x @ W, a_min=-0.5, a_max=0.5),
                                   lambda x, W, b: bp.clip(x @ W, -0.5, 0.5)),
    "np.max(h, axis=1), np.min": (lambda x, W, b: np.max(x @ W, axis=1) - np.min(b),
                                  lambda x, W, b: bp.max(x @ W, axis=1) - bp.min(b)),
    "np.matmul, np.dot, np.transpose": (lambda x, W, b: np.dot(np.transpose(np.matmul(x, W)), x),
                                        lambda x, W, b: bp.transpose(x @ W) @ x),
    "np.reshape, np.swapaxes, np.expand_dims, np.squeeze": (
        lambda x, W, b: np.squeeze(np.expand_dims(np.swapaxes(np.reshape(x @ W, (2, 2, 5)), 0, 1), 0)),
        lambda x, W, b: bp.squeeze(bp.expand_dims(bp.swapaxes(bp.reshape(x @ W, (2, 2, 5)), 0, 1), 0))),
    "np.broadcast_to, np.take": (lambda x, W, b: np.broadcast_to(b, (3, 5)) * np.take(x @ W, IDX, axis=0),
                                 lambda x, W, b: bp.broadcast_to(b, (3, 5)) * bp.take(x @ W, IDX, axis=0)),
    "ndarray (op) tracer": (lambda x, W, b: X.T @ np.tanh(x @ W) + np.float64(2) * b - X[:1, :1] ** b,
                            lambda x, W, b: bp.matmul(X.T, bp.tanh(x @ W)) + 2.0 * b - X[:1, :1] ** b),
    "h.sum(axis=0) h.mean() h.max(axis=1, keepdims=True) h.min()": (
        lambda x, W, b: (x @ W).sum(axis=0) + (x @ W).mean() + (x @ W).max(axis=1, keepdims=True) + b.min(),
        lambda x, W, b: bp.sum(x @ W, axis=0) + bp.mean(x @ W) + bp.max(x @ W, axis=1, keepdims=True) + bp.min(b)),
    "h.clip h.reshape h.T h.transpose h.dot h.flatten h.squeeze h.swapaxes h.take": (
        lambda x, W, b: (x @ W).clip(-1, 1).reshape(2, -1).T.transpose(1, 0).flatten().reshape(1, 20).squeeze()
        + x.dot(W).swapaxes(0, 1).take(np.arange(4), axis=1).flatten(),
        lambda x, W, b: bp.squeeze(bp.reshape(bp.flatten(bp.transpose(bp.transpose(bp.reshape(
            bp.clip(x @ W, -1, 1), (2, -1))), (1, 0))), (1, 20)))
        + bp.flatten(bp.take(bp.swapaxes(bp.matmul(x, W), 0, 1), np.arange(4), axis=1))),
}


WEIGHTS = rng.standard_normal(64)


def as_scalar(fn):
    """fn reduced with fixed random weights, so both spellings are compared on the same scalar."""
    weights = WEIGHTS

    def f(x, W, b):
        out = fn(x, W, b)
        return bp.sum(bp.flatten(out) * weights[:out.size])

    return f


@pytest.mark.parametrize("spelling", list(PAIRS))
def test_numpy_spelling_traces_and_differentiates_like_bpmagic(spelling):
    with_numpy, with_bp = PAIRS[spelling]
    np_graph, bp_graph = bp.trace(with_numpy, X, W, B), bp.trace(with_bp, X, W, B)
    assert sorted(e.primitive.name for e in np_graph.eqns) == sorted(e.primitive.name for e in bp_graph.eqns)
    f_np, f_bp = as_scalar(with_numpy), as_scalar(with_bp)
    for got, want in zip(bp.grad(f_np, argnums=(0, 1, 2))(X, W, B), bp.grad(f_bp, argnums=(0, 1, 2))(X, W, B)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert bp.gradcheck(f_np, X, W, B)


def test_the_numpy_names_that_dispatch():
    names = dispatched_names()
    print("NumPy names that run bpmagic's ops on traced values:", " ".join(names))
    # what dispatches on this branch; new ops (and plugins) add to it through their OpInfo.numpy_name
    today = {"abs", "absolute", "add", "argmax", "astype", "broadcast_to", "clip", "concat", "concatenate",
             "divide", "dot", "equal", "exp", "expand_dims", "full_like", "greater", "greater_equal", "less",
             "less_equal", "log", "matmul", "max", "maximum", "mean", "min", "minimum", "multiply", "negative",
             "not_equal", "ones_like", "permute_dims", "pow", "power", "reshape", "sign", "sqrt", "square",
             "squeeze", "stack", "subtract", "sum", "swapaxes", "take", "tanh", "transpose", "true_divide",
             "where", "zeros_like"}
    assert today <= set(names)
    table = numpy_table()
    for name in names:
        assert getattr(np, name) in table


def test_every_op_with_samples_runs_the_same_through_its_numpy_name():
    # grows with the registry: every op that declares samples and a NumPy name is called both ways on traced values
    checked = []
    for name, op in bp.ops.registry().items():
        info = op_info(op)
        for target in [_numpy_object(n) for n in (info.numpy_names if info else ())]:
            if info.samples is None or target is None or numpy_table().get(target) is not op:
                continue
            checked += _run_both_ways(name, op, info, target)
    assert {"zeros_like", "ones_like", "full_like", "inv", "svd", "cross", "median", "remainder"} <= set(checked)


def _run_both_ways(name, op, info, target):
    checked = []
    for args, kwargs in info.samples(np.random.default_rng(1)):
        # float arrays are traced; integer ones (indices, repeat counts) stay fixed, as in the op's samples
        if not any(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in args):
            continue  # np.zeros((3, 4)) has no traced argument to dispatch on
        if not _accepts(target, args, kwargs):
            continue  # a second NumPy name with fewer arguments (np.linalg.cross has no axisa)
        traced = lambda *a: target(*a, **kwargs)  # noqa: E731
        direct = lambda *a: op(*a, **kwargs)  # noqa: E731
        arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        got = _run_traced(traced, args, arrays)
        want = _run_traced(direct, args, arrays)
        np.testing.assert_allclose(got, want, err_msg=f"{name}{args!r:.200}")
        checked.append(name)
    return checked


def _accepts(target, args, kwargs):
    try:
        inspect.signature(target).bind(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:  # no signature (a ufunc): it takes what the op takes
        pass
    return True


def _run_traced(fn, args, arrays):
    def f(*traced):
        full = list(args)
        for i, t in zip(arrays, traced):
            full[i] = t
        return fn(*full)

    graph = bp.trace(f, *[args[i] for i in arrays])
    from bpmagic.ops.evaluate import evaluate

    return np.asarray(evaluate(graph, [args[i] for i in arrays], np)[0])


# -- NumPy arguments that make no sense for a traced value -------------------------------------------------------
def test_out_given_a_value_is_refused_out_none_is_fine():
    assert bp.trace(lambda x: np.sum(x, axis=0, out=None), X)
    with pytest.raises(bp.BackpropError, match=r"line \d+: np.sum\(\.\.\., out=\.\.\.\): .*Assign the result"):
        bp.trace(lambda x: np.sum(x, axis=0, out=np.zeros(3)), X)
    with pytest.raises(bp.BackpropError, match=r"line \d+: np.tanh\(\.\.\., out=\.\.\.\)"):
        bp.trace(lambda x: np.tanh(x, out=np.zeros_like(X)), X)
    with pytest.raises(bp.BackpropError, match=r"line \d+: \.sum\(out=\.\.\.\)|np.sum\(\.\.\., out="):
        bp.trace(lambda x: x.sum(out=np.zeros(())), X)


def test_dtype_casts_and_masks_are_refused():
    x32 = X.astype(np.float32)
    assert bp.trace(lambda x: np.sum(x, dtype=np.float64), x32).outputs[0].dtype == np.float64
    assert bp.trace(lambda x: np.exp(x, dtype=np.float64), x32).outputs[0].dtype == np.float64
    with pytest.raises(bp.BackpropError, match=r"where=.*np.where\(mask, x, 0\)"):
        bp.trace(lambda x: np.sum(x, where=X > 0), X)
    with pytest.raises(bp.BackpropError, match=r"np.tanh\(\.\.\., where=\.\.\.\): use np.where"):
        bp.trace(lambda x: np.tanh(x, where=X > 0), X)
    with pytest.raises(bp.BackpropError, match=r"initial="):
        bp.trace(lambda x: np.max(x, initial=0.0), X)


def test_a_numpy_function_without_a_bpmagic_op_is_one_message_naming_the_line():
    def f(x):
        values = np.unique(x)
        return np.sum(values)

    with pytest.raises(bp.BackpropError) as info:
        bp.trace(f, X)
    msg = str(info.value)
    assert msg.startswith(f"test_numpy_dispatch.py, line {f.__code__.co_firstlineno + 1}: np.unique has no "
                          "bpmagic equivalent")
    assert "values = np.unique(x)" in msg and "shape depends on the values" in msg and "np.where" in msg
    # a function with no op and no closer advice points to the ops and to @bp.primitive
    with pytest.raises(bp.BackpropError, match=r"np.interp has no bpmagic equivalent.*@bp.primitive"):
        bp.trace(lambda x: np.interp(x, [0.0, 1.0], [1.0, 2.0]), X)
    # another NumPy module is named as the user wrote it, with advice of its own
    with pytest.raises(bp.BackpropError, match=r"^test_numpy_dispatch.py, line \d+: np.linalg.tensorinv has no "
                                               r".*np.linalg has solve, inv, det"):
        bp.trace(lambda x: np.linalg.tensorinv(x[:2, :2]), X)
    with pytest.raises(bp.BackpropError, match=r"np.linalg.eig has no .*Use np.linalg.eigh for a symmetric matrix"):
        bp.trace(lambda x: np.linalg.eig(x[:2, :2]), X)
    with pytest.raises(bp.BackpropError, match=r"np.add.reduce\(\.\.\.\) is not supported.*np.sum"):
        bp.trace(lambda x: np.add.reduce(x), X)


def test_ndarray_methods_route_through_the_registry():
    # .var exists on ndarray; its op may not be on this branch yet, and it must work as soon as it is
    if "var" in bp.ops.registry() or np.var in numpy_table():
        np.testing.assert_allclose(bp.trace(lambda x: x.var(axis=0), X).eqns and
                                   _run_traced(lambda x: x.var(axis=0), (X,), [0]), X.var(axis=0))
    else:
        with pytest.raises(bp.BackpropError, match=r"line \d+: \.var\(\) has no bpmagic equivalent yet"):
            bp.trace(lambda x: x.var(), X)
    np.testing.assert_allclose(_run_traced(lambda x: x.argmax(axis=1), (X,), [0]), X.argmax(axis=1))


def test_shape_questions_and_in_place_edits():
    assert bp.trace(lambda x: x * (np.shape(x)[0] + np.ndim(x) + np.size(x)), X)
    with pytest.raises(bp.TracingError, match=r"line \d+: .*cannot be changed in place.*np.where"):
        def edit(x):
            x[0] = 1.0
            return x

        bp.trace(edit, X)


def test_numpy_constants_on_traced_values_are_constants_of_the_graph():
    def f(x):
        h = np.zeros_like(x) + np.ones_like(x, dtype=np.float32) * np.full_like(x, 2.0)
        return np.sum(np.tanh(x) + h)

    graph = bp.trace(f, X)
    assert len(graph.inputs) == 1 and graph.consts  # zeros_like(x) is a constant, not a new input
    np.testing.assert_allclose(bp.grad(f)(X), 1 - np.tanh(X) ** 2)
