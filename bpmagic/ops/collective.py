"""allreduce: where data-parallel workers meet in a training step — the sum of a buffer over every worker.

The step compiled for workers (train/step.py) packs each worker's weighted gradients and loss into one buffer and
sums it over the workers here, between the backward pass and the update, so `print(step)` shows the line where the
workers meet and the finiteness guard after it sees the same sums on every worker. The transport is the step's
`Workers` (backends/collective.py: MPI over host memory), a parameter of the equation.
"""
from __future__ import annotations

from .core import Primitive


def _allreduce_impl(xp, x, *, workers, out=None):
    return workers.allreduce(x, out)


def _allreduce_lowering(ctx, x, out=None, workers=None):
    name = ctx.bind("_workers", lambda: workers)
    return f"{name}.allreduce({x}, {out})"


allreduce = Primitive(
    "allreduce", _allreduce_impl, lambda x, *, workers: (tuple(x.shape), x.dtype), accepts_out=True,
    lowering=_allreduce_lowering, effects=("collective",), differentiable=False, numpy_name=None,
    doc="The sum of an array over every worker of a data-parallel run (the workers meet here).",
    vjp_math="no gradient: the workers meet after the backward pass")
