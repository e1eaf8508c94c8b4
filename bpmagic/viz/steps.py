"""The backward pass of a small program, one node at a time: Linnainmaa's reverse accumulation made visible.

Walking the forward equations in reverse topological order, each step shows the adjoint arriving at the node's
output (dL/d out), the node's local derivative for each input (its VJP rule, written with the same primitives, shown
as an expression in `g`), and their product: what that input receives. Adjoints of a value used twice are summed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import api
from ..autodiff import active_vars
from ..errors import BackpropError
from ..ir import Literal, Var
from ..ir.printer import Namer, assigned_names
from ..trace import new_trace
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
    nested = [f"({a})" if isinstance(v, Var) and v in eqn_of and eqn_of[v].primitive.symbol else a
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


def _local_rule(e, g_value, values, names):
    """Trace e's VJP at the adjoint `g_value` in a scratch trace: (cotangent values, rule expressions)."""
    with new_trace("numpy") as scratch:
        g = scratch.new_input(g_value, name="g")
        out = scratch.new_input(values[e.outputs[0]])
        ins = [scratch.new_input(values[v]) if isinstance(v, Var) else v.value for v in e.inputs]
        cts = e.primitive.vjp(g, out, *ins, **e.params)
        if not isinstance(cts, (tuple, list)):
            cts = (cts,)
        shown = {g._bp_var: "g", out._bp_var: names[e.outputs[0]]}
        shown.update({t._bp_var: names[v] for t, v in zip(ins, e.inputs) if isinstance(v, Var)})
        eqn_of = {o: x for x in scratch.eqns for o in x.outputs}
        rules = [None if ct is None else expression(getattr(ct, "_bp_var", ct), eqn_of, shown) for ct in cts]
        return [None if ct is None else np.asarray(getattr(ct, "value", ct)) for ct in cts], rules


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
        values = {v: np.asarray(t.value) for v, t in tr.tracers.items()}
    namer = Namer()
    for v, hint in assigned_names(graph).items():
        v.name = v.name or hint
    names = {v: namer(v) for v in list(graph.inputs) + list(graph.consts)}
    names.update({v: namer(v) for e in graph.eqns for v in e.outputs})
    dot = graph_to_dot(graph, collapse=False, stats={v: f"= {show(values[v])}" for v in names})
    into = {}
    for key, var in dot.bp_edges.items():
        into.setdefault(key.split("->")[1], []).append(key)
    active = active_vars(graph.eqns, set(graph.inputs))
    adjoint = {out._bp_var: np.ones((), values[out._bp_var].dtype)}
    steps = []
    for k in reversed(range(len(graph.eqns))):
        e = graph.eqns[k]
        g = adjoint.get(e.outputs[0])
        if g is None or e.outputs[0] not in active:
            continue
        call = ", ".join(names.get(v, repr(v)) if isinstance(v, Var) else repr(v) for v in e.inputs)
        step = BackpropStep(len(steps), f"e{k}", into.get(f"e{k}", []), e.source.lineno if e.source else None,
                            f"{names[e.outputs[0]]} = {e.primitive.name}({call})", names[e.outputs[0]], g)
        products, rules = _local_rule(e, g, values, names)
        scalar = values[e.outputs[0]].ndim == 0
        locals_ = (_local_rule(e, np.ones_like(g), values, names)[0] if scalar else [None] * len(products))
        for i, (v, ct, rule, local) in enumerate(zip(e.inputs, products, rules, locals_)):
            if ct is None or not isinstance(v, Var) or v not in active or i in e.primitive.nondiff_inputs:
                continue
            adjoint[v] = adjoint[v] + ct if v in adjoint else ct
            step.contributions.append(Contribution(names[v], rule, local if scalar and ct.ndim == 0 else None,
                                                   ct, adjoint[v]))
        steps.append(step)
    gradients = {names[v]: adjoint.get(v, np.zeros(v.shape, v.dtype)) for v in graph.inputs}
    return BackpropSteps(graph, steps, gradients, values[out._bp_var], dot)
