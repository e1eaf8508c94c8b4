"""On each worker (an ipyparallel engine, one MPI rank): the worker's Run, trained in a thread so that the engine
keeps answering the notebook, meeting the others once per step in the step's allreduce, which also carries rank 0's
settings; and the functions the notebook calls on the engines (engine_start, engine_request, engine_poll, ...)."""
from __future__ import annotations

import os

from ...backends.blas import share_cores
from ..checkpoint import Checkpointing
from ..controls import Controls
from ..drivers import ThreadDriver, _END, advance
from ..loop import Job
from ..step import CompiledStep
from ..trainer import Run
from .settings import Settings
from .spec import _rebuild_optimizer, _refile

_WORKERS: dict = {}  # run id -> _Worker, on an engine


class _Worker:
    """One worker's side of a run: its Run, its communicator, and the settings agreed so far."""

    def __init__(self, run, workers, settings: Settings, first: dict):
        self.run, self.workers, self.settings = run, workers, settings
        self.applied = first  # the settings in use (agreed at the latest meeting)
        self.requested = first["version"]  # rank 0: the newest version the notebook sent
        workers.settings_out = settings.encode(first)

    def request(self, s: dict):
        """Rank 0: what the notebook asks for; carried to every worker at the next meeting."""
        self.workers.settings_out = self.settings.encode(s)  # one reference swap: the meeting reads it whole
        self.requested = s["version"]

    def apply_agreed(self):
        """After a meeting: the settings it carried, applied to this worker's Controls — on every worker alike."""
        new = self.settings.decode(self.workers.settings_in)
        old, self.applied = self.applied, new
        if new["version"] == old["version"]:
            return
        controls, opt = self.run.controls, self.run.controls.optimizer
        changed = {h: _like(opt.hyperparameters()[h], v) for h, v in new["hyper"].items() if v != old["hyper"][h]}
        if changed:
            controls.set(**changed)
        for layer, v in new["multipliers"].items():
            if v != old["multipliers"].get(layer):
                controls.set_lr_multiplier(layer, v)
        if new["pace"] != old["pace"]:
            controls.pace = new["pace"]
        if new["paused"] != old["paused"]:
            controls.pause() if new["paused"] else controls.resume()
        for _ in range(max(0, new["steps"] - old["steps"])):
            controls.step_once()
        if new["stop"] and not old["stop"]:
            controls.stop(new["stop"])
        if new["resets"] > old["resets"]:  # every worker starts over from rank 0's initial parameters, at step 0
            controls.reset()


def _like(current, value):
    return bool(value) if isinstance(current, bool) else value


class _WorkerRun(Run):
    """A worker's Run: after every step it applies the settings that step's meeting carried."""

    worker: _Worker = None

    def _record(self, step, epoch, loss, elapsed):
        super()._record(step, epoch, loss, elapsed)
        self.worker.apply_agreed()

    def _end(self, status, reason, error=None):
        from ...backends.collective import WorkersFailed

        if reason == "error" and not isinstance(error, WorkersFailed) and self.worker.workers.comm is not None:
            # this worker failed on its own (a NaN fails every worker alike): the others, waiting for it at the next
            # meeting, would wait for ever; revoking the communicator (ULFM) makes their meeting fail at once
            try:
                self.worker.workers.comm.Revoke()
            except Exception:  # noqa: BLE001  an MPI without fault tolerance: the notebook still reports this error
                pass
        super()._end(status, reason, error)


class _WorkerDriver(ThreadDriver):
    """A worker's thread: while paused it meets the others without a step, to hear what comes next."""

    name = "worker"

    def __init__(self):
        super().__init__()
        self.worker: _Worker | None = None

    def _drive(self, loop, controls):
        w = self.worker
        while (wanted := advance(loop)) is not _END:
            if wanted == 0:
                continue
            if wanted is None:  # paused, on every worker at the same step
                w.workers.exchange_settings(ready=lambda: w.requested > w.applied["version"])
                w.apply_agreed()
            else:  # the pace: the same on every worker; the meeting keeps them together
                controls.wait_for_change(min(wanted, 0.1))


def engine_start(run_id: str, spec: bytes, data, validation):
    """On every engine at once: make the worker's step and Run, take rank 0's parameters, start training in a
    thread. Returns what the notebook needs to know of this worker."""
    import cloudpickle
    from mpi4py import MPI

    from ...backends.collective import Workers

    s = cloudpickle.loads(spec)
    _refile(s["loss_fn"], s["sources"])  # the cell's line names: a NaN's message quotes the line on a worker too
    comm = MPI.COMM_WORLD.Dup()  # the run's own communicator: its traffic never mixes with anything else's
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    rank, size = comm.Get_rank(), comm.Get_size()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the workers on this machine share its cores
    share_cores(node.Get_size())
    node.Free()
    params = comm.bcast(s["params"] if rank == 0 else None, root=0)  # every worker starts from rank 0's
    buffers = comm.bcast(s["buffers"] if rank == 0 else None, root=0)
    opt = _rebuild_optimizer(s["optimizer"])
    settings = Settings((h.name for h in opt.hypers), s["layers"])
    workers = Workers(comm, settings=settings.size)
    job = Job(list(data), s["batch_size"], s["total_steps"], s["seed"],
              None if validation is None else list(validation), shard=(rank, size))
    first_batch, weight = job.part(None, 0)
    controls = Controls(opt, s["first"]["pace"])
    step = CompiledStep(s["loss_fn"], params, tuple(first_batch), opt, s["backend"], s["groups"], stats=True,
                        buffers=buffers or None, seed=s["seed"], metrics=s["metrics"], workers=workers)
    step.shard_weight = weight
    job.data = [step.backend.asarray(d) for d in job.data]
    driver = _WorkerDriver()
    run = _WorkerRun(s["name"], step, controls, driver)
    run.worker = driver.worker = _Worker(run, workers, settings, s["first"])
    run.early_stopping = s["early_stopping"]  # each worker decides alike: the loss it sees is the global batch's
    if s["resumed"] is not None:  # every worker goes on from the checkpoint (its parameters came with rank 0's)
        run._continue_from(s["resumed"])
    if s["checkpoint"] is not None and rank == 0:  # rank 0 holds what every worker holds: it saves the run
        run.checkpointing = Checkpointing(*s["checkpoint"])
    if s["first"]["paused"]:
        controls.pause()
    _WORKERS[run_id] = run.worker
    run._start(job)
    return {"rank": rank, "size": size, "pid": os.getpid(), "host": os.uname().nodename, "source": step.source}


def engine_request(run_id: str, settings: dict):
    """Rank 0: the notebook's newest settings."""
    _WORKERS[run_id].request(settings)


def engine_poll(run_id: str, lengths: dict | None, attempt: int = 0):
    """The worker's status, and (with `lengths`: column -> how many values the notebook has of attempt `attempt`,
    the number of Resets before it) its new history: all of it when a Reset started a new attempt meanwhile."""
    w = _WORKERS[run_id]
    run = w.run
    out = {"status": run.status if not run.done else run._status, "done": run.done, "steps": run.steps_done,
           "ended_because": run.ended_because, "error": _error_of(run.error)}
    if lengths is not None:
        with run._history_lock:
            out["attempt"] = len(run.previous_attempts)
            seen = lengths if out["attempt"] == attempt else {}
            out["columns"] = {c: list(v[seen.get(c, 0):]) for c, v in run.history.items()}
    return out


def engine_result(run_id: str, forget: bool = True):
    """The worker's parameters, buffers and optimizer state (the last completed step's), and its history."""
    w = _WORKERS.pop(run_id) if forget else _WORKERS[run_id]
    run = w.run
    run.join(10)
    to = run.step.backend.to_numpy
    return {"params": {n: to(a) for n, a in run.params.items()}, "buffers": {n: to(a) for n, a in run.buffers.items()},
            "state": {n: {s: to(v) for s, v in slots.items()} for n, slots in run.step.state.items()},
            "history": run.history, "previous_attempts": run.previous_attempts}


def engine_history(run_id: str):
    run = _WORKERS[run_id].run
    with run._history_lock:
        return {c: list(v) for c, v in run.history.items()}


def _error_of(e):
    if e is None:
        return None
    src = getattr(e, "source", None)
    return {"type": type(e).__name__, "message": str(e), "line": getattr(src, "lineno", None) if src else None}


def _mpi_rank():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
