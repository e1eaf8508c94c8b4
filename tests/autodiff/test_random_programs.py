"""Random straight-line programs: bpmagic against JAX (CPU, float64), in value and gradient.

The programs and their interpreter are in support/random_programs.py: each program runs twice, with bpmagic and
with jax.numpy, and the gradient of its loss w.r.t. every input is compared.

Tests (all derandomized, so CI sees the same programs on every run):
  * test_value_and_grad_match_jax: bp.value_and_grad vs jax.value_and_grad w.r.t. all inputs (250 programs);
  * test_every_op_on_every_rank: every op of the table on inputs of rank 0 to 4 (3 programs per rank);
  * test_second_order_matches_jax: grad of <grad f, v> vs JAX's, for ops smooth everywhere (50 programs);
  * test_traced_*_compiled_matches_jax: bp.trace, then executor.evaluate and Executable(optimize(graph)) called on
    two data sets and the first again, for the forward graph and for the value_and_grad graph (30 programs each).

A failure prints the program (one line per step, with shapes; `loss` names the reduction), the data seed (inputs
and weights: see make_data) and the largest error. `--hypothesis-show-statistics` shows how often each op came up.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import bpmagic as bp
from bpmagic.compile import optimize
from bpmagic.compile.executor import Executable
from bpmagic.ops.evaluate import evaluate

from random_programs import ATOL, COMMON, OPS, RTOL, SMOOTH_OPS, Program, Step, make_data, programs, run_program


@pytest.fixture(autouse=True, scope="module")
def _jax_float64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


# ================================================================================================================
# comparison
# ================================================================================================================
def _check_close(what, got, want, prog, inputs, rtol=RTOL, atol=ATOL, note=""):
    got = np.asarray(got)
    want = np.asarray(want)
    problem = None
    if want.dtype != np.float64:
        problem = f"JAX computed in {want.dtype}: is jax_enable_x64 off?"
    elif got.shape != want.shape:
        problem = f"shape {got.shape}, JAX's {want.shape}"
    elif got.dtype != np.float64:
        problem = f"dtype {got.dtype}, expected float64"
    else:
        err = np.abs(got - want)
        bad = ~(err <= atol + rtol * np.abs(want))  # NaN counts as bad
        if bad.any():
            k = np.unravel_index(np.argmax(np.where(np.isnan(err), np.inf, err)), err.shape) if err.ndim else ()
            problem = (f"max |error| {np.nanmax(err) if not np.isnan(err).all() else np.nan:.3g} "
                       f"(rtol={rtol}, atol={atol}) in {int(bad.sum())} of {bad.size} entries; at {list(k)}: "
                       f"bpmagic {got[k]!r}, JAX {want[k]!r}")
    if problem:
        with np.printoptions(precision=6, threshold=50):
            raise AssertionError(
                f"{what}: {problem}\n{note}{prog!r}\n"
                f"input shapes: {[tuple(np.shape(x)) for x in inputs]}\n"
                f"bpmagic: {got!r}\nJAX:     {want!r}")


def _bp_call(what, prog, fn):
    try:
        return fn()
    except AssertionError:
        raise
    except Exception as e:
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}\n{prog!r}") from e


# XLA compiles each small kernel slowly on CPU (tens of ms); op-by-op (eager) JAX compiles every primitive for every
# new shape, so each program is compiled once as a whole instead, with the options that compile fastest. They are
# XLA debug options: where this XLA does not know them, compile with the defaults.
_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}


def _jax_compiled(fn, *args):
    global _COMPILE_OPTIONS
    lowered = jax.jit(fn).lower(*args)
    if _COMPILE_OPTIONS:
        try:
            return lowered.compile(_COMPILE_OPTIONS)
        except Exception:  # noqa: BLE001  (an option this jaxlib does not have)
            _COMPILE_OPTIONS = {}
    return lowered.compile()


def _finite_and_moderate(*arrays):
    # every entry checked: Python's max() would let a NaN after a number through (max(0.0, nan) is 0.0), and a NaN
    # from JAX is a singular point (hypot at the origin), where bpmagic's gradient is 0 by its rule (docs/ops.md)
    return all(np.isfinite(a).all() and np.abs(a).max(initial=0.0) < 1e12 for a in map(np.asarray, arrays))


def _jax_value_and_grad(prog, inputs, weights):
    argnums = tuple(range(prog.n_inputs))
    def f(*xs):
        return run_program(prog, "jax", xs, weights)

    value, grads = _jax_compiled(jax.value_and_grad(f, argnums=argnums), *inputs)(*inputs)
    value, grads = np.asarray(value), [np.asarray(g) for g in grads]
    # programs are built to stay finite; the rare one that overflows (exp(b) of a large b) is skipped
    assume(_finite_and_moderate(value, *grads))
    return value, grads


# ================================================================================================================
# the tests
# ================================================================================================================
def _check_first_order(prog):
    inputs, weights = make_data(prog)
    want_value, want_grads = _jax_value_and_grad(prog, inputs, weights)
    argnums = tuple(range(prog.n_inputs))
    def f(*xs):
        return run_program(prog, "bp", xs, weights)

    value, grads = _bp_call("bp.value_and_grad", prog, lambda: bp.value_and_grad(f, argnums=argnums)(*inputs))
    _check_close("value", value, want_value, prog, inputs)
    assert len(grads) == prog.n_inputs
    for i, (g, w) in enumerate(zip(grads, want_grads)):
        _check_close(f"gradient w.r.t. x{i}", g, w, prog, inputs)


@settings(max_examples=250, **COMMON)
@given(programs())
def test_value_and_grad_match_jax(prog):
    for s in prog.steps:
        event(f"op {s.op}")
    _check_first_order(prog)


@st.composite
def _every_op_programs(draw, ndim):
    """One input of rank `ndim`, and every op of the table that applies to it applied to it: each op on each rank,
    which random programs might miss (0-d values in particular)."""
    shape = tuple(draw(st.integers(1, 4 if ndim < 4 else 2)) for _ in range(ndim))  # rank 4: images for layers
    steps = []
    for name, op in OPS.items():
        made = op.gen(draw, [shape])  # only x0 to choose from
        if made is not None:
            args, params, out = made
            steps.append(Step(name, tuple(args), params, tuple(out)))
            event(f"op {name}")
    sinks = [(1 + k, draw(st.sampled_from(["sum", "mean"])), "fn") for k in range(len(steps))]
    return Program([shape], steps, sinks, draw(st.integers(0, 2 ** 32 - 1)))


@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
@settings(max_examples=3, **COMMON)
@given(data=st.data())
def test_every_op_on_every_rank(ndim, data):
    _check_first_order(data.draw(_every_op_programs(ndim), label="prog"))


@settings(max_examples=50, **COMMON)
@given(programs(ops=SMOOTH_OPS, max_steps=6))
def test_second_order_matches_jax(prog):
    """grad of <grad f, v> w.r.t. all inputs: a Hessian-vector product, through every VJP rule's own VJP."""
    inputs, weights = make_data(prog)
    _jax_value_and_grad(prog, inputs, weights)  # skips programs that overflow
    rng = np.random.default_rng(prog.seed ^ 0x5EED)
    probes = [rng.standard_normal(s) for s in prog.input_shapes]
    argnums = tuple(range(prog.n_inputs))

    def jax_outer(*xs):
        gs = jax.grad(lambda *ys: run_program(prog, "jax", ys, weights), argnums=argnums)(*xs)
        return sum(jnp.sum(g * v) for g, v in zip(gs, probes))

    def bp_outer(*xs):
        gs = bp.grad(lambda *ys: run_program(prog, "bp", ys, weights), argnums=argnums)(*xs)
        total = bp.sum(gs[0] * probes[0])
        for g, v in zip(gs[1:], probes[1:]):
            total = total + bp.sum(g * v)
        return total

    want_value, want_grads = _jax_compiled(jax.value_and_grad(jax_outer, argnums=argnums), *inputs)(*inputs)
    want_grads = [np.asarray(g) for g in want_grads]
    assume(_finite_and_moderate(want_value, *want_grads))
    value, grads = _bp_call("bp.value_and_grad of grad", prog,
                            lambda: bp.value_and_grad(bp_outer, argnums=argnums)(*inputs))
    note = "(second order: d/dx <grad f(x), v> for random probes v)\n"
    _check_close("<grad f, v>", value, np.asarray(want_value), prog, inputs, note=note)
    for i, (g, w) in enumerate(zip(grads, want_grads)):
        # a second derivative is often a near-cancellation of terms of order 1 (arcsin(0.9 tanh(a))'' is
        # 4.6e-6 where its terms are ~1): float64 rounding of those terms is ~1e-12 absolute, in either library
        _check_close(f"second-order gradient w.r.t. x{i}", g, w, prog, inputs, atol=1e-10, note=note)


def _check_compiled(prog, bp_fn, jax_fn, labels):
    """Trace bp_fn(weights), run the graph with the interpreter and compiled (on two data sets, then the first
    again); every output must match jax_fn(weights)."""
    data = [make_data(prog), make_data(prog, seed=prog.seed + 1)]
    weights = data[0][1]  # constants of the graph; the inputs change
    inputs_sets = [data[0][0], data[1][0]]
    compiled_jax = _jax_compiled(jax_fn(weights), *inputs_sets[0])
    wants = [[np.asarray(w) for w in compiled_jax(*inputs)] for inputs in inputs_sets]
    assume(all(_finite_and_moderate(*want) for want in wants))

    graph = _bp_call("bp.trace", prog, lambda: bp.trace(bp_fn(weights), *inputs_sets[0]))
    for call, (inputs, want) in enumerate(zip(inputs_sets, wants)):
        # the interpreter, on the graph as traced
        outs = _bp_call("evaluate(graph)", prog, lambda xs=inputs: evaluate(graph, [x.copy() for x in xs], np))
        for out, w, label in zip(outs, want, labels):
            _check_close(f"evaluate(graph), data set {call + 1}: {label}", out, w, prog, inputs)

    executable = _bp_call("Executable(optimize(graph))", prog,
                          lambda: Executable(optimize(graph), bp.get_backend("numpy")))
    note = f"compiled source:\n{executable.source}\n"
    # data set 1, data set 2, then data set 1 again: buffers reused across calls must not leak state
    for call, k in enumerate([0, 1, 0]):
        inputs = inputs_sets[k]
        outs = _bp_call(f"Executable call {call + 1}", prog, lambda xs=inputs: executable(*[x.copy() for x in xs]))
        outs = [np.array(o, copy=True) for o in outs]  # outputs are valid only until the next call
        for out, w, label in zip(outs, wants[k], labels):
            _check_close(f"Executable(optimize(graph)) call {call + 1} (data set {k + 1}): {label}", out, w, prog,
                         inputs, note=note)


@settings(max_examples=30, **COMMON)
@given(programs())
def test_traced_graph_compiled_matches_jax(prog):
    """The forward graph from bp.trace, interpreted and compiled (constant folding, CSE, buffer reuse)."""
    def bp_fn(weights):
        return lambda *xs: run_program(prog, "bp", xs, weights)

    def jax_fn(weights):
        return lambda *xs: [run_program(prog, "jax", xs, weights)]

    _check_compiled(prog, bp_fn, jax_fn, ["value"])


@settings(max_examples=30, **COMMON)
@given(programs())
def test_traced_value_and_grad_compiled_matches_jax(prog):
    """The same for the traced value_and_grad graph (forward + backward), where buffer reuse matters most."""
    argnums = tuple(range(prog.n_inputs))

    def bp_fn(weights):
        return bp.value_and_grad(lambda *xs: run_program(prog, "bp", xs, weights), argnums=argnums)

    def jax_fn(weights):
        def fn(*xs):
            value, grads = jax.value_and_grad(lambda *ys: run_program(prog, "jax", ys, weights),
                                              argnums=argnums)(*xs)
            return [value, *grads]
        return fn

    _check_compiled(prog, bp_fn, jax_fn, ["value"] + [f"gradient w.r.t. x{i}" for i in argnums])
