"""Run: training that can be watched and steered while it runs (train/fitting.py starts one).

A Run's steps are taken by a driver (train/drivers.py: a worker thread by default) running the one training loop
(train/loop.py), which reads `Controls` at every step boundary, so the thread that started training (a notebook
cell, a script) stays free to wait, show progress, or change hyperparameters. Whatever ends training — the last
step, stop(), an interrupt, an error, a NaN — ends it at a step boundary: the parameters are always those of the
last completed step, and the Run records why it ended. reset() starts it over from its initial parameters.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np

from .. import threads
from ..errors import BackpropError
from . import checkpoint
from .controls import Controls
from .describe import Change, Changes, format_loss, outcome
from .drivers import drive_here, make_driver
from .loop import Job, training_loop
from .metrics import evaluate
from .stats import from_sum_rows
from .step import CompiledStep

__all__ = ["Run", "format_loss"]

#: what Controls adds to the optimizer's declared hyperparameters: the pace (steps per second; inf: full speed)
_CONTROL_COLUMNS = ("pace",)


class Run:
    """One training run: live while it trains, a record afterwards.

    history: column -> per-step list ("step", "epoch", "loss", "lr", "time", and per layer the columns of
    bp.train.stats.LAYER_STATS: "grad_norm/<layer>" (norm of its parameters' gradient), "signal_norm/<layer>" (norm
    of the gradient arriving at its output), "update_ratio/<layer>" (|update| / |weights|); "val_loss" when
    validating: None except at epoch ends). Every other hyperparameter the step used has a column too ("momentum",
    "weight_decay", "lr_multiplier/<layer>"), and so has the pace ("pace": steps per second, inf at full speed), so
    a change from code or from the dashboard shows at the step it took effect; `changes()` lists them.
    previous_attempts: the histories of the attempts before each reset(), oldest first.

    status: "created", "running", "paused", then "finished" (every step done), "stopped" (stop()),
    "interrupted" (Interrupt) or "failed" (ended_because "non-finite" or "error"; `error` holds the exception).
    `outcome` says the same in a sentence. total_steps is None for a run that trains until it is stopped.
    """

    def __init__(self, name: str, step: CompiledStep | None, controls: Controls | None, driver="thread"):
        self.name = name
        self.step = step
        self.controls = controls
        self.params = step.params if step is not None else {}
        self.buffers = step.buffers if step is not None else {}
        self.history: dict = {}
        self.previous_attempts: list = []
        self._status = "created"
        self.early_stopping = None  # an EarlyStopping (train/metrics.py), set by fit
        self.ended_because: str | None = None
        self.error: BaseException | None = None
        self.job: Job | None = None
        self.total_steps = 0
        self.epochs = 0
        self.started_at = self.finished_at = None
        self._done = threading.Event()
        self._driver = make_driver(driver) if isinstance(driver, str) else driver
        self._initial: tuple = ({}, {})  # (params, buffers) that reset() goes back to
        self._listeners: list = []
        self._wait_listeners: list = []
        self.dashboard = None  # set by front ends that show one
        self.data, self.batch_size = (), None
        self._history_lock = threading.Lock()
        self.checkpointing = None  # a Checkpointing (train/checkpoint.py): saved every so often and at the end
        self.position = None  # where the loop stands in the data (a checkpoint's Position), after each step

    # -- what a user asks of a run -------------------------------------------------------------------------------
    @property
    def optimizer(self):
        return self.controls.optimizer if self.controls else None

    @property
    def layers(self) -> dict:
        """layer -> names of its parameters (the step's `groups` the other way)."""
        return self.step.groups.members if self.step else {}

    graph = property(lambda self: self.step.forward_graph, doc="The forward graph of the training step.")
    backward_graph = property(lambda self: self.step.backward_graph, doc="The backward graph of the step.")
    step_graph = property(lambda self: self.step.step_graph, doc="Forward, backward and update as one graph.")

    @property
    def status(self) -> str:
        if self._status == "running" and self.controls is not None and self.controls.paused:
            return "paused"
        return self._status

    @status.setter
    def status(self, value: str):
        self._status = value

    @property
    def outcome(self) -> str:
        """Where the run stands, in one sentence: "finished all 300 steps", "stopped at step 812 of 10000", ..."""
        return outcome(self)

    @property
    def pace(self) -> float | None:
        """At most this many steps per second (None: full speed); set it at any time, from any thread."""
        return self.controls.pace if self.controls is not None else None

    @pace.setter
    def pace(self, value):
        self._trains("pace")
        self.controls.pace = value

    def changes(self) -> Changes:
        """Every change of a hyperparameter or of the pace that took effect: Change(step, name, old, new), in
        order (one per line when shown)."""
        h = self.history
        steered = set(self.hyper_columns) | set(_CONTROL_COLUMNS)
        names = [k for k in h if k in steered or k.startswith("lr_multiplier/")]
        out = []
        for name in names:
            values = h[name]
            # under a schedule the learning rate in use moves every step: a change is one of the rate set
            set_ = h["lr_set"] if name == "lr" and "lr_set" in h else values
            for i in range(1, len(values)):
                if set_[i] != set_[i - 1]:
                    out.append(Change(h["step"][i], name, values[i - 1], values[i]))
        return Changes(sorted(out, key=lambda c: c.step))

    @property
    def hyper_columns(self) -> tuple:
        """The history's columns of the optimizer's declared hyperparameters (train/optim.py, Hyper)."""
        if self.optimizer is not None:
            return tuple(h.name for h in self.optimizer.hypers)
        return tuple(k for k in getattr(self, "hyperparameters", {}) if k != "lr_multipliers")  # a loaded run's

    @property
    def ended(self) -> bool:
        """True once training has ended, from the moment the final state is published (before wait() returns)."""
        return self._status not in ("created", "running")

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def steps_done(self) -> int:
        return len(self.history.get("step", ()))

    @property
    def loss(self) -> float | None:
        losses = self.history.get("loss")
        return losses[-1] if losses else None

    def wait(self, timeout: float | None = None, until_step: int | None = None) -> "Run":
        """Block until training ends, or `timeout` seconds pass, or (with `until_step`) that many steps are done
        — handy in a notebook that changes a running run at a chosen moment. Returns the run. Where nothing else
        takes the steps (driver "inline", or "asyncio" waited for from its event loop's thread), the waiting
        thread takes them; where nothing else could resume a paused run either (no threads: Pyodide), wait()
        returns while it is paused instead of blocking for ever (`waits_for_resume` is then True)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        reached = lambda: self.done or until_step is not None and self.steps_done >= until_step  # noqa: E731
        if self._driver.steps_in(threading.get_ident()):
            drive_here(self, self._driver.loop, reached, deadline)
        elif until_step is None:
            self._done.wait(timeout)
        else:
            while not reached() and not self._done.wait(0.005):
                if deadline is not None and time.monotonic() > deadline:
                    break
        if self.done:
            for listener in list(self._wait_listeners):
                listener(self)
        return self

    @property
    def waits_for_resume(self) -> bool:
        """True when waiting for this run in this thread would block for ever: it is paused, this thread would take
        its steps, and no other thread exists to resume it (Pyodide). Resume it from the dashboard or in code."""
        return (self.status == "paused" and self._driver.steps_in(threading.get_ident())
                and not threads.available())

    def stop(self):
        """End training at the next step boundary."""
        if self.controls:
            self.controls.stop("stopped")
        return self

    def join(self, timeout: float | None = None) -> "Run":
        """Block until the driver has let go of the run: from then on nothing writes to the params. (wait()
        returns as soon as the end is published, a moment before.) Returns the run."""
        self._driver.join(self, timeout)
        return self

    def interrupt(self) -> "Run":
        """End training at the step boundary as a kernel interrupt does (status "interrupted"), and join."""
        if self.controls:
            self.controls.stop("interrupted")
        return self.join()

    def _trains(self, what):
        if self.controls is None:  # Run.load's: a record of a run, with no step to take
            raise BackpropError(f"{self.name} was loaded from a file: it has no steps to {what}. To train on from it, "
                                "pass run.params (and optimizer_state=run.optimizer_state) to bp.fit")

    def pause(self):
        """Pause after the step in progress; `status` is "paused" from now on."""
        self._trains("pause")
        self.controls.pause()
        self._publish_if_live()  # views say "paused" at once, not at the next periodic update
        return self

    def resume(self):
        self._trains("resume")
        self.controls.resume()
        self._publish_if_live()
        return self

    def step_once(self):
        """While paused, run exactly one step."""
        self._trains("take")
        self.controls.step_once()
        return self

    def reset(self):
        """Start the run over: the parameters (and buffers) back to their initial values, the optimizer's state
        cleared, step 0, the data in the same order; the hyperparameters and the pace stay as they are now, so the
        same run can be tried with another learning rate. While it trains, at the next step boundary (a paused run
        stays paused, at step 0); once it has ended, it trains again in the background. The history so far is kept
        in `previous_attempts`."""
        if self.step is None or self.job is None:
            raise BackpropError(f"{self.name} cannot be reset: it is a record of a run (Run.load), not a live run")
        if not self.ended:
            self.controls.reset()
            return self
        self.join()
        self._start_over()
        self._begin()
        return self

    def __await__(self):
        return self._finished().__await__()

    async def _finished(self):
        while not self.done:
            if self._driver.steps_in(threading.get_ident()):
                drive_here(self, self._driver.loop, lambda: self.done, time.monotonic() + 0.03)
            await asyncio.sleep(0.01)
        return self

    def subscribe(self, listener):
        """Call `listener(run)` from the worker at most ~10 times a second while training, and once at the end.
        A view made while the run ends would miss that last call: if the run has ended by the time the listener is
        added, it is called at once (it may then be called twice with the final state)."""
        self._listeners.append(listener)
        if self.ended:  # _end sets the status before it calls the listeners it holds
            listener(self)

    def unsubscribe(self, listener):
        """Stop calling `listener` (a closed view)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def on_wait(self, listener):
        """Call `listener(run)` in the waiting thread whenever wait() returns on an ended run (a view that records
        the final state in the notebook cell that waited for it)."""
        self._wait_listeners.append(listener)

    # -- saving -----------------------------------------------------------------------------------------------------
    def save(self, path, position=None):
        """Write parameters, optimizer state, buffers, hyperparameters and history to `path` (.npz), atomically;
        with the run's place in its data, so that `--resume path` (fit's resume=) continues it exactly. Saving a
        running run is best done at a step boundary: pause it first, or let --checkpoint do it."""
        opt = self.optimizer
        if self.step is not None:
            self._catch_up()  # the statistics of the latest steps are still on the step's device
        with self._history_lock:
            history = {k: list(v) for k, v in self.history.items()}
        position = position or self.position
        meta = {"name": self.name, "status": self.status, "ended_because": self.ended_because,
                "optimizer": type(opt).__name__ if opt else None,
                "hyperparameters": opt.hyperparameters() if opt else {},
                "step_count": self.step.step_count if self.step else self.total_steps,
                "groups": self.step.groups if self.step else {}, "history": history,
                "position": None if position is None else vars(position),
                "data": {} if self.job is None else {"examples": self.job.examples,
                                                     "batch_size": self.job.batch_size, "seed": self.job.seed}}
        checkpoint.save(path, self.params, self.step.state if self.step else self.optimizer_state, meta, self.buffers)

    def _continue_from(self, resumed):
        """Before it starts: go on from a checkpoint (train/checkpoint.py's Resumed, whose parameters and buffers
        are already in place) — the optimizer's state, the step count, the place in the data, the history."""
        step = self.step
        for name, slots in resumed.state.items():
            step.state.setdefault(name, {}).update({s: step.backend.asarray(v) for s, v in slots.items()})
        step.step_count = step.optimizer.now = resumed.step_count
        self.position = resumed.position
        self.history = {k: list(v) for k, v in resumed.history.items()}

    @classmethod
    def load(cls, path) -> "Run":
        """A finished Run from `save`: params, optimizer_state, history and hyperparameters (not trainable by
        itself: pass run.params and run.optimizer_state to bp.fit to continue)."""
        params, state, meta, buffers = checkpoint.load(path)
        run = cls(meta["name"], None, None)
        run.params, run.optimizer_state, run.history, run.buffers = params, state, meta["history"], buffers
        run.status, run.ended_because = "loaded", meta["ended_because"]
        run.hyperparameters, run.total_steps = meta["hyperparameters"], meta["step_count"]
        run.saved_status = meta["status"]
        run._done.set()
        return run

    def __repr__(self):
        loss = f", loss {format_loss(self.loss)}" if self.loss is not None else ""
        why = f" ({self.ended_because})" if self.ended_because and self.ended_because != self.status else ""
        return f"<Run {self.name}: {self.status}{why} after {self.steps_done} steps{loss}>"

    # -- training -----------------------------------------------------------------------------------------------------
    def _start(self, job: Job, initial_params=None):
        """Train on `job` (from where a checkpoint left it, after _continue_from). reset() goes back to
        `initial_params` (default: the params as they are now)."""
        self.job = job
        job.start = self.position
        self.data, self.batch_size = job.data, job.batch_size  # kept for views (e.g. bp.viz.draw(run))
        self.total_steps, self.epochs = job.total_steps, job.epochs
        start = initial_params if initial_params is not None else self.params
        self._initial = ({n: self.step.backend.asarray(a).copy() for n, a in start.items()},
                         {n: b.copy() for n, b in self.buffers.items()})
        self._begin()

    def _begin(self):
        self.controls.restart()
        self.status, self.ended_because, self.error = "running", None, None
        self.started_at, self.finished_at = time.time(), None
        self._done.clear()
        self._driver.start(self, training_loop(self, self.job))

    def _start_over(self):
        """Back to the initial parameters and step 0 (the loop calls it at a step boundary; reset() after the end)."""
        self.step.reset(*self._initial)
        self.job.start = self.position = None  # a resumed run starts over from step 0 too
        if self.early_stopping is not None:
            self.early_stopping.restart()
        if self.optimizer.schedule is not None:
            self.optimizer.schedule.start(self.total_steps)
        with self._history_lock:
            if self.history.get("step"):
                self.previous_attempts.append(self.history)
            self.history = {}
        self._publish()

    def _record(self, step, epoch, loss, elapsed):
        info = step.last
        row = {"step": info.step, "epoch": epoch, "loss": loss, "lr": info.hyper.get("lr"), "time": elapsed}
        for name in self.hyper_columns:
            row[name] = info.hyper[name]
        if "lr_set" in info.hyper:  # a schedule: "lr" is in use, "lr_set" what the learner or code set
            row["lr_set"] = info.hyper["lr_set"]
        multipliers = info.hyper.get("lr_multipliers", {})
        for layer in self.layers:
            row[f"lr_multiplier/{layer}"] = multipliers.get(layer, 1.0)
        pace = self.controls.pace
        row["pace"] = math.inf if pace is None else pace
        with self._history_lock:
            for key, value in row.items():
                self.history.setdefault(key, []).append(value)
            for column in [c for c in self.history if c.startswith("val_")]:  # set at the epoch's end
                self.history[column].append(None)

    def _catch_up(self):
        """Fetch the statistics of the steps since the last call from the step's device, in one copy, into the
        history's columns (the loop calls it before it publishes, at most ~10 times a second, and at the end)."""
        taken = self.step.measurements.take()
        if not taken:
            return
        with self._history_lock:
            for plan, _, rows in taken:
                keys, clip = plan.layout.stats, plan.layout.clip
                for column, values in from_sum_rows(keys, rows[:, :len(keys)]).items():
                    self.history.setdefault(column, []).extend(values.tolist())
                for i, column in enumerate(clip):  # the gradient's global norm, and whether clipping engaged
                    values = rows[:, len(keys) + i]
                    self.history.setdefault(column, []).extend(
                        (values > 0.5).tolist() if column == "clipped" else values.tolist())
                for i, column in enumerate(plan.layout.metrics):
                    self.history.setdefault(column, []).extend(rows[:, len(keys) + len(clip) + i].tolist())

    def _validate(self, validation):
        """The loss and metrics on the validation set at the end of an epoch: val_loss, val_<metric> (None at the
        other steps). Evaluated as a drawing is (dropout off); the buffers' new values are not kept."""
        values = evaluate(self.step, self.params, validation, self.step.metric_names)
        with self._history_lock:
            for name, value in values.items():
                column = self.history.setdefault(f"val_{name}", [None] * len(self.history.get("step", ())))
                if column:
                    column[-1] = value

    def _epoch_ended(self, epoch: int) -> bool:
        """At an epoch's end: True when early stopping ends the run here (the monitored number stopped improving)."""
        schedule = self.optimizer.schedule
        if schedule is not None:
            schedule.epoch_ended(epoch, self._monitored("val_loss" if self.job.validation is not None else "loss",
                                                        epoch))
        stopper = self.early_stopping
        if stopper is None:
            return False
        value = self._monitored(stopper.monitor, epoch)
        if value is None and epoch == 0 and stopper.monitor not in self.history:
            raise BackpropError(f"early stopping monitors {stopper.monitor!r}, which this run does not measure: its "
                                f"columns are {', '.join(c for c in self.history if '/' not in c)}")
        return stopper.epoch_ended(epoch, value, self.params, self.step.backend.to_numpy)

    def _monitored(self, monitor: str, epoch: int):
        """A number at an epoch's end: a validation column's value, or a training column's mean over the epoch."""
        self._catch_up()
        h = self.history
        if monitor.startswith("val_"):
            return (h.get(monitor) or [None])[-1]
        epochs, values = h.get("epoch", []), h.get(monitor, [])
        this = [v for e, v in zip(epochs, values) if e == epoch]
        return float(np.mean(this)) if this else None

    def _publish_if_live(self):
        if self._status == "running":
            self._publish()

    def _publish(self):
        if self.step is not None:
            self._catch_up()
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception as e:  # a broken view must not stop training
                import warnings

                warnings.warn(f"bpmagic: a run listener failed: {e!r}")
                self._listeners.remove(listener)

    def _end(self, status, reason, error=None):
        if self._done.is_set():
            return
        stopper = self.early_stopping
        if reason == "early-stopped" and stopper is not None and stopper.best_params is not None:
            for name, best in stopper.best_params.items():  # the best epoch's parameters, restored
                self.params[name][...] = self.step.backend.asarray(best)
        self.status, self.ended_because, self.error = status, reason, error
        self.finished_at = time.time()
        if self.checkpointing is not None and self.position is not None:
            self._save_last()
        self._publish()
        self._done.set()

    def _save_last(self):
        """The checkpoint at the end (however the run ends: its parameters are the last completed step's)."""
        try:
            self.checkpointing.write(self, self.position)
        except Exception as e:  # a full disk must not hide how the run ended
            import warnings

            warnings.warn(f"bpmagic: {self.name}'s last checkpoint could not be written to "
                          f"{self.checkpointing.path}: {e}")
