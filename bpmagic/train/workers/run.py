"""In the notebook: a run on workers (WorkersRun, with Run's interface) and the relay thread that forwards its
controls to rank 0, brings rank 0's history back about ten times a second, and ends it as the workers end it (or as
one of them dies)."""
from __future__ import annotations

import math
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ...errors import BackpropError, NonFiniteError
from ..controls import Controls
from ..datacheck import check_classes
from ..loop import Job
from ..step import CompiledStep
from ..trainer import Run
from .cluster import WorkersError, connect
from .engine import _mpi_rank, engine_history, engine_poll, engine_request, engine_result, engine_start
from .settings import settings_of
from .spec import worker_spec

#: how often the notebook brings the workers' history and status back
POLL = 0.1
#: a worker that does not answer a poll for this long while the others have ended is taken for dead
SILENT = 30.0


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
                   resumed=None, early_stopping=None) -> WorkersRun:
    """bp.fit(..., workers=...): start the run on the workers; returns the live WorkersRun (fitting.fit waits)."""
    if backend not in ("auto", "numpy"):
        raise BackpropError(f"backend={backend!r} with workers: the workers train on NumPy (gradients meet through "
                            "MPI in host memory); GPUs through NCCL are not built yet")
    client = connect(workers)
    ids = sorted(client.ids)
    view = client[ids]
    view.execute(f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})", block=True)
    ranks = view.apply_sync(_mpi_rank)
    size = ranks[0][1]
    if len(ids) != size:
        raise WorkersError(f"workers={workers!r}: {len(ids)} engines answer, but their MPI world has {size} ranks; "
                           "start the engines with MPI (ipcluster start --engines=mpi, or engines='mpi')")
    engines = [e for _, e in sorted((r, e) for (r, _), e in zip(ranks, ids))]
    n = int(np.shape(data[0])[0])
    from ...backends.collective import Workers

    controls = Controls(optimizer, pace)
    first_rows = Job(list(data), batch_size, total_steps, seed, shard=(0, size)).part(None, 0)[0]
    shown = CompiledStep(loss_fn, params, tuple(first_rows), optimizer, "numpy", groups, stats=True, buffers=buffers,
                         seed=seed, metrics=tuple(metrics), workers=Workers(None, size=size))
    check_classes(shown, data, validation)
    run = WorkersRun(name, shown, controls, client, engines, [])
    run.run_id = uuid.uuid4().hex
    spec = worker_spec(loss_fn, params, buffers, optimizer, {p: shown.groups[p] for p in params}, batch_size,
                       total_steps, seed, metrics, name, run.settings(), checkpointing, resumed, early_stopping)
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


def _remote_message(e) -> str:
    """The message of an exception raised on an engine (ipyparallel's RemoteError), without its traceback."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename is None and hasattr(e, "elist") and e.elist:  # CompositeError: the first engine's
        ename, evalue = e.elist[0][0], e.elist[0][1]
    return f"{ename}: {evalue}" if ename else f"{type(e).__name__}: {e}"
