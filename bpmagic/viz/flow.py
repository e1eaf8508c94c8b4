"""Gradient flow of a Run: every forward value with its gradient, micrograd's data|grad for tensors.

The run's forward graph (the loss as its compiled step computes it) is differentiated at the current parameters and
a batch, keeping the adjoint of every value, so each node can show a value/gradient summary and each edge can be
coloured by gradient magnitude (the drawing sets the colour scale, over the edges it shows). The model's code is
not traced again: reverse mode runs over the graph the step was compiled from.
"""
from __future__ import annotations

import numpy as np

from .. import autodiff


def _norm(backend, value) -> float:
    return float(np.linalg.norm(np.asarray(backend.to_numpy(value), np.float64)))


def _summary(backend, value, grad=None) -> str:
    v = np.asarray(backend.to_numpy(value), np.float64)
    text = f"|data| {np.linalg.norm(v):.3g}  mean {v.mean():.3g}" if v.size else "empty"
    if grad is not None:
        text += f"\n|grad| {_norm(backend, grad):.3g}"
    return text


def gradient_flow(run, batch=None):
    """(forward graph, stats, grad_norms) for `run` on `batch` (default: its first batch): the step's loss graph,
    Var -> summary text and Var -> |gradient|, for graph_to_dot."""
    step = run.step
    backend = step.backend
    if batch is None:
        batch = [d[:run.batch_size] for d in run.data]
    plan, inputs = step.plan_and_inputs(*batch)
    graph = plan.loss_graph
    value_of = dict(zip(plan.graph.inputs, inputs))
    params = graph.inputs[:len(plan.layout.params)]
    flow = autodiff.grad_of_graph(graph, [value_of[v] for v in graph.inputs], wrt=params, backend=backend)
    graph.name = f"{run.name}_gradient_flow"
    stats = {v: _summary(backend, flow.values[v], flow.adjoints.get(v)) for v in graph.vars}
    norms = {v: _norm(backend, g) for v, g in flow.adjoints.items()}
    return graph, stats, norms
