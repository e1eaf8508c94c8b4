"""fit and Run: training in a worker thread that can be watched and steered while it runs.

The worker runs the compiled steps and reads `Controls` once per step, so the thread that started training (a
notebook cell, a script) stays free to wait, show progress, or change hyperparameters. Whatever ends training —
the last step, stop(), an interrupt, an error, a NaN — ends it at a step boundary: the parameters are always those
of the last completed step, and the Run records why it ended.
"""
from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
import weakref

import numpy as np

from ..errors import BackpropError, NonFiniteError
from . import checkpoint
from .controls import Controls
from .step import CompiledStep

__all__ = ["fit", "Run", "format_loss"]


def format_loss(loss) -> str:
    """A loss as people read it: 4 significant digits. Zero prints as 0, never -0 (a float32 cross-entropy that
    rounded to zero is -0.0), and a small loss keeps its digits (3e-6, not 0)."""
    if loss is None:
        return "-"
    loss = float(loss)
    if loss == 0:
        return "0"
    text = f"{loss:.4g}"
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text  # 3e-6 rather than 3e-06

#: hyperparameters recorded per step besides "lr" (which every optimizer has) and the per-layer multipliers
_HYPER_COLUMNS = ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps")


def status_text(run) -> str:
    """The run in one line, as the dashboard and the text progress show it: its state first ("training",
    "paused at step N of M", "stopped at step N of M", ...), then step, epoch, loss, learning rate and speed."""
    h = run.history
    if not h.get("step"):
        return run.outcome
    step, elapsed = h["step"][-1], max(h["time"][-1], 1e-9)
    rate = len(h["step"]) / elapsed
    left = (run.total_steps - len(h["step"])) / rate if rate > 0 else float("nan")
    parts = ["training", f"step {step}/{run.total_steps}"] if run.status == "running" else [run.outcome]
    parts += [f"epoch {h['epoch'][-1] + 1}/{run.epochs}", f"loss {format_loss(h['loss'][-1])}"]
    if h.get("lr") and h["lr"][-1] is not None:
        parts.append(f"lr {h['lr'][-1]:.3g}")
    parts.append(f"{rate:,.0f} steps/s")
    if run.status == "running" and math.isfinite(left):
        parts.append(f"{left:.0f} s left")
    return "  ·  ".join(parts)


class Run:
    """One training run: live while it trains, a record afterwards.

    history: column -> per-step list ("step", "epoch", "loss", "lr", "time", and per layer the columns of
    bp.train.stats.LAYER_STATS: "grad_norm/<layer>" (norm of its parameters' gradient), "signal_norm/<layer>" (norm
    of the gradient arriving at its output), "update_ratio/<layer>" (|update| / |weights|); "val_loss" when
    validating: None except at epoch ends). Every
    other hyperparameter the step used has a column too ("momentum", "weight_decay", "lr_multiplier/<layer>"), so
    a change from code or from the dashboard shows at the step it took effect; `changes()` lists them.

    status: "created", "running", "paused", then "finished" (every step done), "stopped" (stop()),
    "interrupted" (Interrupt) or "failed" (ended_because "non-finite" or "error"; `error` holds the exception).
    `outcome` says the same in a sentence.
    """

    def __init__(self, name: str, step: CompiledStep | None, controls: Controls | None):
        self.name = name
        self.step = step
        self.controls = controls
        self.params = step.params if step is not None else {}
        self.buffers = step.buffers if step is not None else {}
        self.history: dict = {}
        self._status = "created"
        self.ended_because: str | None = None
        self.error: BaseException | None = None
        self.total_steps = 0
        self.epochs = 0
        self.started_at = self.finished_at = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list = []
        self._wait_listeners: list = []
        self.dashboard = None  # set by front ends that show one
        self.data, self.batch_size = (), None
        self._history_lock = threading.Lock()

    # -- what a user asks of a run -------------------------------------------------------------------------------
    @property
    def optimizer(self):
        return self.controls.optimizer if self.controls else None

    @property
    def layers(self) -> dict:
        """layer -> names of its parameters."""
        groups = self.step.groups if self.step else {}
        out: dict = {}
        for name, layer in groups.items():
            out.setdefault(layer, []).append(name)
        return out

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
        status, n, total = self.status, self.steps_done, self.total_steps
        if status in ("created", "running"):
            return f"training, step {n} of {total}" if n else "compiling the step…"
        if status == "paused":
            return f"paused at step {n} of {total}"
        if status == "finished":
            return f"finished all {n} steps"
        if status == "stopped":
            return f"stopped at step {n} of {total}"
        if status == "interrupted":
            return f"interrupted at step {n} of {total} (kernel interrupt)"
        if status == "failed":
            why = "the loss or a gradient became non-finite" if self.ended_because == "non-finite" else "an error"
            detail = f": {self.error}" if self.error is not None else ""
            return f"failed at step {n + 1}, {why}{detail}"
        return f"{status} after {n} steps"

    def changes(self) -> list:
        """Every hyperparameter change that took effect: (step, name, old value, new value), in order."""
        h = self.history
        names = [k for k in h if k in _HYPER_COLUMNS or k.startswith("lr_multiplier/")]
        out = []
        for name in names:
            values = h[name]
            for i in range(1, len(values)):
                if values[i] != values[i - 1]:
                    out.append((h["step"][i], name, values[i - 1], values[i]))
        return sorted(out, key=lambda c: c[0])

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
        — handy in a notebook that changes a running run at a chosen moment. Returns the run."""
        if until_step is None:
            self._done.wait(timeout)
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.steps_done < until_step and not self._done.wait(0.005):
                if deadline is not None and time.monotonic() > deadline:
                    break
        if self.done:
            for listener in list(self._wait_listeners):
                listener(self)
        return self

    def stop(self):
        """End training at the next step boundary."""
        if self.controls:
            self.controls.stop("stopped")
        return self

    def join(self, timeout: float | None = None) -> "Run":
        """Block until the training thread has exited: from then on nothing writes to the params. (wait() returns
        as soon as the end is published, a moment before.) Returns the run."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self

    def interrupt(self) -> "Run":
        """End training at the step boundary as a kernel interrupt does (status "interrupted"), and join."""
        if self.controls:
            self.controls.stop("interrupted")
        return self.join()

    def pause(self):
        """Pause after the step in progress; `status` is "paused" from now on."""
        self.controls.pause()
        self._publish_if_live()  # views say "paused" at once, not at the next periodic update
        return self

    def resume(self):
        self.controls.resume()
        self._publish_if_live()
        return self

    def step_once(self):
        """While paused, run exactly one step."""
        self.controls.step_once()
        return self

    def __await__(self):
        return asyncio.get_event_loop().run_in_executor(None, self.wait).__await__()

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
    def save(self, path):
        """Write parameters, optimizer state, buffers, hyperparameters and history to `path` (.npz)."""
        opt = self.optimizer
        meta = {"name": self.name, "status": self.status, "ended_because": self.ended_because,
                "optimizer": type(opt).__name__ if opt else None,
                "hyperparameters": opt.hyperparameters() if opt else {},
                "step_count": self.step.step_count if self.step else self.total_steps,
                "groups": self.step.groups if self.step else {}, "history": self.history}
        checkpoint.save(path, self.params, self.step.state if self.step else self.optimizer_state, meta, self.buffers)

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

    # -- the worker ---------------------------------------------------------------------------------------------
    def _start(self, data, *, epochs, steps, batch_size, seed, validation):
        self.data, self.batch_size = data, batch_size  # kept for views (e.g. bp.viz.draw(run))
        self.status = "running"
        self.started_at = time.time()
        # run in a copy of the caller's context: the worker's output stays with the cell that started it, even
        # after widget messages handled on other threads have changed the kernel's current parent
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, name=f"bpmagic-{self.name}", daemon=True,
                                        args=(self._train, data, epochs, steps, batch_size, seed, validation))
        self._thread.start()

    def _train(self, data, epochs, steps, batch_size, seed, validation):
        # a NaN is reported once, clearly, by the step's guard; NumPy's warnings would only add noise
        np.seterr(all="ignore")  # this worker thread only
        try:
            self._loop(data, epochs, steps, batch_size, seed, validation)
        except NonFiniteError as e:
            self._end("failed", "non-finite", e)
        except Exception as e:  # ends training; the message is shown by whoever waits
            self._end("failed", "error", e)
        finally:
            self._end("finished", "finished")  # a no-op when something else ended it first

    def _loop(self, data, epochs, steps, batch_size, seed, validation):
        step, controls = self.step, self.controls
        xp = step.backend.xp
        n = int(data[0].shape[0])
        bs = n if batch_size is None else max(1, min(int(batch_size), n))
        per_epoch = math.ceil(n / bs)
        self.total_steps = total = int(steps) if steps is not None else int(epochs) * per_epoch
        self.epochs = math.ceil(total / per_epoch)
        rng = np.random.default_rng(seed)
        done, epoch, last_publish = 0, 0, 0.0
        t0 = time.perf_counter()
        while done < total:
            order = None if bs == n else xp.asarray(rng.permutation(n))
            for i in range(per_epoch):
                if done >= total:
                    break
                if not controls.wait_for_next_step():
                    reason = controls.stop_reason
                    self._end("interrupted" if reason == "interrupted" else "stopped", reason)
                    return
                batch = data if order is None else [d[order[i * bs:(i + 1) * bs]] for d in data]
                loss = step(*batch)
                done += 1
                self._record(step, epoch, loss, time.perf_counter() - t0)
                now = time.perf_counter()
                if controls.paused or now - last_publish > 0.1:  # paused: show the step it stopped at
                    last_publish = now
                    self._publish()
            epoch += 1
            if validation is not None:
                self._validate(validation)

    def _record(self, step, epoch, loss, elapsed):
        info = step.last
        row = {"step": info.step, "epoch": epoch, "loss": loss, "lr": info.hyper.get("lr"), "time": elapsed}
        for name in _HYPER_COLUMNS:
            if name in info.hyper:
                row[name] = info.hyper[name]
        multipliers = info.hyper.get("lr_multipliers", {})
        for layer in self.layers:
            row[f"lr_multiplier/{layer}"] = multipliers.get(layer, 1.0)
        row.update(info.stats)  # already named as history columns (train.stats)
        with self._history_lock:
            for key, value in row.items():
                self.history.setdefault(key, []).append(value)
            if "val_loss" in self.history:
                self.history["val_loss"].append(None)

    def _validate(self, validation):
        loss, _ = self.step.call_loss(self.params, validation)  # the buffers' new values are not kept
        loss = float(self.step.backend.to_numpy(loss))
        with self._history_lock:
            column = self.history.setdefault("val_loss", [None] * len(self.history.get("step", ())))
            if column:
                column[-1] = loss

    def _publish_if_live(self):
        if self._status == "running":
            self._publish()

    def _publish(self):
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
        self.status, self.ended_because, self.error = status, reason, error
        self.finished_at = time.time()
        self._publish()
        self._done.set()


_last_run = None


def last_run() -> Run | None:
    """The Run that bp.fit (or a %%backprop cell) started most recently, while something still holds it."""
    return _last_run() if _last_run is not None else None


def fit(loss_fn, params, data, *, epochs=None, steps=None, batch_size=None, optimizer=None, backend="auto",
        seed=0, groups=None, validation=None, name="run", background=False, optimizer_state=None,
        buffers=None) -> Run:
    """Train `loss_fn(params, *batch)` on `data` (a tuple of arrays, batched along axis 0) in a worker thread.

    epochs or steps: how long (default 1 epoch). batch_size: default the whole data set. optimizer: default
    SGD(lr=0.01). validation: arrays like `data`, evaluated after each epoch. background=False blocks until
    training ends (Ctrl-C stops it cleanly at a step boundary); background=True returns the live Run at once.
    Parameters are updated in place; they are always those of the last completed step. buffers: arrays the model
    keeps between steps without training them (see compile_step); then `loss_fn(params, buffers, *batch)` returns
    `(loss, new_buffers)`, and `run.buffers` holds them.
    """
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not data:
        raise BackpropError("fit needs at least one data array")
    lengths = {int(np.shape(d)[0]) if np.ndim(d) else -1 for d in data}
    if len(lengths) != 1 or -1 in lengths:
        shapes = ", ".join(str(tuple(np.shape(d))) for d in data)
        raise BackpropError(f"the data arrays must have the same length along axis 0, got shapes {shapes}")
    if epochs is None and steps is None:
        epochs = 1
    n = lengths.pop()
    bs = n if batch_size is None else max(1, min(int(batch_size), n))
    from .optim import SGD

    optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
    example = tuple(d[:bs] for d in data)
    step = CompiledStep(loss_fn, params, example, optimizer, backend, groups, stats=True, buffers=buffers)
    if optimizer_state:
        for pname, slots in optimizer_state.items():
            step.state.setdefault(pname, {}).update({s: step.backend.asarray(v) for s, v in slots.items()})
    device_data = [step.backend.asarray(d) for d in data]
    device_val = None if validation is None else [step.backend.asarray(v) for v in validation]
    run = Run(name, step, Controls(optimizer))
    global _last_run
    _last_run = weakref.ref(run)
    run._start(device_data, epochs=epochs, steps=steps, batch_size=bs, seed=seed, validation=device_val)
    if not background:
        try:
            run.wait()
        except KeyboardInterrupt:
            run.interrupt()
            raise
    return run
