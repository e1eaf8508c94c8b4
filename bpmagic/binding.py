"""A parsed cell (cell.py) bound to a namespace: its Inputs and Targets as arrays, its Params and Buffers as the
arrays to train (the namespace's own where they fit, else fresh from their initialisers), and the loss function the
cell's body defines, with bpmagic's ops as bare names.

This is what the magic does with a cell before it trains, and a plain script can do the same:

    prog = parse_cell(source)
    data = bind_data(prog, namespace, np.float32)
    bound, groups = bind_params(prog, namespace, seed=0, dtype=np.float32, reset=False)
    loss_fn = make_loss_fn(prog, namespace, np.float32, bound)   # loss_fn(bound.arrays, *data.values())

Each mistake is a CellError naming the cell's line.
"""
from __future__ import annotations

import ast
import builtins
import inspect
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .backends import is_array
from .cell import CellError, layer
from .errors import BackpropError, did_you_mean
from .initializers import initializers
from .ops import constants
from .tracing import numpy_dispatch
from .train.datacheck import data_problem
from .train.layers import layer_of
from .train.metrics import report as report_metric

_BUILTINS = frozenset(dir(builtins))


def cell_namespace(user_ns: dict, dtype=np.float32) -> dict:
    """Globals of a cell's loss function: the notebook's names, with bpmagic's ops as bare names.

    bpmagic's ops win over imported names (`from numpy import zeros` would make float64 constants), but functions
    the user defined in the notebook itself win over bpmagic's, and so does data the notebook holds under an op's
    name (an array called `angle` or `gradient` stays the user's). Constants (zeros, ones, ...) make floats of the
    cell's `dtype`. Python's built-ins keep their meaning (`sum(losses)` adds a list, `max(2, n)` is a number):
    `abs` and `round` work on traced values as they do on arrays, and np.sum / h.max() reduce an array.
    """
    ns = dict(user_ns)
    for name, op in {**ops.registry(), **constants.for_cell(dtype)}.items():
        if name in _BUILTINS:
            continue
        mine = ns.get(name)
        if mine is None or callable(mine) and getattr(mine, "__module__", None) != "__main__":
            ns[name] = op
    ns["layer"] = layer
    ns["__bp_metric__"] = report_metric  # a Metric line: `acc: Metric = ...`
    # a[i] and .take(...) in the body (cell.py): a plain array indexed by traced integers
    ns.update(__bp_index__=numpy_dispatch.index, __bp_take__=numpy_dispatch.take, __bp_slice__=slice)
    return ns


def _eval(node, namespace, prog, what):
    expr = ast.Expression(node)
    ast.fix_missing_locations(expr)
    try:
        return eval(compile(expr, prog.filename, "eval"), namespace)
    except NameError as e:
        hint = did_you_mean(e.name, namespace) if getattr(e, "name", None) else ""
        raise CellError(f"line {node.lineno}: {what}: {e}; define it in an earlier cell.{hint}\n"
                        f"    {prog.line(node.lineno)}") from None
    except BackpropError:
        raise
    except Exception as e:
        raise CellError(f"line {node.lineno}: {what}: {type(e).__name__}: {e}\n    {prog.line(node.lineno)}"
                        ) from None


def bind_data(prog, user_ns, dtype):
    """name -> array for each Input and Target; floats converted to `dtype`; lengths checked."""
    data = {}
    for name, node, lineno in prog.inputs + prog.targets:
        value = _eval(node, user_ns, prog, f"{name} = {ast.unparse(node)}")
        if not is_array(value):
            try:
                value = np.asarray(value)
            except Exception:
                value = None
            if value is None or value.dtype == object:
                raise CellError(f"line {lineno}: {name} must be an array (or nested lists of numbers), got "
                                f"{type(value).__name__}\n    {prog.line(lineno)}")
        if value.dtype.kind in "USO":
            sample = ", ".join(repr(v) for v in value.ravel()[:3].tolist())
            what = "a Target" if any(n == name for n, _, _ in prog.targets) else "an Input"
            raise CellError(f"line {lineno}: {name} holds {'strings' if value.dtype.kind in 'US' else 'objects'} "
                            f"({sample}, ...): {what} must be numbers. For class labels, number them: "
                            f"classes, {name}_ids = np.unique({ast.unparse(node)}, return_inverse=True), then "
                            f"`{name}: {what.split()[1]} = {name}_ids` (cross_entropy takes class numbers)\n    {prog.line(lineno)}")
        if value.dtype.kind == "f" and value.dtype != dtype:
            value = value.astype(dtype)
        if value.ndim == 0:
            raise CellError(f"line {lineno}: {name} is a scalar; Inputs and Targets are data sets batched along "
                            f"axis 0\n    {prog.line(lineno)}")
        problem = data_problem(value)
        if problem:
            raise CellError(f"line {lineno}: {name} = {ast.unparse(node)} {problem}\n    {prog.line(lineno)}")
        data[name] = value
    lengths = {n: int(a.shape[0]) for n, a in data.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{n} {tuple(data[n].shape)}" for n in data)
        raise CellError(f"Inputs and Targets must have the same length along axis 0: {detail}. Check that they "
                        "come from the same data set (and split them the same way)")
    return data


@dataclass
class Bound:
    """Arrays bound to a cell's declarations (Params or Buffers), one per trained array: a declaration of a list or
    a dict of arrays (`Ws: Param = [randn(32, 32) for _ in range(20)]`) gives one per entry, named Ws[0], Ws[1], ...
    (blocks['q'] for a dict), each its own layer."""

    arrays: dict  # name -> the array to train: the namespace's own when it fits, else `fresh`'s
    fresh: dict  # name -> the value its initialiser gives with the run's seed (what Reset goes back to)
    reshaped: list  # (name, old value, new shape): values in the namespace that no longer fit their declaration
    entries: dict = field(default_factory=dict)  # a list or dict declaration's name -> its entries' names, in form

    def namespace(self, arrays: dict) -> dict:
        """The declared names as the notebook sees them: an array, or a list or dict of the entries' arrays."""
        out = {}
        for name, form in self.entries.items():
            out[name] = [arrays[n] for n in form] if isinstance(form, list) else {k: arrays[n] for k, n in form.items()}
        out.update({n: a for n, a in arrays.items() if n in self.arrays and not self._entry(n)})
        return out

    def view(self, traced: dict) -> dict:
        """The loss function's params: the traced entries, and each list or dict declaration as a list or dict."""
        return {**traced, **self.namespace(traced)}

    def _entry(self, name) -> bool:
        return any(name in (form if isinstance(form, list) else form.values()) for form in self.entries.values())


def bind_params(prog, user_ns, *, seed, dtype, reset):
    """(Bound, groups): the namespace's trained array when it fits, else a fresh one from the initialiser. Params
    whose names end in the same number form a layer (W1, b1), as do those declared in `with layer(name):`; each
    entry of a list or dict of Params is a layer of its own (Ws[3])."""
    bound = _bind(prog, prog.params, "Param", user_ns, seed, dtype, reset)
    groups = {}
    for spec in prog.params:
        form = bound.entries.get(spec.name)
        names = [spec.name] if form is None else form if isinstance(form, list) else list(form.values())
        for name in names:
            groups[name] = spec.layer or (layer_of(spec.name) if form is None else name)
    return bound, groups


def bind_buffers(prog, user_ns, *, seed, dtype, reset):
    """Bound Buffers, as for Params: the value each reached when the cell last ran, if it fits."""
    return _bind(prog, prog.buffers, "Buffer", user_ns, seed, dtype, reset)


def _bind(prog, specs, kind, user_ns, seed, dtype, reset) -> Bound:
    init_ns = {**cell_namespace(user_ns, dtype), **initializers(np.random.default_rng(seed), dtype)}
    bound = Bound({}, {}, [])
    for spec in specs:
        value = _eval(spec.init, init_ns, prog, f"the initial value of {spec.name}")
        fresh = _entries(spec, value, kind, prog, dtype)  # entry name -> array
        old = user_ns.get(spec.name)
        if isinstance(value, (list, tuple, dict)):
            form = list(fresh) if not isinstance(value, dict) else dict(zip(value, fresh))
            bound.entries[spec.name] = form
            olds = dict(zip(fresh, old if isinstance(value, (list, tuple)) else old.values())) \
                if _same_form(old, value) else None
        else:
            olds = {spec.name: old}
        bound.fresh.update(fresh)
        fits = not reset and olds is not None and all(
            is_array(o) and o.dtype.kind == "f" and tuple(o.shape) == tuple(fresh[n].shape) for n, o in olds.items())
        if fits:
            bound.arrays.update({n: o if o.dtype == dtype else o.astype(dtype) for n, o in olds.items()})
            continue
        if not reset and old is not None and (olds is None or any(is_array(o) and o.dtype.kind == "f"
                                                                  for o in olds.values())):
            shape = [tuple(a.shape) for a in fresh.values()] if spec.name in bound.entries else \
                tuple(fresh[spec.name].shape)
            bound.reshaped.append((spec.name, old, shape))
        bound.arrays.update({n: a.copy() for n, a in fresh.items()})
    return bound


def _entries(spec, value, kind, prog, dtype) -> dict:
    """name -> array for a declaration's value: itself, or each entry of a list or dict of arrays."""
    if isinstance(value, (list, tuple, dict)):
        if kind != "Param":
            raise CellError(f"line {spec.lineno}: declare each {kind} by itself (a list or dict of them is for "
                            f"Params)\n    {prog.line(spec.lineno)}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        named = [(f"{spec.name}[{k!r}]", v) for k, v in items]
        if not named:
            raise CellError(f"line {spec.lineno}: {spec.name} is an empty {type(value).__name__}: a list or dict of "
                            f"Params needs at least one array\n    {prog.line(spec.lineno)}")
    else:
        named = [(spec.name, value)]
    out = {}
    for name, v in named:
        if not is_array(v) and not isinstance(v, (int, float)):
            raise CellError(f"line {spec.lineno}: the initial value of {kind} {name} must be an array, got "
                            f"{type(v).__name__}\n    {prog.line(spec.lineno)}")
        out[name] = np.asarray(v, dtype) if not is_array(v) or v.dtype != dtype else v
    return out


def _same_form(old, value) -> bool:
    """Whether the namespace's `old` is a list (or dict) as long as (with the keys of) the declared `value`."""
    if isinstance(value, dict):
        return isinstance(old, dict) and list(old) == list(value)
    return isinstance(old, (list, tuple)) and len(old) == len(value)


def make_loss_fn(prog, user_ns, dtype=np.float32, bound: Bound | None = None):
    """The cell as `loss_fn(params, *batch)` (with Buffers `loss_fn(params, buffers, *batch) -> (loss,
    new_buffers)`), checking that the Loss is a scalar. With `bound`, lists and dicts of Params reach the cell as
    lists and dicts."""
    inner = prog.loss_function(cell_namespace(user_ns, dtype))

    def loss_fn(params, *args):
        value = inner(bound.view(params) if bound is not None and bound.entries else params, *args)
        loss = value[0] if prog.buffers else value
        shape = tuple(getattr(loss, "shape", ()))
        if shape != ():
            raise CellError(f"line {prog.loss_lineno}: the Loss must be a scalar, but {prog.loss_name} has shape "
                            f"{shape}; reduce it, e.g. mean(...)\n    {prog.line(prog.loss_lineno)}")
        return value

    loss_fn.__signature__ = inspect.signature(inner)  # traced graphs name the batch after the cell's Inputs
    return loss_fn




def arrays_of(value) -> list:
    """The arrays a namespace value holds: itself, or a list's or dict's entries."""
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple)) else [value]
