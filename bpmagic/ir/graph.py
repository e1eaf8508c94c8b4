"""Graph: a program as a flat list of equations over single-assignment variables, printable as Python."""
from __future__ import annotations

from dataclasses import dataclass, field

from .eqn import Var
from .printer import graph_to_python


@dataclass(eq=False)
class Graph:
    """A program: inputs, constants (Var -> array), equations in execution order, outputs."""

    inputs: list
    eqns: list
    outputs: list
    consts: dict = field(default_factory=dict)
    name: str = "f"

    def __str__(self):
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
