"""Elementwise fusion, checked without a GPU: the generated kernel bodies are evaluated with NumPy (the same
strings CuPy compiles), groups never cross the guard, and an executor that fuses gives the same training step."""
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.backends.numpy_backend import NumpyBackend
from bpmagic.ops.evaluate import evaluate
from bpmagic.compile.fusion import C_TYPES, find_groups, numpy_kernel
from bpmagic.ops import PRIMITIVES
from cupy_host import EagerReplay  # a CUDA graph's replay, run directly

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


class FusingNumpy(NumpyBackend):
    """NumPy plus kernels made from fused bodies: the executor's fusion path, runnable on a CPU."""

    def elementwise_kernel(self, in_params, out_params, body, name, preamble):
        self.kernels = getattr(self, "kernels", 0) + 1
        return numpy_kernel(in_params, out_params, body)


def mlp_step(size):
    """(loss_fn, params, X, Y) of one of the benchmark's MLP sizes."""
    import run as bench

    cfg, params, X, Y = bench.make_problem(size)
    return bench.loss_fn_of(cfg), params, X, Y


def groups_of(graph):
    last_use = {}
    for k, e in enumerate(graph.eqns):
        for v in e.inputs:
            last_use[v] = k
    outputs = set(graph.outputs)
    return find_groups(graph.eqns, lambda v, k: v in outputs or last_use.get(v, -1) > k)


@pytest.mark.parametrize("size", ["xor", "digits"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_fused_body_computes_what_its_equations_do(size, optimizer):
    loss_fn, params, X, Y = mlp_step(size)
    opt = bp.optim.SGD(lr=0.1, momentum=0.9) if optimizer == "sgd" else bp.optim.Adam(lr=0.01)
    step = bp.compile_step(loss_fn, {k: v.astype(np.float64) for k, v in params.items()}, X.astype(np.float64), Y,
                           optimizer=opt, backend="numpy", stats=True)
    step(X.astype(np.float64), Y)
    plan = step.plan
    values = {}
    inputs = step.inputs(X.astype(np.float64), Y)
    values.update(zip(plan.graph.inputs, inputs))
    values.update({v: np.asarray(c) for v, c in plan.graph.consts.items()})
    evaluate(plan.graph, inputs, np, on_value=lambda e, value: values.__setitem__(e.outputs[0], value))
    groups = groups_of(plan.graph)
    assert len(groups) >= 5
    for group in groups:
        outs = [np.empty(v.shape, v.dtype) for v in group.outputs]
        numpy_kernel(*group.params(), group.body)(*[values[v] for v in group.inputs], *outs)
        for v, out in zip(group.outputs, outs):
            np.testing.assert_allclose(out, values[v], rtol=1e-12, atol=1e-15, err_msg=group.body)


def test_groups_are_runs_of_one_shape_and_locals_stop_blowup():
    def f(x):
        for _ in range(12):
            x = bp.tanh(x) * bp.tanh(x)  # each value read twice: inlining would double the text 12 times
        return bp.sum(x)

    graph = bp.trace(f, np.linspace(-1, 1, 6))
    groups = groups_of(graph)
    assert len(groups) == 1 and len(groups[0].eqns) == 36
    assert len(groups[0].body) < 2000
    x = np.linspace(-1, 1, 6)
    out = np.empty(6)
    numpy_kernel(*groups[0].params(), groups[0].body)(x, out)
    ref = x.copy()
    for _ in range(12):
        ref = np.tanh(ref) ** 2
    np.testing.assert_allclose(out, ref, rtol=1e-14)


def test_every_template_computes_what_its_primitive_does():
    """Each fused template (declared with its primitive), evaluated with NumPy, equals the primitive's impl."""
    from bpmagic.compile.fusion import numpy_namespace

    ns = numpy_namespace()
    rng = np.random.default_rng(0)
    fused = {name: p for name, p in PRIMITIVES.items() if p.fused}
    assert {"add", "tanh", "sigmoid", "where", "astype"} <= set(fused)
    for name, prim in fused.items():
        arity = len([i for i in range(3) if "{%d}" % i in prim.fused])
        # inside every elementwise domain used here (log, sqrt, arcsin, ...), away from 0 and from ties
        args = [rng.uniform(0.1, 0.9, 5) for _ in range(arity)]
        if name == "where":
            args[0] = args[0] > 0.5
        params = {"dtype": np.dtype(np.float64)} if name == "astype" else {}
        expected = np.asarray(prim.impl(np, *args, **params))
        text = prim.fused.format(*(f"x{i}" for i in range(arity)), T=C_TYPES[str(expected.dtype)])
        got = np.asarray(eval(text, dict(ns, **{f"x{i}": a for i, a in enumerate(args)})))  # noqa: S307
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15, err_msg=f"{name}: {text}")


@pytest.mark.parametrize("size", ["xor", "digits"])
def test_a_fusing_executor_trains_like_the_plain_one(size, monkeypatch):
    loss_fn, params, X, Y = mlp_step(size)
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    plain = bp.compile_step(loss_fn, {k: v.copy() for k, v in params64.items()}, X.astype(np.float64), Y,
                            optimizer=bp.optim.Adam(lr=0.01), backend="numpy")
    fusing_backend = FusingNumpy()
    monkeypatch.setattr("bpmagic.train.step.get_backend", lambda *a, **k: fusing_backend)
    fused = bp.compile_step(loss_fn, {k: v.copy() for k, v in params64.items()}, X.astype(np.float64), Y,
                            optimizer=bp.optim.Adam(lr=0.01), backend="numpy")
    for _ in range(5):
        assert fused(X.astype(np.float64), Y) == pytest.approx(plain(X.astype(np.float64), Y), rel=1e-12)
    assert fusing_backend.kernels >= 5
    assert re.search(r"\n    _g\d+\(", fused.source)  # the step calls fused kernels
    for k in params64:
        np.testing.assert_allclose(fused.params[k], plain.params[k], rtol=1e-10, atol=1e-13)
    # a NaN still leaves the parameters untouched: fused groups never cross the guard
    before = {k: v.copy() for k, v in fused.params.items()}
    bad = X.astype(np.float64).copy()
    bad[0, 0] = np.nan
    with pytest.raises(bp.NonFiniteError):
        fused(bad, Y)
    for k in before:
        np.testing.assert_array_equal(fused.params[k], before[k])


class ReplayingNumpy(FusingNumpy):
    def matmul_kernel(self, precision):
        self.precision = precision
        return lambda a, b, out: np.matmul(a, b, out=out)

    def graph_replay(self, parts, static):
        self.replay = EagerReplay(parts, static)
        return self.replay


def test_the_step_split_for_cuda_graphs_trains_like_the_plain_one(monkeypatch):
    loss_fn, params, X, Y = mlp_step("digits")
    X = X.astype(np.float64)
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    opt_plain, opt_graph = bp.optim.SGD(lr=0.1, momentum=0.9), bp.optim.SGD(lr=0.1, momentum=0.9)
    plain = bp.compile_step(loss_fn, {k: v.copy() for k, v in params64.items()}, X, Y, optimizer=opt_plain,
                            backend="numpy")
    backend = ReplayingNumpy()
    monkeypatch.setattr("bpmagic.train.step.get_backend", lambda *a, **k: backend)
    graphed = bp.compile_step(loss_fn, {k: v.copy() for k, v in params64.items()}, X, Y, optimizer=opt_graph,
                              backend="numpy", matmul_precision="tf32")
    halves = [X[:32], X[32:]], [Y[:32], Y[32:]]
    for i in range(6):
        if i == 3:  # a new learning rate reaches the static hyperparameter arrays
            opt_plain.lr = opt_graph.lr = 0.05
        xb, yb = halves[0][i % 2], halves[1][i % 2]
        assert graphed(xb, yb) == pytest.approx(plain(xb, yb), rel=1e-12)
    source = graphed.source
    assert "def _part_a(" in source and "def _part_b(" in source and "_mm(" in source
    assert backend.precision == "tf32" and backend.replay.launches == 12
    for k in params64:
        np.testing.assert_allclose(graphed.params[k], plain.params[k], rtol=1e-10, atol=1e-13)
    before = {k: v.copy() for k, v in graphed.params.items()}
    bad = X[:32].copy()
    bad[3, 3] = np.inf
    with pytest.raises(bp.NonFiniteError), np.errstate(invalid="ignore", over="ignore"):
        graphed(bad, Y[:32])
    for k in before:
        np.testing.assert_array_equal(graphed.params[k], before[k])


def test_the_split_takes_again_a_view_of_a_view_that_the_second_half_reads():
    """x.T reshaped is a view of a view, made before the guard and read after it: the second CUDA graph cannot see
    the first one's locals, so it must make both again (it once made only the outer one: a NameError at capture,
    and the step fell back to running eagerly with a warning)."""
    from bpmagic.compile.executor import Executable

    def f(W, x):
        v2 = bp.reshape(x.T, (2, 6))
        return bp.sum(v2 @ W), W - 0.1 * bp.sum(v2)

    W, x = np.ones((6, 2)), np.arange(12.0).reshape(4, 3)
    exe = Executable(bp.trace(f, W, x), ReplayingNumpy(), donate={1: 0}, guards=[0], cuda_graph=True)
    assert [exe.plan.instrs[i].eqns[0].primitive.name for i in exe.plan.retake] == ["transpose", "reshape"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed capture warns
        loss, new = exe(W.copy(), x)
    assert exe.run.replay not in (None, False), "the step runs as replayed graphs"
    assert float(loss) == pytest.approx(float(np.sum(x.T.reshape(2, 6) @ W)))
    np.testing.assert_allclose(new, W - 0.1 * x.sum())


def test_precision_option_is_checked():
    loss_fn, params, X, Y = mlp_step("xor")
    with pytest.raises(bp.BackpropError, match="matmul_precision"):
        bp.compile_step(loss_fn, params, X, Y, backend="numpy", matmul_precision="fp8")


@pytest.fixture
def cupy_backend():
    from bpmagic.backends import available_backends

    reason = available_backends()["cupy"].unavailable_reason()
    if reason:
        pytest.skip(f"cupy backend unusable here: {reason}")
    return "cupy"


@pytest.mark.gpu
@pytest.mark.parametrize("size", ["xor", "digits"])
def test_cupy_graph_replay_equals_eager_and_numpy(cupy_backend, size):
    loss_fn, params, X, Y = mlp_step(size)
    steps = {}
    for name, backend, graph in [("numpy", "numpy", False), ("eager", "cupy", False), ("graph", "cupy", True)]:
        steps[name] = bp.compile_step(loss_fn, {k: v.copy() for k, v in params.items()}, X, Y,
                                      optimizer=bp.optim.SGD(lr=0.05, momentum=0.9), backend=backend,
                                      cuda_graph=graph)
    for i in range(5):
        losses = {name: step(X, Y) for name, step in steps.items()}
        assert losses["graph"] == pytest.approx(losses["eager"], rel=1e-5)
        assert losses["graph"] == pytest.approx(losses["numpy"], rel=1e-4)
    source = steps["graph"].source
    assert "_part_a" in source and "_mm(" in source  # split at the guard, capturable matmul
    assert re.search(r"\n    _g\d+\(", source)  # fused kernels
    assert steps["graph"].plan.executable.run.replay not in (None, False), "the step was not captured"
    for k in params:
        np.testing.assert_allclose(steps["graph"].params[k].get(), steps["eager"].params[k].get(), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.gpu
def test_cupy_tf32_and_bf16_matmuls_train(cupy_backend):
    loss_fn, params, X, Y = mlp_step("digits")
    for precision in ("tf32", "bf16"):
        step = bp.compile_step(loss_fn, {k: v.copy() for k, v in params.items()}, X, Y, backend="cupy",
                               optimizer=bp.optim.SGD(lr=0.1), matmul_precision=precision)
        first = step(X, Y)
        for _ in range(50):
            last = step(X, Y)
        assert last < first
