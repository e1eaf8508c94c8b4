"""Gradient flow of a Run: every forward value with its gradient, micrograd's data|grad for tensors.

The run's loss is traced once more on its current parameters and a batch, with the adjoint of every forward value
kept, so each node can show a value/gradient summary and each edge can be coloured by gradient magnitude (the
drawing sets the colour scale, over the edges it shows).
"""
from __future__ import annotations

import numpy as np

from .. import autodiff
from ..ir import Var
from ..trace import new_trace


def _summary(backend, value, grad=None) -> str:
    v = np.asarray(backend.to_numpy(value), np.float64)
    text = f"|data| {np.linalg.norm(v):.3g}  mean {v.mean():.3g}" if v.size else "empty"
    if grad is not None:
        g = np.asarray(backend.to_numpy(grad), np.float64)
        text += f"\n|grad| {np.linalg.norm(g):.3g}"
    return text


def gradient_flow(run, batch=None):
    """(forward graph, stats, grad_norms) for `run` on `batch` (default: its first batch): Var -> summary text and
    Var -> |gradient|, for graph_to_dot."""
    step = run.step
    backend = step.backend
    if batch is None:
        batch = [d[:run.batch_size] for d in run.data]
    with new_trace(backend) as tr:
        p_in = {n: tr.new_input(p, name=n) for n, p in run.params.items()}
        buf_in = {n: tr.new_input(b, name=n) for n, b in step.buffers.items()}
        b_in = [tr.new_input(b, name=n) for b, n in zip(batch, step.batch_names)]
        loss, _ = step.call_loss(p_in, b_in, buf_in)
        forward = [e.outputs[0] for e in tr.eqns]
        seed = tr.const(np.ones((), loss.dtype))
        grads, adjoints = autodiff.backward(tr, 0, loss, seed, list(p_in.values()), keep=set(forward) or {None})
        graph = tr.graph(list(p_in.values()) + b_in, [loss], name=f"{run.name}_gradient_flow")
        graph.eqns = [e for e in graph.eqns if e.phase == "forward"]
        adjoints.update({t._bp_var: g for t, g in zip(p_in.values(), grads) if g is not None})
        stats, norms = {}, {}
        for v in list(graph.inputs) + forward:
            if not isinstance(v, Var) or v not in tr.tracers:
                continue
            g = adjoints.get(v)
            stats[v] = _summary(backend, tr.tracers[v].value, None if g is None else g.value)
            if g is not None:
                norms[v] = float(np.linalg.norm(np.asarray(backend.to_numpy(g.value), np.float64)))
    return graph, stats, norms
