"""NumPy's vocabulary on traced values: NEP 13 (`__array_ufunc__`), NEP 18 (`__array_function__`), ndarray methods.

A NumPy function or ufunc called on a Tracer runs the bpmagic op that declares it stands for that function
(`OpInfo.numpy_name`; an op without an OpInfo stands for the NumPy function of its own name). The table is built
from the `bpmagic.ops` registry, so a plugin's ops dispatch exactly like the built-ins.

NumPy's calling conventions are translated, not imitated: arguments the user passes positionally stay positional
(an op standing for a NumPy function takes its arguments in NumPy's order); keywords go by name, or by NumPy's
position when the op names that parameter differently (np.clip's a_min is clip's lo). NumPy-only arguments are
honoured where a traced value allows it (dtype= casts), ignored where they only concern memory (order=, copy=), and
refused with a message where they would change the result (out=, where=, initial=).
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from .. import ops
from ..errors import BackpropError, did_you_mean
from ..plugins import load_group

_EMPTY = (inspect.Parameter.empty, np._NoValue)
# NumPy arguments about memory, not values: a traced value has no memory layout to honour
_MEMORY_ONLY = {"order", "subok", "copy", "device", "optimize", "like", "casting"}
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

_table_cache: dict = {}


def _numpy_object(name):
    obj = np
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj if callable(obj) else None


def _numpy_names(name, op):
    """The NumPy names an op stands for: the one it declares, and its registry name where NumPy has it too (an alias
    such as bp.dot = bp.matmul stands for np.dot)."""
    info = getattr(op, "op_info", None)
    names = list(info.numpy_names) if info is not None else []
    return names + [name] if name not in names and _numpy_object(name) is not None else names


def numpy_table() -> dict:
    """NumPy function or ufunc -> the bpmagic op that stands for it, for every op in the registry."""
    group = load_group("bpmagic.ops")  # a new dict after reload_plugins(): then the table is rebuilt
    if _table_cache.get("group") is not group:
        table, owner = {}, {}
        for name, op in ops.registry().items():
            for nname in _numpy_names(name, op):
                target = _numpy_object(nname)
                # two ops for one NumPy function: the one that has NumPy's name wins (bp.dot and np.dot, say)
                if target is not None and (target not in table or name == nname and owner[target] != nname):
                    table[target], owner[target] = op, name
        _table_cache.update(group=group, table=table, names={t: owner[t] for t in table})
    return _table_cache["table"]


def dispatched_names() -> list:
    """The NumPy names (np.<name>) that work on traced values, sorted."""
    table = numpy_table()
    names = set()
    for target in table:
        for name in dir(np):  # aliases too: np.abs and np.absolute are one ufunc
            if getattr(np, name, None) is target:
                names.add(name)
    return sorted(names)


def _name(func) -> str:
    """How the user wrote it: np.tanh, np.linalg.inv, scipy.special.expit."""
    name = getattr(func, "__name__", str(func))
    module = getattr(func, "__module__", None)
    if module is None:  # a ufunc: NumPy's own, or another library's (scipy.special.expit)
        return f"np.{name}" if getattr(np, name, None) is func else name
    if module == "numpy" or module.startswith("numpy."):
        public = [part for part in module.split(".")[1:] if not part.startswith("_")]
        return ".".join(["np", *public, name])
    return f"{module}.{name}"


# what to use for NumPy functions that have no op, where something close exists
_INSTEAD = {
    "nanmean": "np.mean after np.where(np.isnan(x), 0, x)", "nansum": "np.sum(np.where(np.isnan(x), 0, x))",
    "nanmax": "np.max(np.where(np.isnan(x), -np.inf, x))", "nanmin": "np.min(np.where(np.isnan(x), np.inf, x))",
    "expit": "sigmoid(x)", "logsumexp": "logsumexp(x, axis)", "softmax": "softmax(x, axis)",
    "log_softmax": "log_softmax(x, axis)", "erf": "erf(x)",
    "eig": "np.linalg.eigh for a symmetric matrix (bpmagic's arrays are real; a general matrix's eigenvalues may be "
           "complex)", "eigvals": "np.linalg.eigvalsh for a symmetric matrix (a general matrix's eigenvalues may be "
                                  "complex)",
    "lstsq": "np.linalg.pinv(A) @ b, or np.linalg.solve(A.T @ A, A.T @ b)", "multi_dot": "a @ b @ c",
    "matrix_rank": "np.sum(np.linalg.svdvals(A) > tol) (it has no gradient)",
}
_DATA_DEPENDENT = {"unique", "nonzero", "argwhere", "flatnonzero", "extract", "compress", "trim_zeros", "delete",
                   "insert", "resize"}


def _missing(func) -> BackpropError:
    # no "did you mean": NumPy has this function, so a near name (np.sign for np.sin) would be wrong advice
    name, shown = getattr(func, "__name__", ""), _name(func)
    if name in _INSTEAD:
        advice = f"Use {_INSTEAD[name]} instead."
    elif name in _DATA_DEPENDENT:
        advice = ("Its result's shape depends on the values, which a graph cannot follow: keep the shape and mask "
                  "instead, e.g. np.where(x > 0, x, 0).")
    elif ".linalg." in f".{shown}.":
        advice = ("bpmagic's np.linalg has solve, inv, det, slogdet, cholesky, eigh, eigvalsh, svd, svdvals, qr, "
                  "pinv, matrix_power and the norms (docs/ops.md): compute this one before the cell, if it does not "
                  "depend on the Params, or add it with @bp.primitive and a VJP.")
    elif ".random." in f".{shown}.":
        advice = ("Draw random numbers before the cell (as data) or with bpmagic's uniform / dropout in the cell, "
                  "so that each step draws new ones.")
    else:
        advice = ("Use one of bpmagic's ops instead (the bare names in a %%backprop cell; all of them: "
                  "bp.ops.registry(), listed in docs/ops.md), write it from those, or add it with @bp.primitive.")
    return BackpropError(f"{shown} has no bpmagic equivalent, so it cannot run on a traced value. {advice}")


def _check_out(func, out):
    outs = out if isinstance(out, tuple) else (out,)
    if any(o is not None for o in outs):
        raise BackpropError(f"{_name(func)}(..., out=...): a traced value cannot be written into an existing array. "
                            f"Assign the result instead: `y = {_name(func)}(...)`.")


def _cast(value, dtype):
    if getattr(value, "_bp_trace", None) is not None:
        return ops.astype(value, dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


# -- ufuncs (NEP 13) ---------------------------------------------------------------------------------------------
_UFUNC_DEFAULTS = {"casting": "same_kind", "order": "K", "subok": True}


def call_ufunc(ufunc, method, inputs, kwargs):
    """What `np.<ufunc>(*inputs, **kwargs)` (or `ufunc.<method>`) means when an input is traced."""
    if method != "__call__":
        instead = {"add": "np.sum", "multiply": "np.prod", "maximum": "np.max", "minimum": "np.min"}.get(
            ufunc.__name__)
        raise BackpropError(f"np.{ufunc.__name__}.{method}(...) is not supported on traced values"
                            + (f"; use {instead}(..., axis=...) instead." if instead else "."))
    op = numpy_table().get(ufunc)
    if op is None:
        raise _missing(ufunc)
    kwargs = dict(kwargs)
    _check_out(ufunc, kwargs.pop("out", None))
    if kwargs.pop("where", True) is not True:
        raise BackpropError(f"{_name(ufunc)}(..., where=...): use np.where(mask, {_name(ufunc)}(...), other) "
                            "to choose values; a masked ufunc leaves the unmasked entries undefined.")
    dtype = kwargs.pop("dtype", None)
    for key, default in _UFUNC_DEFAULTS.items():
        kwargs.pop(key, default)
    accepted = {p.name for p in _op_parameters(op) or ()}
    if kwargs and set(kwargs) <= accepted:  # a generalised ufunc's own arguments: np.vecdot(a, b, axis=0)
        result = op(*(_cast(inputs, dtype) if dtype is not None else inputs), **kwargs)
        return result if dtype is None else _cast(result, dtype)
    if kwargs:
        raise BackpropError(f"{_name(ufunc)}(..., {', '.join(f'{k}=' for k in kwargs)}) is not supported on traced "
                            "values.")
    if dtype is not None:
        inputs = _cast(inputs, dtype)
    result = op(*inputs)
    return result if dtype is None else _cast(result, dtype)


# -- functions (NEP 18) ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _op_parameters(op):
    """The op's named parameters, or None when it takes anything (`*args, **params`, as a Primitive does)."""
    sig = _signature(op)
    if sig is None:
        return None
    params = list(sig.parameters.values())
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None
    return params


def _is_default(value, param):
    default = param.default
    if default in _EMPTY:  # NumPy's "not given"; anything the user passes is a request
        return value is np._NoValue
    if value is default:
        return True
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:
        return False


def _translate(func, op, args, kwargs):
    """NumPy's call `func(*args, **kwargs)` as the op's (positional args, keyword args, dtype to cast to)."""
    sig = _signature(func)
    if sig is None:  # not introspectable: pass the call through as written
        return list(args), dict(kwargs), None
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        hint = next((h for k in kwargs if k not in sig.parameters if (h := did_you_mean(k, sig.parameters))), "")
        raise BackpropError(f"{_name(func)}(...): {e}.{hint}") from None
    numpy_params = list(sig.parameters.values())
    op_params = _op_parameters(op)
    op_names = None if op_params is None else {p.name: p for p in op_params}
    op_positional = [] if op_params is None else [p for p in op_params if p.kind in _POSITIONAL]
    numpy_positional = [p for p in numpy_params if p.kind in _POSITIONAL]

    pos, kw, dtype = [], {}, None
    positional_open = True  # still passing the user's positional arguments through in order
    for index, p in enumerate(numpy_params):
        if p.name not in bound.arguments:
            # NumPy's default where the op's differs (np.take flattens by default): the user asked NumPy's question
            if (op_names and p.name in op_names and p.default not in _EMPTY
                    and not _is_default(p.default, op_names[p.name])):
                kw[p.name] = p.default
            continue
        value = bound.arguments[p.name]
        if p.kind is p.VAR_POSITIONAL:
            pos.extend(value)
            continue
        if p.kind is p.VAR_KEYWORD:
            kw.update(value)
            continue
        given_positionally = p.kind in _POSITIONAL and index < len(args)
        if p.name == "out":
            _check_out(func, value)
            positional_open = positional_open and not given_positionally
            continue
        op_has = op_names is None or p.name in op_names
        if p.name == "dtype" and not (op_names and "dtype" in op_names):
            dtype = value
            positional_open = positional_open and not given_positionally
            continue
        if p.name in _MEMORY_ONLY and not (op_names and p.name in op_names):
            positional_open = positional_open and not given_positionally
            continue
        if given_positionally and positional_open:
            pos.append(value)
            continue
        if op_has:
            kw[p.name] = value
            continue
        # NumPy names it differently (np.clip's a_min is clip's lo): match by NumPy's position
        at = numpy_positional.index(p) if p in numpy_positional else None
        if at is not None and at < len(op_positional) and at >= len(pos):
            kw[op_positional[at].name] = value
            continue
        if _is_default(value, p):
            continue
        raise _unsupported(func, op, p.name, value)
    return pos, kw, dtype


def _unsupported(func, op, name, value) -> BackpropError:
    advice = {
        "where": " Choose values first with np.where(mask, x, 0) and reduce that.",
        "initial": " Combine the start value after reducing, e.g. np.maximum(np.max(x), initial).",
    }.get(name, "")
    op_name = getattr(op, "__name__", getattr(op, "name", "the op"))
    shown = f"<array of shape {tuple(value.shape)}>" if getattr(value, "shape", ()) else repr(value)
    return BackpropError(f"{_name(func)}(..., {name}={shown}): bpmagic's {op_name} has no `{name}` argument, so "
                         f"this call cannot be traced.{advice}")


def call_function(func, args, kwargs):
    """What `func(*args, **kwargs)` (a NumPy function given a traced value) means."""
    inspect_fn = _INSPECTION.get(func)
    if inspect_fn is not None:
        return inspect_fn(*args, **kwargs)
    op = numpy_table().get(func)
    if op is None:
        raise _missing(func)
    pos, kw, dtype = _translate(func, op, args, kwargs)
    op_sig = _signature(op)
    if op_sig is not None and _op_parameters(op) is not None:
        try:
            op_sig.bind(*pos, **kw)
        except TypeError as e:
            op_name = getattr(op, "__name__", "the op")
            raise BackpropError(f"{_name(func)}(...) runs bpmagic's {op_name}{op_sig}, which cannot take these "
                                f"arguments: {e}") from None
    if dtype is not None:
        pos, kw = _cast(pos, dtype), {k: _cast(v, dtype) for k, v in kw.items()}
    result = op(*pos, **kw)
    return result if dtype is None else _cast(result, dtype)


def _dtype_of(x):
    """What NumPy's dtype questions read from an argument: a traced value's dtype, anything else as it is."""
    return x.dtype if getattr(x, "_bp_trace", None) is not None else x


# questions about a value's type that NumPy answers without computing anything
_INSPECTION = {
    np.shape: lambda a: tuple(a.shape),
    np.ndim: lambda a: len(a.shape),
    np.size: lambda a, axis=None: int(np.prod(a.shape, dtype=np.int64)) if axis is None else a.shape[axis],
    np.result_type: lambda *arrays_and_dtypes: np.result_type(*map(_dtype_of, arrays_and_dtypes)),
    np.can_cast: lambda from_, to, casting="safe": np.can_cast(_dtype_of(from_), to, casting),
}
# the array API's questions about dtypes and shapes: NumPy answers them for a traced value (its dtype is NumPy's,
# its shape a tuple; result_type and can_cast through _INSPECTION), so they need no op
DTYPE_AND_SHAPE_QUESTIONS = ("broadcast_shapes", "can_cast", "finfo", "iinfo", "isdtype", "result_type")


# -- ndarray methods ------------------------------------------------------------------------------------------------
def call_method(value, name, args, kwargs):
    """`value.<name>(*args, **kwargs)` with ndarray's meaning: np.<name>(value, ...) where NumPy has that function,
    else the registry's op of that name."""
    func = getattr(np, name, None)
    if func is not None and func in numpy_table():
        return call_function(func, (value, *args), kwargs)
    op = ops.registry().get(name)
    if op is None:
        raise BackpropError(f".{name}() has no bpmagic equivalent yet, so it cannot run on a traced value. Use one "
                            "of bpmagic's ops instead (all of them: bp.ops.registry()).")
    kwargs = {k: v for k, v in kwargs.items() if k not in _MEMORY_ONLY}
    if kwargs.pop("out", None) is not None:
        raise BackpropError(f".{name}(out=...): a traced value cannot be written into an existing array. Assign "
                            f"the result instead: `y = h.{name}(...)`.")
    return op(value, *args, **kwargs)


# -- where NumPy's protocols do not reach: a plain array indexed by traced integers ----------------------------------
def _traced(x) -> bool:
    return getattr(x, "_bp_trace", None) is not None


def index(value, key):
    """`value[key]` in a cell. NumPy indexes a plain array without asking the index (ndarray.__getitem__ has no
    dispatch protocol: it would call np.asarray on a traced index), so rows of a constant picked by traced integers
    (`eye(10)[y]`, a one-hot) run bpmagic's getitem, the array a constant of the graph."""
    keys = key if isinstance(key, tuple) else (key,)
    if not _traced(value) and isinstance(value, np.ndarray) and any(map(_traced, keys)):
        return ops.getitem(value, key)
    return value[key]


def _take_arguments(a, indices, axis=None, out=None, mode="raise"):
    return a, indices, axis, out, mode


def take(func, *args, **kwargs):
    """`np.take(a, indices, ...)` or `a.take(indices, ...)` in a cell (any other `.take` is called as it is).
    np.take's dispatch reads only `a`, so traced indices into a plain array would reach np.asarray: they run
    bpmagic's take instead."""
    owner = getattr(func, "__self__", None)
    if func is np.take:
        a, indices, axis, out, mode = _take_arguments(*args, **kwargs)
    elif isinstance(owner, np.ndarray) and getattr(func, "__name__", None) == "take":
        a, indices, axis, out, mode = _take_arguments(owner, *args, **kwargs)
    else:
        return func(*args, **kwargs)
    if _traced(a) or not _traced(indices):
        return func(*args, **kwargs)
    if out is not None or mode != "raise":
        raise BackpropError("np.take(..., out=, mode=) with traced indices: bpmagic's take writes no existing array "
                            "and does not clip or wrap indices; drop those arguments (indices must be in range).")
    return ops.take(a, indices, axis)


def available(name) -> bool:
    """Whether `tracer.<name>(...)` has an op to run (today; plugins and new ops can add more)."""
    func = getattr(np, name, None)
    return (func is not None and func in numpy_table()) or name in ops.registry()


# ndarray methods a Tracer offers with NumPy's signatures; each finds its op when called, so a method whose op
# arrives later (a plugin, a new release) works without changing the Tracer
METHODS = ("sum", "mean", "var", "std", "max", "min", "prod", "argmax", "argmin", "cumsum", "cumprod", "clip",
           "squeeze", "swapaxes", "take", "repeat", "round", "dot", "trace", "diagonal", "any", "all", "conj",
           "sort", "argsort")
