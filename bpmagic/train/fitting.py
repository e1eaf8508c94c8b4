"""fit: train a loss function on data, steerable while it runs — in this process (a Run, train/trainer.py) or on
workers (a WorkersRun, train/workers/)."""
from __future__ import annotations

import math
import numbers
import os
import sys
import weakref

import numpy as np

from ..backends import is_array
from ..errors import BackpropError
from .checkpoint import Checkpointing, resume as resume_from
from .controls import Controls
from .datacheck import check_classes, data_problem
from .describe import failure
from .drivers import make_driver
from .loop import Job
from .metrics import EarlyStopping
from .optim import Optimizer
from .step import CompiledStep
from .trainer import Run

__all__ = ["fit", "last_run"]

_last_run = None


def last_run() -> Run | None:
    """The Run that bp.fit (or a %%backprop cell) started most recently, while something still holds it."""
    return _last_run() if _last_run is not None else None


def _arrays(what, arrays) -> tuple:
    """data (or validation) as a tuple of arrays: one array alone, or a tuple or list of arrays or of nested lists
    (NumPy's, a CPU torch tensor's or JAX array's values taken as NumPy arrays)."""
    arrays = tuple(arrays) if isinstance(arrays, (tuple, list)) and not _numbers(arrays) else (arrays,)
    out = []
    for i, a in enumerate(arrays):
        if not is_array(a):
            try:
                a = np.asarray(a)
            except Exception as e:  # noqa: BLE001  what NumPy says is the message
                raise BackpropError(f"{what}[{i}] is a {type(a).__name__} that is not an array: {e}") from None
            if a.dtype == object:
                raise BackpropError(f"{what}[{i}] is not an array of numbers (rows of different lengths?)")
        out.append(a)
    return tuple(out)


def _numbers(values) -> bool:
    """Whether a list is one array's values (numbers, or lists of them) rather than a list of arrays."""
    return bool(values) and all(isinstance(v, numbers.Number) for v in values)


def _check_whole(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value)
                              or value < 1):
        raise BackpropError(f"{name} must be a whole number of at least 1, got {value!r}")


def fit(loss_fn, params, data, *, epochs=None, steps=None, batch_size=None, optimizer=None, backend="auto",
        seed=0, groups=None, validation=None, name="run", background=False, optimizer_state=None,
        buffers=None, pace=None, initial_params=None, driver="auto", metrics=(), early_stop=None,
        monitor=None, restore_best=False, schedule=None, workers=None, checkpoint=None, checkpoint_every="60s",
        resume=None) -> Run:
    """Train `loss_fn(params, *batch)` on `data` (a tuple of arrays, batched along axis 0), steerable while it runs.

    epochs or steps: how long (default 1 epoch); steps=math.inf trains until run.stop(). batch_size: default the
    whole data set. optimizer: default SGD(lr=0.01). validation: arrays like `data`, evaluated after each epoch.
    pace: at most this many steps per second (default None: full speed), slow enough to watch and steer by hand;
    run.pace changes it at any time. background=False blocks until training ends (Ctrl-C stops it cleanly at a step
    boundary); background=True returns the live Run at once. Parameters are updated in place; they are always those
    of the last completed step; run.reset() starts over from `initial_params` (default: the params as they are
    now). buffers: arrays the model keeps between steps without training them (see compile_step); then
    `loss_fn(params, buffers, *batch)` returns `(loss, new_buffers)`, and `run.buffers` holds them.
    driver: where the steps run: "thread" (a worker thread), "inline" (in the thread that waits for the run: a
    Python without threads) or "asyncio" (a task on the running event loop that gives it a turn every few tens of
    milliseconds); "auto" (the default): a thread where one can be started, else the event loop's task (Pyodide);
    see bpmagic/train/drivers.py.
    metrics: built-in metrics to compute in the step (("accuracy",)), beside those the model reports itself
    (bp.train.metrics.report): history columns, and val_<name> with validation. early_stop=N ends the run when
    `monitor` (default val_loss with validation, else loss; a loss is better lower, a metric higher) has not
    improved for N epochs (ended_because "early-stopped"); restore_best puts back the best epoch's parameters.
    schedule: a learning-rate schedule (a name — "cosine", "onecycle", "step", "exponential", "plateau" — or a
    bp.train.schedules.Schedule): the learning rate in use at step n is the one set × its factor at n.
    workers: train data-parallel on workers (train/workers/): a number (a cluster of that many MPI engines that
    this kernel starts once and reuses), an ipyparallel Cluster or Client, or "profile:NAME"; batch_size is then
    the global batch, split between the workers, and the Run has the same interface.
    checkpoint: a file the run saves itself to (parameters, optimizer state, buffers, history, its place in the
    data; atomically) every `checkpoint_every` ("60s", "5m", "500 steps") and when it ends. resume: such a file
    (or one run.save wrote): the run continues from it exactly as it would have gone on, to the same total of
    steps (resume and checkpoint the same file: one call serves the first run, which starts afresh, and every
    run after a crash); the hyperparameters are those it had then (steered ones included) unless this call sets
    one to another value than the run started with (train/checkpoint.py).
    """
    data = _arrays("data", data)
    if not data:
        raise BackpropError("fit needs at least one data array")
    if validation is not None:
        if is_array(validation) and len(data) > 1:
            raise BackpropError("validation must be arrays like data's, one for each of them: (X_val, Y_val)")
        validation = _arrays("validation", validation)
        wrong = [i for i, (v, d) in enumerate(zip(validation, data))
                 if v.ndim == 0 or tuple(v.shape[1:]) != tuple(d.shape[1:])]
        if len(validation) != len(data) or wrong or len({v.shape[0] for v in validation}) > 1:
            raise BackpropError(
                "validation must be arrays like data's, one for each of them, each with the shape of its rows: got "
                + ", ".join(str(tuple(v.shape)) for v in validation) + " for data "
                + ", ".join(str(tuple(d.shape)) for d in data))
    _check_whole("epochs", epochs)
    _check_whole("batch_size", batch_size)
    if epochs is not None and steps is not None:
        raise BackpropError(f"give epochs or steps, not both (epochs={epochs!r}, steps={steps!r})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise BackpropError(f"seed must be a whole number (the run's random draws come from it), got {seed!r}")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise BackpropError(f"optimizer must be a bpmagic optimizer, e.g. bp.optim.Adam(lr=1e-3) (one made from its "
                            f"class, with its hyperparameters), got {optimizer!r}")
    if groups is not None:
        if not isinstance(groups, dict):
            raise BackpropError(f"groups must be a dict from a parameter's name to its layer's name, got "
                                f"{type(groups).__name__}")
        unknown = [n for n in groups if n not in params]
        if unknown:
            raise BackpropError(f"groups: {', '.join(map(repr, unknown))} is not a parameter (they are "
                                f"{', '.join(map(repr, params))})")
    lengths = {int(np.shape(d)[0]) if np.ndim(d) else -1 for d in data}
    if len(lengths) != 1 or -1 in lengths:
        shapes = ", ".join(str(tuple(np.shape(d))) for d in data)
        raise BackpropError(f"the data arrays must have the same length along axis 0, got shapes {shapes}")
    for what, arrays, use in (("data", data, "train"), ("validation", validation or (), "validate")):
        for i, array in enumerate(arrays):
            problem = data_problem(array, use)
            if problem:
                raise BackpropError(f"{what}[{i}] {problem}")
    if epochs is None and steps is None:
        epochs = 1
    n = lengths.pop()
    bs = n if batch_size is None else max(1, min(int(batch_size), n))
    per_epoch = math.ceil(n / bs)
    if steps is not None and steps != math.inf and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise BackpropError(f"steps must be a whole number of at least 1, or math.inf to train until stopped; "
                            f"got {steps!r}")
    total = None if steps == math.inf else int(steps) if steps is not None else int(epochs) * per_epoch
    controls = Controls(optimizer if optimizer is not None else _default_optimizer(), pace)  # checks the pace
    if schedule is not None:
        controls.optimizer.scheduled(schedule)
    if controls.optimizer.schedule is not None:
        controls.optimizer.schedule.start(total)  # a schedule that spans the run needs its length
    saving = None if checkpoint is None else Checkpointing(checkpoint, checkpoint_every)
    if resume is not None and saving is not None and not os.path.exists(resume) \
            and os.path.abspath(resume) == os.path.abspath(saving.path):  # one cell for the first run and after a crash
        print(f"bpmagic: {name} starts from the beginning: there is no checkpoint at {resume} yet")
        resume = None
    stopping = None
    if early_stop is not None:
        monitor = monitor or ("val_loss" if validation is not None else "loss")
        if monitor.startswith("val_") and validation is None:
            raise BackpropError(f"early stopping on {monitor} needs a validation set (validation=, --validate X Y); "
                                "without one it can monitor the training loss (monitor='loss')")
        stopping = EarlyStopping(early_stop, monitor, restore_best)
    if workers is not None:
        resumed = None if resume is None else _resumed(resume, params, buffers or {}, controls.optimizer, n, bs,
                                                       seed, name, total)
        return _fit_on_workers(workers, loss_fn, params, data, bs, total, controls, backend, seed, groups,
                               validation, name, buffers, metrics, stopping, background, initial_params,
                               saving, resumed)
    driver = make_driver(driver)
    step = CompiledStep(loss_fn, params, tuple(d[:bs] for d in data), controls.optimizer, backend, groups,
                        stats=True, buffers=buffers, seed=seed, metrics=tuple(metrics))
    check_classes(step, data, validation)
    if optimizer_state:
        for pname, slots in optimizer_state.items():
            step.state.setdefault(pname, {}).update({s: step.backend.asarray(v) for s, v in slots.items()})
    job = Job([step.backend.asarray(d) for d in data], bs, total, seed,
              None if validation is None else [step.backend.asarray(v) for v in validation])
    run = Run(name, step, controls, driver)
    run.checkpointing, run.early_stopping = saving, stopping
    if resume is not None:  # into the step's own arrays (on a GPU, copies of `params`)
        run._continue_from(_resumed(resume, step.params, step.buffers, controls.optimizer, n, bs, seed, name, total))
    run._start(job, initial_params)
    return _started(run, background)


def _resumed(path, params, buffers, optimizer, examples, batch_size, seed, name, total):
    """Read the checkpoint at `path` into `params` and `buffers`, take its hyperparameters (train/checkpoint.py
    says which), and say so in one line; returns the Resumed for the run to continue from."""
    resumed = resume_from(path, params, buffers, optimizer, examples, batch_size, seed)
    said = []
    for hyper in optimizer.hypers:
        saved, first = resumed.hyper.get(hyper.name), (resumed.history.get(hyper.name) or [None])[0]
        mine = getattr(optimizer, hyper.name)
        if saved is None or saved == mine:
            continue
        if first is None or mine == first:  # this call asks what the run started with: it goes on as it was
            optimizer.set(**{hyper.name: saved})
            said.append(f"{hyper.name} {saved:g} as it was then")
        else:
            said.append(f"{hyper.name} {mine:g} as this call sets it (it was {saved:g})")
    for layer, value in resumed.hyper.get("lr_multipliers", {}).items():
        optimizer.set_lr_multiplier(layer, value)
    of = "" if total is None else f" of {total}"
    print(f"bpmagic: {name} resumes from {path} at step {resumed.position.steps}{of}"
          + (f"; {', '.join(said)}" if said else ""))
    return resumed


def _fit_on_workers(workers, loss_fn, params, data, bs, total, controls, backend, seed, groups, validation, name,
                    buffers, metrics, stopping, background, initial_params, saving, resumed):
    from .workers import fit_on_workers

    run = fit_on_workers(workers, loss_fn, params, data, batch_size=bs, total_steps=total,
                         optimizer=controls.optimizer, backend=backend, seed=seed, groups=groups,
                         validation=validation, name=name, buffers=buffers, pace=controls.pace, metrics=metrics,
                         initial_params=initial_params, checkpointing=saving, resumed=resumed,
                         early_stopping=stopping)
    return _started(run, background)


def _started(run, background: bool):
    """A run that has started: the latest (bp.last_run), and waited for unless in the background (Ctrl-C stops it
    at a step boundary)."""
    global _last_run
    _last_run = weakref.ref(run)
    if not background:
        try:
            run.wait()
        except KeyboardInterrupt:
            run.interrupt()
            raise
        if run.status == "failed":  # said, as the cell magic says it; the Run holds the rest (a diverged run in a
            # lab is a lesson, not an exception that would stop the notebook's Run All)
            print(f"{run.name}: {failure(run)}", file=sys.stderr)
    return run


def _default_optimizer():
    from .optim import SGD

    return SGD(lr=0.01)
