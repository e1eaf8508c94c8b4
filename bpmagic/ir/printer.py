"""Print a Graph as readable Python: one assignment per equation, commented with the user's source line."""
from __future__ import annotations

import keyword

from .core import Literal


class Namer:
    """Readable, unique names: a Var's own hint when it has one, else t1, t2, ..."""

    def __init__(self):
        self.names: dict = {}
        self.taken: set = set()
        self.counter = 0

    def __call__(self, v) -> str:
        if isinstance(v, Literal):
            return repr(v)
        if v not in self.names:
            base = _identifier(v.name) if v.name else None
            name = base
            n = 1
            while name is None or name in self.taken:
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
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in str(hint))
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
            if where.lineno == 0:  # not from a user's line (the optimizer's update, say)
                label = e.phase
            else:
                label = f"line {where.lineno}" if e.phase == "forward" else f"{e.phase} of line {where.lineno}"
            code = f": {where.line.strip()}" if where.line else ""
            text = f"{text:<44}  # {label}{code}"
        lines.append(text)
    outs = ", ".join(name(v) for v in graph.outputs)
    lines.append(f"    return {outs}")
    return "\n".join(lines)
