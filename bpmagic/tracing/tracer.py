"""Concrete tracing: running Python code on Tracers records equations, with the user's source lines.

Every Tracer carries a real value computed on the chosen backend as it is recorded, so errors name the user's line
with real shapes, `print` shows numbers, and Python control flow runs at trace time (loops unroll). Asking a traced
value for a Python bool (`if x > 0:`) is an error: the recorded graph could not follow a branch taken at trace time.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import ops
from ..backends import get_backend, is_array
from ..errors import BackpropError, ShapeError, TracingError
from ..ir import Eqn, Graph, Literal, Var, assigned_names
from ..ops.core import fmt_shapes, opened, promote_scalars
from ..ops.evaluate import evaluate
from ..usercode import Source, at_source, user_source
from . import numpy_dispatch


class Trace:
    """An open recording: equations in order, and the Tracer of each Var (autodiff reads their values)."""

    def __init__(self, backend="numpy"):
        self.backend = get_backend(backend)
        self.eqns: list[Eqn] = []
        self.tracers: dict[Var, Tracer] = {}
        self.consts: dict[Var, object] = {}
        self._const_ids: dict[int, Var] = {}
        self.phase = "forward"
        self.source_override: Source | None = None
        self.scope: tuple = ()  # the composite calls now running (see ops.core.composite)
        self.named_from = 0  # equations before this one came from a loaded graph (see load)
        # a training step's trace (train/step.py): the per-step key its random draws are keyed by, and its floats
        self.step_key: Tracer | None = None
        self.float_dtype = np.float64
        self._streams = 0

    def next_stream(self) -> int:
        """A stream of the step's key for the next random draw traced here: each draw's numbers are its own."""
        self._streams += 1
        return self._streams

    # -- values entering the trace --------------------------------------------------------------------------
    def new_input(self, value, name=None) -> "Tracer":
        value = self.backend.asarray(value)
        var = Var(value.shape, value.dtype, name)
        return self._tracer(var, value)

    def _tracer(self, var, value):
        t = Tracer(self, var, value)
        self.tracers[var] = t
        return t

    def const(self, value) -> "Tracer":
        """An array from outside the trace: a constant of the graph (deduplicated by identity)."""
        key = id(value)
        var = self._const_ids.get(key)
        if var is None or self.consts[var] is not value:
            dev = self.backend.asarray(value)
            var = Var(dev.shape, dev.dtype)
            self.consts[var] = value  # keep the caller's object alive so that id() stays unique
            self._const_ids[key] = var
            self.tracers[var] = Tracer(self, var, dev)
        return self.tracers[var]

    def load(self, graph, inputs):
        """Record `graph`'s own equations, evaluated at `inputs` (one array per graph input), as if traced here:
        the same Vars and Eqns, with their values, so autodiff can differentiate a finished graph."""
        xp = self.backend.xp
        for v, a in zip(graph.inputs, inputs, strict=True):
            self._tracer(v, self.backend.asarray(a))
        for v, a in graph.consts.items():
            self.consts[v] = a
            self._tracer(v, self.backend.asarray(a))
        def recorded(e, value):
            self.eqns.append(e)
            self._tracer(e.outputs[0], xp.asarray(value))

        with np.errstate(all="ignore"):  # as when traced: a NaN is for the caller to report
            evaluate(graph, [self.tracers[v].value for v in graph.inputs], xp, on_value=recorded)
        self.named_from = len(self.eqns)  # the loaded graph's values are named by whoever owns that graph

    def _atom(self, x):
        """Var or Literal for an argument; its concrete value."""
        if isinstance(x, Tracer):
            if x._bp_trace is self:
                return x._bp_var, x.value
            x = x.value  # a value from another (finished or outer) trace is a constant here
        if isinstance(x, np.ndarray) and x.ndim == 0 or isinstance(x, np.generic):
            value = self.backend.asarray(x)
            return Literal(value), value
        if is_array(x):
            t = self.const(x)
            return t._bp_var, t.value
        if isinstance(x, (list, tuple)):  # a learner's list where one array was meant (no Tracers' repr shown)
            names = {str(getattr(getattr(v, "_bp_var", None), "name", "")).partition("[")[0] for v in x}
            declared = names.pop() if len(names) == 1 and all(
                str(getattr(getattr(v, "_bp_var", None), "name", "")).endswith("]") for v in x) else None
            raise TypeError(
                f"a {type(x).__name__} of {len(x)} values where an array is needed: make one with np.stack(...)"
                + (f" ({declared} is a list of {len(x)} Params, one per entry, as a Param declared as a list is; for "
                   f"one vector declare an array: {declared}: Param = zeros({len(x)}), or np.array([...]))"
                   if declared else ""))
        raise TypeError(f"cannot trace a value of type {type(x).__name__}: {x!r}")

    # -- recording -----------------------------------------------------------------------------------------
    def record(self, prim, args, params):
        source = self.source_override or user_source()
        args = promote_scalars(args)
        atoms, values = zip(*(self._atom(a) for a in args)) if args else ((), ())
        try:
            shape, dtype = prim.shape_rule(*values, **params)
        except ShapeError as e:
            raise at_source(source, e) from None
        try:
            with np.errstate(all="ignore"):  # a NaN is reported once, by the step's guard, naming the user's line
                value = self.backend.xp.asarray(prim.impl(self.backend.xp, *values, **params))
        except BackpropError as e:
            raise at_source(source, e) from None
        except Exception as e:
            raise at_source(source, BackpropError(f"{prim.name} of {fmt_shapes(*values)} failed: "
                                            f"{type(e).__name__}: {e}")) from None
        assert tuple(value.shape) == tuple(shape), (prim.name, value.shape, shape)
        var = Var(shape, np.dtype(dtype))
        self.eqns.append(Eqn(prim, list(atoms), [var], dict(params), source, self.phase, self.scope))
        return self._tracer(var, value)

    @contextmanager
    def recording(self, phase=None, source=None, scope=None):
        """Within this block, new equations are tagged with `phase`, (if given) attributed to `source` and recorded in
        `scope` (a tuple of composite names, replacing the current one)."""
        saved = self.phase, self.source_override, self.scope
        self.phase = phase or self.phase
        self.source_override = source or self.source_override
        self.scope = self.scope if scope is None else tuple(scope)
        try:
            yield
        finally:
            self.phase, self.source_override, self.scope = saved

    @contextmanager
    def in_composite(self, name):
        """Equations recorded within this block belong to the composite `name` (nested inside the current ones)."""
        with self.recording(scope=self.scope + (name,)):
            yield

    def name_values(self, start=0):
        """Values that the user's code assigned (`h = tanh(z)`) take that name, unless they have one: a graph then
        prints and draws h, and autodiff calls its adjoint dh. Values loaded from a finished graph are left alone."""
        for v, name in assigned_names(Graph([], self.eqns[max(start, self.named_from):], [])).items():
            v.name = v.name or name

    def graph(self, inputs, outputs, name="f") -> Graph:
        """The Graph from `inputs` to `outputs` (Tracers or Vars) of everything recorded so far."""
        self.name_values()
        ins = [getattr(t, "_bp_var", t) for t in inputs]
        outs = [self._atom(t)[0] if not isinstance(t, Tracer) or t._bp_trace is not self else t._bp_var
                for t in outputs]
        outs = [o if isinstance(o, Var) else self._literal_var(o) for o in outs]
        g = Graph(ins, list(self.eqns), outs, dict(self.consts), name)
        return g

    def _literal_var(self, lit):
        t = self.const(self.backend.to_numpy(lit.value))
        return t._bp_var


def new_trace(backend="numpy"):
    """Open a Trace for this thread (ops.core.current_trace() is it, within the block)."""
    return opened(Trace(backend))


class Tracer:
    """A traced array: a Var in a Trace plus its concrete value. Behaves like an array in user code."""

    # `_bp_trace` / `_bp_var`: underscored so they never shadow an ndarray method (`h.var()` is NumPy's variance)
    __slots__ = ("_bp_trace", "_bp_var", "value")

    def __init__(self, trace, var, value):
        self._bp_trace = trace
        self._bp_var = var
        self.value = value

    shape = property(lambda self: self._bp_var.shape)
    dtype = property(lambda self: self._bp_var.dtype)
    ndim = property(lambda self: len(self._bp_var.shape))
    size = property(lambda self: int(np.prod(self._bp_var.shape, dtype=np.int64)))
    T = property(lambda self: ops.transpose(self))

    def __repr__(self):
        value = self._bp_trace.backend.to_numpy(self.value)
        return f"Tracer({self._bp_var.type_str}, value={np.array2string(value, precision=4, threshold=20)})"

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced value")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        raise _located(TracingError(
            f"Python `if`/`while`/`and`/`or` on a traced value ({self._bp_var.type_str}): the graph records "
            "array operations, not which way Python branched. Use bp.where(condition, a, b) to choose values, or "
            "branch on something that is not traced (a Python number, a shape). Python's max() and min() compare "
            "this way too: use np.maximum(a, b) or h.max()."))

    def _concrete(self, kind):
        raise _located(TracingError(
            f"{kind}() of a traced value ({self._bp_var.type_str}) would freeze its value into the graph. "
            "Keep it as an array; to read a number out, do it after training (the params are plain arrays then)."))

    __float__ = lambda self: self._concrete("float")
    __int__ = lambda self: self._concrete("int")
    __index__ = lambda self: self._concrete("index")

    def __array__(self, dtype=None, copy=None):
        raise _located(TracingError(
            f"a traced value ({self._bp_var.type_str}) was turned into a NumPy array (np.asarray, np.array, "
            "or a library that calls them), which would freeze its value into the graph. NumPy's functions and "
            "ufuncs work on it directly (np.tanh(h), np.sum(h, axis=0)), as do bpmagic's (bp.exp, bp.sum, ...)."))

    # NumPy's dispatch protocols: np.tanh(h), np.sum(h, axis=0), array + h run bpmagic's ops (numpy_dispatch.py)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _with_line(numpy_dispatch.call_ufunc, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _with_line(numpy_dispatch.call_function, func, args, kwargs)

    def __setitem__(self, index, value):
        raise _located(TracingError(
            f"a traced value ({self._bp_var.type_str}) cannot be changed in place: the graph records new "
            "values, not edits. Build a new one instead, e.g. np.where(mask, new, h) or np.concatenate([...])."))

    # arithmetic
    __add__ = lambda a, b: ops.add(a, b)
    __radd__ = lambda a, b: ops.add(b, a)
    __sub__ = lambda a, b: ops.subtract(a, b)
    __rsub__ = lambda a, b: ops.subtract(b, a)
    __mul__ = lambda a, b: ops.multiply(a, b)
    __rmul__ = lambda a, b: ops.multiply(b, a)
    __truediv__ = lambda a, b: ops.divide(a, b)
    __rtruediv__ = lambda a, b: ops.divide(b, a)
    __floordiv__ = lambda a, b: ops.floor_divide(a, b)
    __rfloordiv__ = lambda a, b: ops.floor_divide(b, a)
    __mod__ = lambda a, b: ops.remainder(a, b)
    __rmod__ = lambda a, b: ops.remainder(b, a)
    __divmod__ = lambda a, b: ops.divmod(a, b)
    __rdivmod__ = lambda a, b: ops.divmod(b, a)
    __pow__ = lambda a, b: ops.power(a, b)
    __rpow__ = lambda a, b: ops.power(b, a)
    __matmul__ = lambda a, b: ops.matmul(a, b)
    __rmatmul__ = lambda a, b: ops.matmul(b, a)
    __neg__ = lambda a: ops.negative(a)
    __pos__ = lambda a: a
    __abs__ = lambda a: ops.abs(a)
    __round__ = lambda a, ndigits=None: ops.round(a, ndigits or 0)  # NumPy: round(array, n) rounds entries
    __gt__ = lambda a, b: ops.greater(a, b)
    __ge__ = lambda a, b: ops.greater_equal(a, b)
    __lt__ = lambda a, b: ops.less(a, b)
    __le__ = lambda a, b: ops.less_equal(a, b)
    __eq__ = lambda a, b: ops.equal(a, b)
    __ne__ = lambda a, b: ops.not_equal(a, b)
    __hash__ = object.__hash__
    # on masks (the results of comparisons), NumPy's & | ^ ~ are logical; on integers, bitwise
    __and__ = __rand__ = lambda a, b: _on_masks("&", ops.logical_and, a, b, bitwise=ops.bitwise_and)
    __or__ = __ror__ = lambda a, b: _on_masks("|", ops.logical_or, a, b, bitwise=ops.bitwise_or)
    __xor__ = __rxor__ = lambda a, b: _on_masks("^", ops.logical_xor, a, b, bitwise=ops.bitwise_xor)
    __invert__ = lambda a: _on_masks("~", ops.logical_not, a, bitwise=ops.invert)
    __lshift__ = lambda a, b: ops.left_shift(a, b)
    __rlshift__ = lambda a, b: ops.left_shift(b, a)
    __rshift__ = lambda a, b: ops.right_shift(a, b)
    __rrshift__ = lambda a, b: ops.right_shift(b, a)
    __getitem__ = lambda a, idx: ops.getitem(a, idx)

    # ndarray's methods, with NumPy's signatures
    def reshape(self, *shape, order="C", copy=None):
        return ops.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape, order)

    def transpose(self, *axes):
        return ops.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes or None)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        return ops.astype(self, dtype)

    def flatten(self, order="C"):
        return ops.reshape(self, (-1,), order)

    ravel = flatten
    mT = property(lambda self: ops.swapaxes(self, -1, -2))

    def copy(self, order="C"):
        return self  # a traced value never changes, so it is its own copy

    itemsize = property(lambda self: np.dtype(self.dtype).itemsize)
    nbytes = property(lambda self: self.size * np.dtype(self.dtype).itemsize)
    item = lambda self, *args: self._concrete("item")
    tolist = lambda self: self._concrete("tolist")


def _method(name):
    def method(self, *args, **kwargs):
        return _with_line(numpy_dispatch.call_method, self, name, args, kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"ndarray.{name} on a traced value: runs bpmagic's op for np.{name}."
    return method


for _name in numpy_dispatch.METHODS:
    if hasattr(np.ndarray, _name):
        setattr(Tracer, _name, _method(_name))
del _name


def _with_line(fn, *args):
    """fn(*args), with the user's line in front of a message it raises about their NumPy call."""
    try:
        return fn(*args)
    except BackpropError as e:
        raise _located(e) from None


def _on_masks(symbol, op, *operands, bitwise):
    """`m1 & m2` and friends: logical on boolean masks, as in NumPy, and bitwise on integers."""
    dtypes = [np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype for x in operands]
    kinds = {d.kind for d in dtypes}
    if kinds == {"b"}:
        return op(*operands)
    if kinds <= set("biu"):
        return bitwise(*operands)
    dtype = next(d for d in dtypes if d.kind not in "biu")
    raise _located(TracingError(
        f"{symbol} works on traced masks (booleans, as from h > 0) and integers, not on {dtype} values: "
        "combine conditions as (a > 0) & (b < 1)."))


def _located(error: BackpropError) -> BackpropError:
    """`error` about the operation now running, with the user's line and code in front."""
    return at_source(user_source(), error)
