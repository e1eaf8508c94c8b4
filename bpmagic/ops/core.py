"""What a primitive is, and how a call to one is dispatched.

A Primitive bundles, in one place, every facet of an operation: its implementation over an array module `xp`, its
shape/dtype rule, its VJP rule, its fused-kernel template, its lowering in the executor's generated code, its effects
and the operator it prints as. Nothing outside ops/ looks a primitive up by its name: passes, the executor, fusion
and the views read these facets, so an op (built in, or a plugin's) is added in one place. The VJP rule is written
with primitives too, so backward passes are ordinary graphs that can be printed, compiled and differentiated again.

Calling a primitive on plain arrays computes the result at once (eagerly). Calling it with a traced value hands the
call to that value's trace (`_bp_trace`), which records an equation and also computes the concrete value.
"""
from __future__ import annotations

import functools
import numbers
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..backends import array_module, is_array
from ..errors import ShapeError, raise_as_users

# name -> Primitive, for every primitive ever created (built-in or plugin)
PRIMITIVES: dict = {}


@dataclass
class OpInfo:
    """What the tests and the reference page need to know about an op, declared with the op (PyTorch's OpInfo idea).

    samples(rng) -> list of (args, kwargs): inputs to check the op on. float64 arrays among args are differentiated;
        integer or boolean arrays and Python values are held fixed.
    reference(jax) -> a function with the op's signature computed with JAX (`jax` is the jax module), so tests can
        compare forward values and gradients with an independent implementation.
    numpy_name: the NumPy function the op stands for (`np.<numpy_name>`), or None when NumPy has none; a tuple
        of names when NumPy has the function twice (np.cross and np.linalg.cross).
    kind: "primitive" or "composite".
    differentiable: False for ops without a gradient (comparisons, argmax), declared explicitly: the checks
        compare their forward values only. Ops whose gradient is zero almost everywhere (floor, sign) are
        differentiable, with a VJP that says so.
    gradcheck: extra keyword arguments for bp.gradcheck on this op's samples (looser tolerances where float32
        rounding is involved); orders: the derivative orders the checks cover.
    vjp_math: the VJP in one line of math, for the reference page (docs/ops.md), e.g. "x̄ = ḡ · (1 − y²)".
    """

    samples: Callable | None = None
    reference: Callable | None = None
    numpy_name: str | tuple | None = None
    kind: str = "primitive"
    differentiable: bool = True
    gradcheck: dict = field(default_factory=dict)
    orders: tuple = (1, 2)
    vjp_math: str | None = None

    @property
    def numpy_names(self) -> tuple:
        """Every NumPy name the op stands for (numpy_name as a tuple)."""
        if not self.numpy_name:
            return ()
        return (self.numpy_name,) if isinstance(self.numpy_name, str) else tuple(self.numpy_name)


def _default_numpy_name(name):
    return name if callable(getattr(np, name, None)) else None


class Primitive:
    """An operation the tracer records as one equation.

    impl(xp, *arrays, **params) -> array
    shape_rule(*avals, **params) -> (shape, dtype); avals have .shape and .dtype. Raise ShapeError on misuse.
        When omitted, the rule is found by running `impl` on zero-filled NumPy arrays of the input shapes.
    vjp(g, out, *inputs, **params) -> one cotangent per input (None where there is no gradient), written with
        primitives so it can be traced. Without one, differentiating through the primitive is an error naming it,
        unless it declares differentiable=False (then no gradient flows through it, as for a comparison).
    ufunc: name of a NumPy/CuPy ufunc that computes the primitive with an `out=` buffer (lets the executor reuse
        memory). accepts_out: impl takes an `out=` array to write into (the same benefit without a ufunc).
    nondiff_inputs: positions of inputs that never get a gradient (integer indices, masks).
    fused: for an elementwise primitive, its expression in the fused-kernel language (compile/fusion.py): operands
        {0}, {1}, {2}, the result's C type {T}, C math functions that NumPy also has (exp, tanh, floor, ...).
        Declaring it is what makes a primitive elementwise: fusible, and safe to compute in place over an input.
    lowering: rule(ctx, *args, out=None, **params) -> the Python expression the executor's generated code uses for
        this primitive, or None for the default call; args are the operands' names in that code, `out` the buffer
        to write into (given when the primitive writes out=), ctx a compile.executor.Lowering (xp, backend,
        operand shapes, `ctx.bind(key, make)` to name an object once per step).
    effects: names of effects ("random", "io", ...). An effectful primitive may give different values for the same
        inputs, so it is never constant-folded or computed once for two equal calls.
    symbol: the Python operator that writes it ("+" between two operands, "-" before one), for readable rules.
    onnx: rule(ctx, *names, **params) -> the ONNX value computing it (ops/onnx.py has the helpers; the exporter,
        bpmagic/onnx_export.py, gives ctx). None: it has no ONNX counterpart, and export says so.
    jax: rule(jax, *arrays, **params) -> the primitive computed with JAX, for checking gradients against JAX
        (bpmagic/check.py). None: `impl` run with jax.numpy as `xp`, which works for an impl written in NumPy's
        vocabulary without `out=` or in-place writes.
    samples, reference, numpy_name, differentiable, gradcheck, orders, vjp_math: see OpInfo (kept as `op_info`).
    """

    def __init__(self, name, impl, shape_rule=None, vjp=None, *, ufunc=None, accepts_out=False, nondiff_inputs=(),
                 doc=None, fused=None, lowering=None, effects=(), symbol=None, onnx=None, jax=None, samples=None,
                 reference=None, numpy_name=..., differentiable=True, gradcheck=None, orders=(1, 2), vjp_math=None):
        self.name = name
        self.impl = impl
        self.shape_rule = shape_rule or _shape_by_evaluation(impl)
        self.vjp = vjp
        self.ufunc = ufunc
        self.accepts_out = accepts_out
        self.nondiff_inputs = tuple(nondiff_inputs)
        self.fused = fused
        self.lowering = lowering
        self.effects = frozenset(effects)
        self.symbol = symbol
        self.onnx = onnx
        self.jax = jax
        self.__doc__ = doc or getattr(impl, "__doc__", None)
        self.op_info = OpInfo(samples, reference, _default_numpy_name(name) if numpy_name is ... else numpy_name,
                              differentiable=differentiable,
                              gradcheck=dict(gradcheck or {}), orders=tuple(orders), vjp_math=vjp_math)
        PRIMITIVES[name] = self

    @property
    def elementwise(self) -> bool:
        """Computed entry by entry (it has a fused template): fusible, and may write over an input of its shape."""
        return self.fused is not None

    @property
    def writes_out(self) -> bool:
        """Can write its result into a given buffer (a ufunc's or impl's `out=`)."""
        return bool(self.ufunc) or self.accepts_out

    def defvjp(self, rule):
        """Decorator: set the VJP rule `rule(g, out, *inputs, **params)`."""
        self.vjp = rule
        return rule

    def deflowering(self, rule):
        """Decorator: set the executor lowering `rule(ctx, *args, out=None, **params) -> str | None`."""
        self.lowering = rule
        return rule

    def defshape(self, rule):
        """Decorator: set the shape rule `rule(*avals, **params) -> (shape, dtype)`."""
        self.shape_rule = rule
        return rule

    def bind(self, *args, **params):
        for a in args:
            trace = getattr(a, "_bp_trace", None)
            if trace is not None:
                return trace.record(self, args, params)
        return self.apply(args, params)

    __call__ = bind

    def apply(self, args, params):
        """Compute eagerly on concrete arrays (and Python scalars), checking shapes first."""
        arrays = promote_scalars(args)
        try:
            self.shape_rule(*arrays, **params)
            xp = array_module(*arrays)
            if xp is not np:  # a composite's NumPy constant (a mask, indices) beside device arrays goes to the device
                arrays = [xp.asarray(a) if isinstance(a, (np.ndarray, np.generic)) else a for a in arrays]
            return xp.asarray(self.impl(xp, *arrays, **params))  # NumPy returns scalars for 0-d results
        except Exception as e:  # the implementation of a primitive the user wrote failed: say where, in their terms
            raise_as_users(e)
            raise

    def __repr__(self):
        return f"<primitive {self.name}>"


def composite(fn=None, *, name=None, samples=None, reference=None, numpy_name=..., differentiable=True,
              gradcheck=None, orders=(1, 2), scoped=True, vjp_math=None):
    """Decorator: `fn`, written with primitives, is a composite op named `name` (default: fn's name).

    Called on traced values, its equations are recorded inside the composite's scope (Eqn.scope), so views can draw it
    as one node; its VJP comes from its primitives'. scoped=False records no scope (for a helper that every VJP
    calls, such as unbroadcast, whose equations belong to the op being differentiated). The other keywords are its
    OpInfo (`fn.op_info`).
    """

    def wrap(f):
        op_name = name or f.__name__

        if not scoped:
            call = f
        else:
            @functools.wraps(f)
            def call(*args, **kwargs):
                return _call_in_scope(f, op_name, args, kwargs)

        nname = _default_numpy_name(op_name) if numpy_name is ... else numpy_name
        call.op_info = OpInfo(samples, reference, nname, kind="composite", differentiable=differentiable,
                              gradcheck=dict(gradcheck or {}), orders=tuple(orders), vjp_math=vjp_math)
        return call

    return wrap(fn) if fn is not None else wrap


def _call_in_scope(f, op_name, args, kwargs):
    trace = _trace_of(args, kwargs)
    if trace is None:
        return f(*args, **kwargs)
    with trace.in_composite(op_name):
        return f(*args, **kwargs)


def exposes(prim, **info):
    """Decorator: `fn` is the public face of primitive `prim` (it normalises arguments, then binds `prim`).

    `fn` shares the primitive's OpInfo; keywords (samples=, reference=, differentiable=, ...) are set on it here,
    beside the function a learner calls, so that the checks run on the arguments a learner passes."""

    def wrap(fn):
        for key, value in info.items():
            setattr(prim.op_info, key, value)
        fn.op_info = prim.op_info
        fn.primitive = prim
        return fn

    return wrap


def _trace_of(args, kwargs):
    """The trace of the first traced value among the arguments (looking one level into lists and tuples)."""
    for a in (*args, *kwargs.values()):
        for x in (a if isinstance(a, (list, tuple)) else (a,)):
            trace = getattr(x, "_bp_trace", None)
            if trace is not None:
                return trace
    return None


# The traces open on this thread, innermost last. Tracing opens them (tracing.new_trace); they are kept here, where
# primitives bind, so that an op without a traced argument (a random draw in a training step) finds the trace it is
# recorded in, and ops never import the tracing layer above them.
_open = threading.local()


def current_trace():
    """The innermost trace open on this thread, or None."""
    stack = getattr(_open, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def opened(trace):
    """Within this block, `trace` is this thread's current trace."""
    stack = _open.__dict__.setdefault("stack", [])
    stack.append(trace)
    try:
        yield trace
    finally:
        stack.pop()


def op_info(op) -> OpInfo | None:
    """The OpInfo declared with a primitive or a composite, or None for a plain function."""
    return getattr(op, "op_info", None)


def promote_scalars(args):
    """Python scalars become 0-d arrays of the dtype they would combine to (NumPy's weak-scalar rule)."""
    if not any(isinstance(a, numbers.Number) for a in args):
        return list(args)
    typed = [a.dtype for a in args if not isinstance(a, numbers.Number) and a is not None]
    scalars = [a for a in args if isinstance(a, numbers.Number)]
    dtype = np.result_type(*typed, *scalars) if typed else np.result_type(*scalars)
    out = []
    for a in args:
        if isinstance(a, numbers.Number):
            xp = array_module(*[t for t in args if is_array(t)])
            out.append(xp.asarray(a, dtype=dtype))
        else:
            out.append(a)
    return out


def _shape_by_evaluation(impl):
    def rule(*avals, **params):
        zeros = [np.zeros(a.shape, a.dtype) for a in avals]
        with np.errstate(all="ignore"):
            out = impl(np, *zeros, **params)
        return out.shape, out.dtype

    return rule


def fmt_shapes(*avals) -> str:
    return " and ".join(str(tuple(a.shape)) for a in avals)


def shape_error(prim_name, avals, detail) -> ShapeError:
    return ShapeError(f"{prim_name} of {fmt_shapes(*avals)}: {detail}")
