"""Reverse-mode differentiation: from the equations recorded in a trace, emit the backward pass into the same trace.

Walking the equations in reverse, each primitive's VJP rule maps the adjoint (cotangent) of its output to adjoints
of its inputs, and adjoints of a value used several times are summed: Linnainmaa's reverse accumulation. Because
VJP rules are themselves traced primitives, the backward pass is an ordinary part of the graph — it can be printed,
compiled, and differentiated again (grad of grad).
"""
from __future__ import annotations

import numpy as np

from . import ops
from .errors import BackpropError
from .ir import Var
from .trace import at_source


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


def backward(trace, start, output, seed, wrt, keep=()):
    """Adjoints of `wrt` (Tracers) for the scalar `output`, through trace.eqns[start:].

    Returns one Tracer per `wrt` entry, or None where the output does not depend on it. Values recorded before
    `start` are constants here (that is what makes nested grads differentiate only their own function).
    With `keep` (Vars computed in the region), returns (grads, {var: adjoint}) — the backpropagated signal at
    those values, as a dashboard shows per layer.
    """
    eqns = trace.eqns[start:]
    active = active_vars(eqns, {t._bp_var for t in wrt})
    kept = {}
    if output._bp_var not in active:
        return ([None] * len(wrt), kept) if keep else [None] * len(wrt)
    adjoint = {output._bp_var: seed}
    with trace.recording(phase="backward"):
        for e in reversed(eqns):
            out = e.outputs[0]
            g = adjoint.pop(out, None)
            if g is None or out not in active:
                continue
            if out in keep:
                kept[out] = g
            _name_adjoint(g, out)
            inputs = [trace.tracers[v] if isinstance(v, Var) else v.value for v in e.inputs]
            with trace.recording(source=e.source, scope=e.scope):
                cts = e.primitive.vjp(g, trace.tracers[out], *inputs, **e.params)
                if not isinstance(cts, (tuple, list)):
                    cts = (cts,)
                assert len(cts) == len(e.inputs), f"VJP of {e.primitive.name} returned {len(cts)} cotangents"
                for v, ct in zip(e.inputs, cts):
                    if ct is None or not isinstance(v, Var) or v not in active:
                        continue
                    assert tuple(ct.shape) == v.shape, (e.primitive.name, ct.shape, v.shape)
                    # a value used twice gets the sum of both adjoints
                    adjoint[v] = ops.add(adjoint[v], ct) if v in adjoint else ct
    grads = [adjoint.get(t._bp_var) for t in wrt]
    for t, g in zip(wrt, grads):
        if g is not None:
            _name_adjoint(g, t._bp_var)
    return (grads, kept) if keep else grads


def layer_outputs(eqns, layers: dict) -> dict:
    """layer -> the Var where that layer's parameters have all entered (z = x @ W + b): its output.

    `layers` maps a layer name to the Vars of its parameters. The adjoint at this Var is the signal that
    backpropagation delivers to the layer (the textbook delta).
    """
    owner = {v: layer for layer, vs in layers.items() for v in vs}
    deps: dict = {v: {owner[v]: {v}} for v in owner}
    found = {}
    for e in eqns:
        merged: dict = {}
        for v in e.inputs:
            for layer, vs in deps.get(v, {}).items():
                merged.setdefault(layer, set()).update(vs)
        if not merged:
            continue
        out = e.outputs[0]
        deps[out] = merged
        for layer, vs in merged.items():
            if layer not in found and len(vs) == len(layers[layer]):
                found[layer] = out
    return found


def _name_adjoint(g, var):
    """Call the adjoint of `h` "dh" when printing, if nothing better names it."""
    gv = getattr(g, "_bp_var", None)
    if var.name and gv is not None and gv.name is None:
        gv.name = "d" + var.name.split(".")[-1]
