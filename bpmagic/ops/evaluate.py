"""The one interpreter of a graph: each equation in turn, by its primitive's implementation over an array module.

It sits with the primitives (below tracing and compile) so that every floor that runs a graph equation by equation
uses it: a trace loading a finished graph (tracing), constant folding (compile), the JAX lowering that check.py
differentiates. The compiled step is the other way to run a graph: generated code (compile/executor.py).
"""
from __future__ import annotations

from ..ir import Graph, Var


def evaluate(graph: Graph, inputs, xp, on_value=None, apply=None):
    """Interpret `graph` one equation at a time (slow, but it can inspect every value: `on_value(eqn, value)`).
    apply(eqn, operands): how an equation is computed, where not by its primitive's implementation over `xp` (the
    JAX lowering that check.py differentiates)."""
    env = dict(zip(graph.inputs, inputs))
    env.update({v: xp.asarray(a) for v, a in graph.consts.items()})
    for e in graph.eqns:
        args = [env[v] if isinstance(v, Var) else v.value for v in e.inputs]
        value = e.primitive.impl(xp, *args, **e.params) if apply is None else apply(e, args)
        env[e.outputs[0]] = value
        if on_value is not None:
            on_value(e, value)
    return [env[v] for v in graph.outputs]
