"""Print a Graph as readable Python: one assignment per equation, commented with the user's source line."""
from __future__ import annotations

import keyword
import re

from .eqn import Literal


def is_numbered(name) -> bool:
    """Whether `name` is one a Namer numbers an unnamed value with (t1, t2, ...), not one the user gave."""
    return bool(re.fullmatch(r"t\d+", name or ""))


class Namer:
    """Readable, unique names: a Var's own hint when it has one (or the one `hints` gives it), else t1, t2, ..."""

    def __init__(self, hints: dict | None = None, reserved=lambda name: False):
        self.hints = hints or {}
        self.names: dict = {}
        self.taken: set = set()
        self.reserved = reserved  # names the caller keeps for itself (generated code's own variables)
        self.counter = 0

    def __call__(self, v) -> str:
        if isinstance(v, Literal):
            return repr(v)
        if v not in self.names:
            hint = v.name or self.hints.get(v)
            base = _identifier(hint) if hint else None
            name = base
            n = 1
            while name is None or name in self.taken or self.reserved(name):
                if base is None:
                    self.counter += 1
                    name = f"t{self.counter}"
                else:
                    n += 1
                    name = f"{base}_{n}"
            self.taken.add(name)
            self.names[v] = name
        return self.names[v]


def _identifier(hint: str) -> str:
    """`hint` as a Python name: Ws[3] -> Ws_3, head['W'] -> head_W (an entry of a list or dict of Params)."""
    s = re.sub(r"[^0-9A-Za-z_]+", "_", str(hint)).strip("_") if not str(hint).isidentifier() else str(hint)
    if not s or s[0].isdigit() or keyword.iskeyword(s):
        s = "_" + s
    return s


def _param(value) -> str:
    if hasattr(value, "itemsize") and hasattr(value, "kind"):  # a NumPy dtype
        return repr(str(value))
    return repr(value)


def graph_to_python(graph, namer: Namer | None = None) -> str:
    name = namer or Namer()
    args = ", ".join(f"{name(v)}: {v.type_str}" for v in graph.inputs)
    lines = [f"def {graph.name}({args}):"]
    for v, value in graph.consts.items():
        shown = repr(value.tolist()) if getattr(value, "size", 99) <= 4 else "..."
        lines.append(f"    {name(v)} = const({shown})  # {v.type_str}")
    last_line = None
    for e in graph.eqns:
        call_args = [name(v) for v in e.inputs]
        call_args += [f"{k}={_param(val)}" for k, val in e.params.items() if not k.startswith("_")]
        outs = ", ".join(name(v) for v in e.outputs)
        text = f"    {outs} = {e.primitive.name}({', '.join(call_args)})"
        where = e.source
        if where is not None and (where.lineno, e.phase) != last_line:
            last_line = (where.lineno, e.phase)
            text = f"{text:<44}  # {source_comment(e)}"
        lines.append(text)
    outs = ", ".join(name(v) for v in graph.outputs)
    lines.append(f"    return {outs}")
    return "\n".join(lines)


def source_label(eqn) -> str:
    """"line 8", "backward of line 8", or the phase alone for equations of no user line (the optimizer's update)."""
    where = eqn.source
    if where is None or where.lineno == 0:
        return eqn.phase
    return f"line {where.lineno}" if eqn.phase == "forward" else f"{eqn.phase} of line {where.lineno}"


def source_comment(eqn) -> str:
    """The label with the user's code: "line 8: h = tanh(x @ W1 + b1)"."""
    where = eqn.source
    return source_label(eqn) + (f": {where.line.strip()}" if where is not None and where.line else "")


def assigned_names(graph) -> dict:
    """Var -> the name the user's code gave it: the last value computed by a statement `c = a * b` is c (in the
    forward pass: the backward pass of that statement computes other values)."""
    last = {}
    for e in graph.eqns:
        if e.source and e.phase == "forward" and (found := e.source.assignment):
            last[(e.source.filename, found[0])] = (e.outputs[0], found[1])
    return dict(last.values())
