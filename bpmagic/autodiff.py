"""Reverse-mode differentiation: from the equations recorded in a trace, emit the backward pass into the same trace.

Walking the equations in reverse, each primitive's VJP rule maps the adjoint (cotangent) of its output to adjoints
of its inputs, and adjoints of a value used several times are summed: Linnainmaa's reverse accumulation. Because
VJP rules are themselves traced primitives, the backward pass is an ordinary part of the graph — it can be printed,
compiled, and differentiated again (grad of grad). A finished Graph is differentiated the same way, by loading it
into a trace (`grad_of_graph`); a hook sees each adjoint as it is formed, which is how the views show the pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .errors import BackpropError
from .ir import Eqn, Graph, Var
from .tracing import new_trace
from .usercode import at_source


def _differentiable(dtype) -> bool:
    return np.dtype(dtype).kind in "fc"


def active_vars(eqns, wrt_vars) -> set:
    """Vars that depend differentiably on `wrt_vars`: only these need adjoints."""
    active = set(wrt_vars)
    for e in eqns:
        prim = e.primitive
        if not any(isinstance(v, Var) and v in active for i, v in enumerate(e.inputs) if i not in prim.nondiff_inputs):
            continue
        if prim.vjp is None:
            if prim.op_info.differentiable:
                raise _no_vjp(e)
            continue
        active.update(v for v in e.outputs if _differentiable(v.dtype))
    return active


def _no_vjp(eqn) -> BackpropError:
    """A primitive that forgot its VJP must not pass for one whose gradient is zero (JAX refuses it too)."""
    name = eqn.primitive.name
    return at_source(eqn.source, BackpropError(
        f"cannot differentiate through {name}: it has no VJP rule. Give it one with @{name}.defvjp, or, if it has "
        f"no gradient (a step function, an index), declare it with @bp.primitive(differentiable=False)."))


@dataclass
class Pullback:
    """One step of reverse accumulation, as a hook sees it: the adjoint arriving at `eqn`'s output (complete: every
    later use has sent its part), what the equation's VJP sends to each input (None where nothing flows), and each
    such input's adjoint so far, this contribution included. Values are Tracers: `.value` holds the number."""

    eqn: Eqn
    adjoint: object
    cotangents: list
    totals: list


@dataclass
class Adjoints:
    """What a backward pass produced: the gradient of each `wrt` (None where the output does not depend on it), and
    the adjoint of every `keep` Var it reached."""

    grads: list
    kept: dict = field(default_factory=dict)


def pullback(primitive, g, out, inputs, params) -> tuple:
    """The cotangents `primitive`'s VJP rule sends to its inputs for the adjoint `g` of its output, one per input."""
    cts = primitive.vjp(g, out, *inputs, **params)
    cts = tuple(cts) if isinstance(cts, (tuple, list)) else (cts,)
    assert len(cts) == len(inputs), f"VJP of {primitive.name} returned {len(cts)} cotangents for {len(inputs)} inputs"
    return cts


def backward(trace, start, output, seed, wrt, keep=(), on_adjoint=None) -> Adjoints:
    """Adjoints of `wrt` (Tracers) for the scalar `output`, through trace.eqns[start:], recorded into the trace.

    Values recorded before `start` are constants here (that is what makes nested grads differentiate only their own
    function). `keep`: Vars computed in the region whose adjoints to return too (the backpropagated signal at a
    layer, as a dashboard shows it). `on_adjoint(Pullback)` is called for each equation as its adjoint is pulled
    back through it, in reverse order: a view can show the pass one node at a time.
    """
    eqns = trace.eqns[start:]
    active = active_vars(eqns, {t._bp_var for t in wrt})
    result = Adjoints([None] * len(wrt))
    if output._bp_var not in active:
        return result
    adjoint = {output._bp_var: seed}
    trace.name_values(start)  # before the adjoints are formed, so that the adjoint of h is called dh
    _name_adjoint(seed, output._bp_var)
    with trace.recording(phase="backward"):
        for e in reversed(eqns):
            out = e.outputs[0]
            g = adjoint.pop(out, None)
            if g is None or out not in active:
                continue
            if out in keep:
                result.kept[out] = g
            _name_adjoint(g, out)
            inputs = [trace.tracers[v] if isinstance(v, Var) else v.value for v in e.inputs]
            with trace.recording(source=e.source, scope=e.scope):
                try:
                    cts = list(pullback(e.primitive, g, trace.tracers[out], inputs, e.params))
                except BackpropError as err:  # a gradient that does not exist here: said at the user's line
                    raise at_source(e.source, err) from None
                totals = [None] * len(cts)
                for i, (v, ct) in enumerate(zip(e.inputs, cts)):
                    if ct is None or not isinstance(v, Var) or v not in active:
                        cts[i] = None
                        continue
                    assert tuple(ct.shape) == v.shape, (e.primitive.name, ct.shape, v.shape)
                    # a value used twice gets the sum of both adjoints
                    adjoint[v] = totals[i] = ops.add(adjoint[v], ct) if v in adjoint else ct
            if on_adjoint is not None:
                on_adjoint(Pullback(e, g, cts, totals))
    result.grads = [adjoint.get(t._bp_var) for t in wrt]
    for t, g in zip(wrt, result.grads):
        if g is not None:
            _name_adjoint(g, t._bp_var)
    return result


@dataclass
class GraphGradients:
    """Reverse mode over a Graph at given inputs: `graph` computes the output and then the gradients of `wrt` (its
    backward part is `graph.part("backward")`); `values` holds every value of the original graph, `adjoints` the
    gradient at each of them that the output depends on (the `wrt` inputs included)."""

    graph: Graph
    values: dict
    adjoints: dict


def grad_of_graph(graph, inputs, wrt=None, on_adjoint=None, backend="numpy") -> GraphGradients:
    """Differentiate `graph`'s first output (a scalar) with respect to `wrt` (Vars among its inputs; default all of
    them), evaluated at `inputs` (arrays, one per graph input). The graph's own Vars and equations are kept, so
    `on_adjoint` (see `backward`) and the results name them: no re-tracing of the code that made the graph."""
    wrt = list(graph.inputs) if wrt is None else list(wrt)
    with new_trace(backend) as tr:
        tr.load(graph, inputs)
        output = tr.tracers[graph.outputs[0]]
        assert output.shape == (), f"grad_of_graph needs a scalar first output, not {output.shape}"
        forward = [v for e in graph.eqns for v in e.outputs]
        adj = backward(tr, 0, output, tr.const(np.ones((), output.dtype)), [tr.tracers[v] for v in wrt],
                       keep=set(forward), on_adjoint=on_adjoint)
        grads = [g if g is not None else tr.const(np.zeros(v.shape, v.dtype)) for g, v in zip(adj.grads, wrt)]
        result = tr.graph(list(graph.inputs), [output] + grads, name=f"{graph.name}_grad")
        values = {v: tr.tracers[v].value for v in graph.vars}
        adjoints = {v: t.value for v, t in adj.kept.items()}
        adjoints.update({v: g.value for v, g in zip(wrt, adj.grads) if g is not None})
    return GraphGradients(result, values, adjoints)


def _name_adjoint(g, var):
    """Call the adjoint of `h` "dh" when printing, if nothing better names it."""
    gv = getattr(g, "_bp_var", None)
    if var.name and gv is not None and gv.name is None:
        gv.name = "d" + var.name.split(".")[-1]
