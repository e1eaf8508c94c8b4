"""The %%backprop cell language: annotated Python turned into a loss function over parameters and a batch.

    W1: Param = randn(2, 8) * 0.5      # a parameter and its initialiser
    x: Input = X                       # a whole data set from the namespace, batched along axis 0
    y: Target = Y
    m: Buffer = zeros(8)               # kept between steps, not trained (e.g. batch_norm's running averages)
    h = tanh(x @ W1 + b1)              # ordinary Python, run at trace time
    loss: Loss = mse(h @ W2, y)        # the scalar to minimise
    err: Metric = mean(abs(h @ W2 - y))  # a number to watch beside it (a history column, validated too)

Params declared inside `with layer("name"):` form a named layer; otherwise params whose names end in the same
number form one (W1, b1 -> layer "1"). This module knows Python's ast, not IPython: the magic is a thin client.
"""
from __future__ import annotations

import ast
import difflib
import linecache
from dataclasses import dataclass, field

from .errors import BackpropError
from .usercode import record_assignments

ANNOTATIONS = ("Param", "Input", "Target", "Loss", "Buffer", "Metric")


class _Annotation:
    """A marker for annotated names in %%backprop cells (importable, so linters and plain Python accept them)."""

    def __init__(self, name):
        self.__name__ = self._name = name

    def __repr__(self):
        return f"bpmagic.{self._name}"


Param, Input, Target, Loss, Buffer, Metric = (_Annotation(n) for n in ANNOTATIONS)


class CellError(BackpropError):
    """A mistake in the cell itself, reported at its line."""


@dataclass
class ParamSpec:
    name: str
    init: ast.expr  # the initialiser expression
    lineno: int
    layer: str | None = None


@dataclass
class CellProgram:
    """A parsed cell: declarations, and a code object that defines the loss function."""

    params: list = field(default_factory=list)
    buffers: list = field(default_factory=list)  # ParamSpecs of the Buffers: kept between steps, not trained
    metrics: list = field(default_factory=list)  # (name, lineno) of the Metrics: reported beside the loss
    inputs: list = field(default_factory=list)  # (name, expression source, lineno), in order
    targets: list = field(default_factory=list)
    loss_name: str = "loss"
    loss_lineno: int = 0
    filename: str = "<backprop cell>"
    code: object = None  # compiled module defining __bp_loss__(__params, [__buffers,] *batch)
    source_lines: list = field(default_factory=list)

    @property
    def data_names(self) -> list:
        """The batch arguments of the loss function: inputs, then targets."""
        return [n for n, _, _ in self.inputs] + [n for n, _, _ in self.targets]

    def loss_function(self, namespace: dict):
        """The loss function `f(params, *batch)`, with `namespace` as its globals; with Buffers
        `f(params, buffers, *batch) -> (loss, new_buffers)`."""
        scope = dict(namespace)
        exec(self.code, scope)
        return scope["__bp_loss__"]

    def line(self, lineno) -> str:
        return self.source_lines[lineno - 1].strip() if 0 < lineno <= len(self.source_lines) else ""


def layer(name: str):
    """`with layer("hidden"):` — the Params declared inside form the layer "hidden" (a no-op when run)."""
    import contextlib

    return contextlib.nullcontext(name)


def _error(lineno, message, line=""):
    text = f"line {lineno}: {message}" if lineno else message
    return CellError(text + (f"\n    {line}" if line else ""))


def parse_cell(source: str, filename: str = "<backprop cell>", first_line: int = 2) -> CellProgram:
    """Parse the body of a %%backprop cell. `first_line` is the number a user sees on the body's first line (the
    %%backprop line is line 1), so every message and traced source line matches what the user sees."""
    offset = first_line - 1
    lines = [""] * offset + source.splitlines()
    prog = CellProgram(filename=filename, source_lines=lines)
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        lineno = (e.lineno or 0) + offset
        raise _error(lineno, f"syntax error: {e.msg}", prog.line(lineno)) from None
    ast.increment_lineno(tree, offset)
    # so that tracebacks and traced graphs can show the cell's own lines, and its values take the names it assigns
    linecache.cache[filename] = (len(source), None, [line + "\n" for line in lines], filename)
    record_assignments(filename, tree)

    body: list = []
    losses = []
    for stmt in tree.body:
        body.append(_declarations(stmt, prog, losses, layer=None, top=True))
    for stmt in body:
        _no_numpy_random(stmt, prog)
    body = [_PlainArraysIndexed().visit(s) if s is not None and not getattr(s, "_bp_declaration", False) else s
            for s in body]
    if not losses:
        raise _error(0, "the cell has no Loss: mark the scalar to minimise, e.g. `loss: Loss = mse(pred, y)`")
    if len(losses) > 1:
        where = ", ".join(f"line {n}" for _, n in losses)
        raise _error(losses[1][1], f"the cell has {len(losses)} Losses ({where}); mark exactly one",
                     prog.line(losses[1][1]))
    if not prog.params:
        raise _error(0, "the cell has no Param: declare what to train, e.g. `W: Param = randn(2, 8) * 0.5`")
    prog.loss_name, prog.loss_lineno = losses[0]

    # def __bp_loss__(__params, [__buffers,] <inputs>, <targets>): <body>; return <loss> [, {buffer: value}]
    lead = ["__params", "__buffers"] if prog.buffers else ["__params"]
    args = [ast.arg(n) for n in lead] + [ast.arg(n) for n in prog.data_names]
    result = ast.Name(prog.loss_name, ast.Load())
    if prog.buffers:
        names = [b.name for b in prog.buffers]
        result = ast.Tuple([result, ast.Dict([ast.Constant(n) for n in names],
                                             [ast.Name(n, ast.Load()) for n in names])], ast.Load())
    fn = ast.FunctionDef(
        name="__bp_loss__",
        args=ast.arguments(posonlyargs=[], args=args, vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                           defaults=[]),
        body=[s for s in body if s is not None] + [ast.Return(result)],
        decorator_list=[], returns=None, type_params=[],
    )
    module = ast.Module(body=[fn], type_ignores=[])
    ast.fix_missing_locations(module)
    for node in ast.walk(module):  # the synthetic nodes: attribute them to the loss line
        if getattr(node, "lineno", 1) < first_line:
            node.lineno = node.end_lineno = prog.loss_lineno
    prog.code = compile(module, filename, "exec")
    return prog


def _annotation_of(stmt):
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        ann = stmt.annotation
        name = ann.id if isinstance(ann, ast.Name) else ann.attr if isinstance(ann, ast.Attribute) else None
        if name in ANNOTATIONS:
            return name
    return None


def _misspelt_annotation(stmt):
    """`W: Parm = ...`: a name close to one of the cell's annotations (an ordinary `n: int = 3` is not)."""
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.annotation, ast.Name):
        close = difflib.get_close_matches(stmt.annotation.id, ANNOTATIONS, n=1, cutoff=0.7)
        return close[0] if close and stmt.annotation.id not in ANNOTATIONS else None
    return None


def _declarations(stmt, prog, losses, layer, top):
    """Record declarations in `stmt`; return the statement the loss function runs in its place."""
    kind = _annotation_of(stmt)
    meant = _misspelt_annotation(stmt)
    if meant:
        raise _error(stmt.lineno, f"{stmt.annotation.id} is not an annotation of the cell. Did you mean {meant}? "
                     f"(the annotations are {', '.join(ANNOTATIONS)})", prog.line(stmt.lineno))
    if kind is None:
        if isinstance(stmt, ast.With) and _layer_name(stmt) is not None:
            name = _layer_name(stmt)
            stmt.body = [_declarations(s, prog, losses, name, top=False) or ast.Pass() for s in stmt.body]
            return stmt
        for node in ast.walk(stmt):
            if node is not stmt and isinstance(node, ast.AnnAssign) and _annotation_of(node):
                raise _error(node.lineno, f"declare {_annotation_of(node)}s at the top level of the cell (or "
                             "directly inside `with layer(...):`), not inside other blocks", prog.line(node.lineno))
        return stmt
    name, lineno = stmt.target.id, stmt.lineno
    if stmt.value is None:
        raise _error(lineno, f"{name}: {kind} needs a value, e.g. `{name}: {kind} = ...`", prog.line(lineno))
    if kind == "Loss":
        losses.append((name, lineno))
        return ast.copy_location(ast.Assign([ast.Name(name, ast.Store())], stmt.value), stmt)
    if kind == "Metric":  # reported to the run (train/metrics.py) and bound to the name, as an assignment would
        prog.metrics.append((name, lineno))
        report = ast.Call(ast.Name("__bp_metric__", ast.Load()), [ast.Constant(name), stmt.value], [])
        return ast.copy_location(ast.Assign([ast.Name(name, ast.Store())], report), stmt)
    if kind not in ("Param", "Buffer") and not top:
        raise _error(lineno, f"declare {kind}s at the top level of the cell", prog.line(lineno))
    if kind in ("Param", "Buffer"):
        if any(p.name == name for p in prog.params + prog.buffers):
            raise _error(lineno, f"{name!r} is declared twice", prog.line(lineno))
        (prog.params if kind == "Param" else prog.buffers).append(ParamSpec(name, stmt.value, lineno, layer))
        # in the loss function the name is bound to the traced parameter (or the buffer's value at this step)
        source = "__params" if kind == "Param" else "__buffers"
        value = ast.Subscript(ast.Name(source, ast.Load()), ast.Constant(name), ast.Load())
        bound = ast.copy_location(ast.Assign([ast.Name(name, ast.Store())], value), stmt)
        bound._bp_declaration = True  # its initialiser runs once, at bind time: np.random is fine there
        return bound
    (prog.inputs if kind == "Input" else prog.targets).append((name, stmt.value, lineno))
    return None  # bound as an argument of the loss function


def _no_numpy_random(node, prog):
    """np.random in the cell's body would be drawn once, as the cell is traced: one message saying so (in a Param's
    initialiser it is fine: drawn once is what an initialiser does)."""
    if node is None or getattr(node, "_bp_declaration", False):
        return
    func = getattr(node, "func", None)
    if (isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
            and func.value.attr == "random" and isinstance(func.value.value, ast.Name)
            and func.value.value.id in ("np", "numpy")):
        call = f"{func.value.value.id}.random.{func.attr}(...)"
        raise _error(node.lineno, f"{call} in the cell's body is drawn once, when the cell is traced, and would be "
                     "a constant of the graph: the same numbers at every step. Draw anew at every step with "
                     "randn_like(h), normal(shape), uniform(shape) or dropout(h, rate); for numbers that stay the "
                     "same, draw them in an earlier cell and use that array here.", prog.line(node.lineno))
    for child in ast.iter_child_nodes(node):
        _no_numpy_random(child, prog)


class _PlainArraysIndexed(ast.NodeTransformer):
    """`a[i]` -> `__bp_index__(a, i)` and `f.take(...)` -> `__bp_take__(f.take, ...)`: NumPy does not ask a traced
    index when it indexes a plain array, so the cell asks bpmagic (numpy_dispatch.index and .take), which runs
    NumPy's own indexing for anything but a plain array picked by traced integers (`eye(10)[y]`)."""

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node
        key = node.slice
        parts = key.elts if isinstance(key, ast.Tuple) else [key]
        parts = [ast.Call(ast.Name("__bp_slice__", ast.Load()), [p.lower or ast.Constant(None),
                                                                   p.upper or ast.Constant(None),
                                                                   p.step or ast.Constant(None)], [])
                 if isinstance(p, ast.Slice) else p for p in parts]
        key = ast.Tuple(parts, ast.Load()) if isinstance(key, ast.Tuple) else parts[0]
        call = ast.Call(ast.Name("__bp_index__", ast.Load()), [node.value, key], [])
        return ast.copy_location(call, node)

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "take":
            node.args = [node.func] + node.args
            node.func = ast.copy_location(ast.Name("__bp_take__", ast.Load()), node.func)
        return node


def _layer_name(stmt):
    if len(stmt.items) != 1:
        return None
    call = stmt.items[0].context_expr
    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "layer"
            and len(call.args) == 1 and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
        return call.args[0].value
    return None
