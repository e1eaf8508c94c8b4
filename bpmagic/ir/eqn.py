"""What a graph is made of: Var (a value), Literal (a constant written inline), Source (the user's line, defined
below the IR in usercode.py) and Eqn (one primitive applied to them). Graph, in graph.py, is a list of these; the
printer reads them too."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..usercode import Source

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
