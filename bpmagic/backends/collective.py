"""Where data-parallel workers' arrays meet: a sum over every worker, by MPI over host memory (mpi4py).

A training step compiled for workers holds one `Workers` in its allreduce equation (ops/collective.py). Each call
sums one contiguous buffer over the workers and, in the same round, carries the run's settings from rank 0 to every
worker (what the notebook asked for: learning rates, pause, stop), so a change takes effect at the same step
everywhere. While a step is traced (concrete values) or diagnosed, the workers do not meet (`alone()`): a
worker compiles a new plan when its own batch's shape is new, which the others need not be doing at that moment.

mpi4py is imported only here, and only when a Workers is made for a live communicator.
"""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

#: how often a worker that waits for the others without computing (a pause) looks whether they arrived
POLL = 0.005


class WorkersFailed(RuntimeError):
    """The workers could not meet: a worker died, or its process stopped answering."""


class Workers:
    """The workers of one run, seen from one of them: `rank` of `size`.

    comm: an mpi4py communicator, or None for a step compiled only to be shown (the notebook's copy of what the
    workers run: print(run.step)), which never meets anyone.
    settings: the length of the settings vector carried from rank 0 at each meeting (0: none).
    """

    def __init__(self, comm=None, size=None, rank=0, settings=0):
        self.comm = comm
        self.size = int(comm.Get_size() if comm is not None else size)
        self.rank = int(comm.Get_rank() if comm is not None else rank)
        self.settings_out = np.zeros(settings, np.float64)  # rank 0: what the next meeting carries
        self.settings_in = np.zeros(settings, np.float64)  # every worker: what the latest meeting brought
        self.meetings = 0
        self._alone = threading.local()

    def __repr__(self):
        return f"<{self.size} workers>"

    @contextlib.contextmanager
    def alone(self):
        """Within this block the allreduce returns this worker's own contribution (tracing, diagnosing a NaN)."""
        depth = getattr(self._alone, "depth", 0)
        self._alone.depth = depth + 1
        try:
            yield
        finally:
            self._alone.depth = depth

    def allreduce(self, x, out=None):
        """The sum of `x` over every worker (into `out`), and rank 0's settings into `settings_in`."""
        out = np.empty_like(x) if out is None else out
        if self.comm is None or getattr(self._alone, "depth", 0):
            out[...] = x
            return out
        from mpi4py import MPI

        requests = [self.comm.Iallreduce(np.ascontiguousarray(x), out, op=MPI.SUM)]
        if self.settings_in.size:
            if self.rank == 0:
                self.settings_in[...] = self.settings_out
            requests.append(self.comm.Ibcast(self.settings_in, root=0))
        self._wait(requests, spin=True)
        self.meetings += 1
        return out

    def exchange_settings(self, ready=lambda: True, gave_up=lambda: False):
        """Meet without a step (while paused): rank 0 sends its settings once `ready()`; the others wait for them
        without spinning. Returns False if `gave_up()` turned true before the meeting happened."""
        if self.comm is None:
            return True
        if self.rank == 0:
            while not ready():
                if gave_up():
                    return False
                time.sleep(POLL)
            self.settings_in[...] = self.settings_out
        self._wait([self.comm.Ibcast(self.settings_in, root=0)], spin=False)
        return True

    def _wait(self, requests, spin):
        """Wait for `requests`; a step's meeting spins (the others are a few microseconds away), a pause's sleeps.
        A dead peer surfaces as an MPI error (Open MPI's fault tolerance, ULFM, turned on by the launcher)."""
        from mpi4py import MPI

        try:
            if spin:
                MPI.Request.Waitall(requests)
                return
            while not MPI.Request.Testall(requests):
                time.sleep(POLL)
        except MPI.Exception as e:
            raise WorkersFailed(f"the workers could not meet: {e.Get_error_string()}") from None
