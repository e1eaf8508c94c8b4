"""Data-parallel training on workers: an ipyparallel cluster of MPI engines, steered live from the notebook.

Each worker (an ipyparallel engine, one MPI rank) trains the same compiled step on its part of every global batch,
in a thread, so that its engine keeps answering the notebook. The workers meet once per step in the step's
allreduce (ops/collective.py), which also carries the run's settings from rank 0: a change made in the notebook
(the dashboard, code) is sent to rank 0 and takes effect at the same step on every worker; while paused, the
workers meet without a step to hear what comes next. Every worker starts from rank 0's parameters and keeps its own
history (`WorkersRun.worker_histories()`).

In the notebook, a `WorkersRun` has Run's interface: a relay thread forwards its Controls to rank 0 and brings rank
0's history back about ten times a second, so the dashboard, wait(), pause() and friends work unchanged. When the
run ends, the parameters of the last completed step come back from rank 0 (or, if it died, from a worker that lives):
the workers meet before the update, so a step that one of them did not finish is a step none of them applied.

Workers come from `workers=`: a number (a cluster of that many MPI engines, started by this kernel once and reused),
an `ipyparallel.Cluster` or `Client` (engines started with `--mpi`, e.g. by a Slurm launcher), or "profile:NAME"."""
from .cluster import WorkersError, connect, shutdown
from .run import WorkersRun, fit_on_workers

__all__ = ["WorkersError", "WorkersRun", "connect", "fit_on_workers", "shutdown"]
