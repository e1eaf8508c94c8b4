"""Var, Literal, Eqn and Graph."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count()


def _dtype_name(dtype) -> str:
    name = str(dtype)
    return {"float32": "f32", "float64": "f64", "float16": "f16", "int64": "i64", "int32": "i32",
            "bool": "bool", "uint8": "u8", "int8": "i8", "bfloat16": "bf16"}.get(name, name)


class Var:
    """A value in a graph: shape and dtype; `name` is a hint for printing (a param's name, say)."""

    __slots__ = ("id", "shape", "dtype", "name", "__weakref__")

    def __init__(self, shape, dtype, name: str | None = None):
        self.id = next(_ids)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.name = name

    @property
    def type_str(self) -> str:
        return f"{_dtype_name(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self):
        return f"Var({self.name or self.id}: {self.type_str})"


class Literal:
    """A constant scalar written inline in the graph (e.g. the 2 in `x ** 2`). `value` is a 0-d array."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    shape = property(lambda self: tuple(self.value.shape))
    dtype = property(lambda self: self.value.dtype)

    def __repr__(self):
        return str(self.value)  # a 0-d array prints its shortest form for its dtype: 1e-07, not 1.00000001e-07

    def dtype_in(self, eqn):
        """The dtype this literal computes in within `eqn`: a float literal beside a float array takes that array's
        dtype (what NumPy does with a Python float, NEP 50), so float32 math stays float32; else its own."""
        if self.dtype.kind == "f":
            for v in eqn.inputs:
                if isinstance(v, Var) and getattr(v.dtype, "kind", "") == "f":
                    return v.dtype
        return self.dtype


@dataclass(frozen=True)
class Source:
    """Where the user wrote the operation."""

    filename: str
    lineno: int
    line: str = ""

    def __str__(self):
        return f"line {self.lineno}"


@dataclass(eq=False)
class Eqn:
    """`outputs = primitive(*inputs, **params)`, recorded at `source`.

    `phase` is "forward", "backward" or "update": which part of a training step wrote the equation.
    `scope` names the composite calls that recorded it, outermost first (("cross_entropy", "logsumexp")), so a view
    can draw a composite as one node; a backward equation carries the scope of the forward equation it differentiates.
    """

    primitive: Any
    inputs: list
    outputs: list
    params: dict = field(default_factory=dict)
    source: Source | None = None
    phase: str = "forward"
    scope: tuple = ()

    @property
    def out(self) -> Var:
        return self.outputs[0]


@dataclass(eq=False)
class Graph:
    """A program: inputs, constants (Var -> array), equations in execution order, outputs."""

    inputs: list
    eqns: list
    outputs: list
    consts: dict = field(default_factory=dict)
    name: str = "f"

    def __str__(self):
        from .printer import graph_to_python

        return graph_to_python(self)

    __repr__ = __str__

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    # set by bpmagic.viz (a front end) so that graphs draw themselves in notebooks; the IR knows no Graphviz
    display_hook = None

    def _repr_mimebundle_(self, include=None, exclude=None):
        if Graph.display_hook is None:
            return {"text/plain": str(self)}
        return Graph.display_hook(self, include, exclude)

    @property
    def vars(self) -> list:
        """Every variable: inputs, constants, then equation outputs in order."""
        out = list(self.inputs) + list(self.consts)
        for e in self.eqns:
            out.extend(e.outputs)
        return out

    def producers(self) -> dict:
        """Var -> the Eqn that computes it."""
        return {v: e for e in self.eqns for v in e.outputs}

    def consumers(self) -> dict:
        """Var -> the Eqns that read it, in order."""
        uses: dict = {}
        for e in self.eqns:
            for v in e.inputs:
                if isinstance(v, Var):
                    uses.setdefault(v, []).append(e)
        return uses

    def part(self, phase: str) -> "Graph":
        """The equations of one phase ("forward", "backward" or "update") as a graph of their own.

        Its inputs are what those equations read from elsewhere; its outputs are what the rest of the graph reads.
        """
        eqns = [e for e in self.eqns if e.phase == phase]
        mine = {v for e in eqns for v in e.outputs}
        read_elsewhere = {v for e in self.eqns if e.phase != phase for v in e.inputs} | set(self.outputs)
        outputs = [v for e in eqns for v in e.outputs if v in read_elsewhere and v in mine]
        return self.subgraph(eqns, outputs, name=f"{self.name}_{phase}")

    def subgraph(self, eqns, outputs, name=None) -> "Graph":
        """The graph of `eqns` alone: whatever they read but do not compute becomes an input (or stays a constant)."""
        defined = {v for e in eqns for v in e.outputs}
        inputs, seen = [], set()
        for e in eqns:
            for v in e.inputs:
                if isinstance(v, Var) and v not in defined and v not in self.consts and v not in seen:
                    seen.add(v)
                    inputs.append(v)
        for v in outputs:
            if v not in defined and v not in self.consts and v not in seen:
                seen.add(v)
                inputs.append(v)
        used = {v for e in eqns for v in e.inputs} | set(outputs)
        consts = {v: a for v, a in self.consts.items() if v in used}
        return Graph(inputs, list(eqns), list(outputs), consts, name or self.name)
