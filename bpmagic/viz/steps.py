"""The backward pass of a small program, one node at a time: Linnainmaa's reverse accumulation made visible.

Walking the forward equations in reverse topological order, each step shows the adjoint arriving at the node's
output (dL/d out), the node's local derivative for each input (its VJP rule, written with the same primitives, shown
as an expression in `g`), and their product: what that input receives. Adjoints of a value used twice are summed.
The pass itself is autodiff's (reverse mode over the traced graph); its hook hands each step to this view.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import api, autodiff
from ..errors import BackpropError
from ..ir import Literal, Var
from ..ir.printer import Namer
from ..tracing import new_trace
from .dot import graph_to_dot


def show(value) -> str:
    """A value in a few characters: a number, a tiny array, or shape/norm/mean for anything bigger."""
    a = np.asarray(value)
    if a.ndim == 0:
        return f"{a.item():.6g}"
    if a.size <= 6:
        return np.array2string(a, precision=4, separator=", ").replace("\n", "")
    return f"{'×'.join(map(str, a.shape))} array, norm {np.linalg.norm(a):.4g}, mean {a.mean():.4g}"


def expression(var, eqn_of: dict, names: dict) -> str:
    """`var` as one expression over named values: the VJP rule g * (1 - out * out), not a list of temporaries."""
    if isinstance(var, Literal):
        return repr(var)
    if var in names:
        return names[var]
    e = eqn_of.get(var)
    if e is None:
        return "const"
    args = [expression(v, eqn_of, names) for v in e.inputs]
    # operands written with an operator of their own are parenthesised: g * (1 - out * out)
    nested = [f"({a})" if isinstance(v, Var) and v not in names and v in eqn_of and eqn_of[v].primitive.symbol else a
              for v, a in zip(e.inputs, args)]
    symbol = e.primitive.symbol
    if symbol and len(args) == 2:
        return f"{nested[0]} {symbol} {nested[1]}"
    if symbol and len(args) == 1:
        return f"{symbol}{nested[0]}"
    shown = [f"{k}={v!r}" for k, v in e.params.items() if not k.startswith("_") and not hasattr(v, "shape")]
    return f"{e.primitive.name}({', '.join(args + shown)})"


@dataclass
class Contribution:
    """What one input of a node receives: rule(g) evaluated at the incoming adjoint."""

    input: str
    rule: str  # the local derivative as a VJP rule, e.g. "g * b"
    local: np.ndarray | None  # d out / d input when both are scalars (the rule at g = 1); None for arrays
    product: np.ndarray
    total: np.ndarray  # the input's adjoint after adding this contribution


@dataclass
class BackpropStep:
    index: int
    node: str  # the node's id in the drawing (graph_to_dot names equation k "e{k}")
    edges: list  # drawing ids of the edges into this node, "in0->e3"
    line: int | None
    code: str  # the equation as Python, e.g. "c = multiply(a, b)"
    output: str
    adjoint: np.ndarray  # dL/d output, arriving from the nodes after this one
    contributions: list = field(default_factory=list)

    @property
    def text(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        lines = [f"{where}{self.code}",
                 f"incoming adjoint   dL/d{self.output} = {show(self.adjoint)}"]
        for c in self.contributions:
            lines.append(f"→ {c.input}:  local rule  dL/d{c.input} += {c.rule}   (g = dL/d{self.output})")
            if c.local is not None:
                lines.append(f"     d{self.output}/d{c.input} = {show(c.local)};  product  {show(self.adjoint)} × "
                             f"{show(c.local)} = {show(c.product)}")
            else:
                lines.append(f"     product = {show(c.product)}")
            if not np.array_equal(c.total, c.product):
                lines.append(f"     summed with earlier uses: dL/d{c.input} = {show(c.total)}")
        return "\n".join(lines)


class BackpropSteps:
    """The steps of one backward pass; `gradients` holds dL/d input for each input by name."""

    def __init__(self, graph, steps, gradients, value, dot):
        self.graph, self.steps, self.gradients, self.value, self.dot = graph, steps, gradients, value, dot

    def __len__(self):
        return len(self.steps)

    def __getitem__(self, i):
        return self.steps[i]

    def __repr__(self):
        body = "\n\n".join(f"step {s.index + 1}/{len(self.steps)} [{s.node}]\n{s.text}" for s in self.steps)
        grads = ", ".join(f"dL/d{k} = {show(v)}" for k, v in self.gradients.items())
        return f"{body}\n\ngradients: {grads}"

    def folded(self, summary="The steps with their numbers (open once you have stepped through)"):
        """The steps in a folded section a reader opens when ready (HTML <details>): answers not given away."""
        return _Folded(summary, repr(self))


class _Folded:
    def __init__(self, summary, text):
        self.summary, self.text = summary, text

    def _repr_html_(self):
        from html import escape

        return f"<details><summary>{escape(self.summary)}</summary><pre>{escape(self.text)}</pre></details>"

    def __repr__(self):
        return f"{self.summary}:\n{self.text}"


def _local_derivatives(e, values) -> list:
    """d out / d input for each input of a scalar equation: its VJP rule at g = 1, in a scratch trace."""
    with new_trace("numpy") as scratch:
        out = values[e.outputs[0]]
        ins = [scratch.new_input(values[v]) if isinstance(v, Var) else v.value for v in e.inputs]
        cts = autodiff.pullback(e.primitive, scratch.new_input(np.ones_like(out)), scratch.new_input(out), ins,
                                e.params)
        return [None if ct is None else np.asarray(getattr(ct, "value", ct)) for ct in cts]


def backprop_steps(fn, *args, name=None) -> BackpropSteps:
    """Trace `fn(*args)` (a scalar program) and replay its backward pass node by node."""
    with new_trace("numpy") as tr:
        new_args, inputs = api._trace_inputs(tr, fn, args)
        out = fn(*new_args)
        if not hasattr(out, "_bp_var") or out._bp_var.shape != ():
            raise BackpropError("step_through needs a function that returns a scalar (the loss) computed from "
                                f"its arguments; this one returned {type(out).__name__} "
                                f"{getattr(out, 'shape', '')}")
        wrt = [t for _, _, ts in inputs for t in ts]
        graph = tr.graph(wrt, [out], name=name or getattr(fn, "__name__", "f").replace("<lambda>", "f"))
        args = [t.value for t in wrt]
    pullbacks = []
    grads = autodiff.grad_of_graph(graph, args, on_adjoint=pullbacks.append)
    values = {v: np.asarray(a) for v, a in grads.values.items()}
    namer = Namer()  # the trace named the user's values
    names = {v: namer(v) for v in graph.vars}
    dot = graph_to_dot(graph, collapse=False, names=names, stats={v: f"= {show(values[v])}" for v in names})
    into = {}
    for key, var in dot.bp_edges.items():
        into.setdefault(key.split("->")[1], []).append(key)
    index = {id(e): k for k, e in enumerate(graph.eqns)}
    eqn_of = {o: x for x in grads.graph.eqns for o in x.outputs}
    steps = []
    for pb in pullbacks:
        e, k = pb.eqn, index[id(pb.eqn)]
        g = np.asarray(pb.adjoint.value)
        call = ", ".join(names.get(v, repr(v)) if isinstance(v, Var) else repr(v) for v in e.inputs)
        step = BackpropStep(len(steps), f"e{k}", into.get(f"e{k}", []), e.source.lineno if e.source else None,
                            f"{names[e.outputs[0]]} = {e.primitive.name}({call})", names[e.outputs[0]], g)
        # the rule as an expression in g and the forward values: g * (1 - out * out)
        shown = {**names, pb.adjoint._bp_var: "g"}
        scalar = values[e.outputs[0]].ndim == 0
        locals_ = _local_derivatives(e, values) if scalar else [None] * len(e.inputs)
        for i, (v, ct, total) in enumerate(zip(e.inputs, pb.cotangents, pb.totals)):
            if ct is None or i in e.primitive.nondiff_inputs:
                continue
            product = np.asarray(ct.value)
            step.contributions.append(Contribution(
                names[v], expression(ct._bp_var, eqn_of, shown), locals_[i] if scalar and product.ndim == 0 else None,
                product, np.asarray(total.value)))
        steps.append(step)
    gradients = {names[v]: np.asarray(grads.adjoints[v]) if v in grads.adjoints else np.zeros(v.shape, v.dtype)
                 for v in graph.inputs}
    return BackpropSteps(graph, steps, gradients, values[out._bp_var], dot)
