"""Checkpoints: a run's parameters, optimizer state, buffers, hyperparameters, history and place in its data, as one
.npz file written atomically — and a run resumed from one exactly where it was (--checkpoint PATH --every 60s,
--resume PATH).

A run resumed from a checkpoint takes the same steps it would have taken had it never stopped: the data's order
comes from the random generator's state saved at the start of the epoch, and each step's random draws (dropout)
from the seed and the step number, both saved; so a kernel that dies loses at most one interval of training.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..errors import BackpropError


@dataclass
class Position:
    """Where a run stands in its data: steps taken, the epoch, the next batch in it, and the state of the generator
    the epoch's order was drawn from (numpy's bit_generator.state, JSON-able)."""

    steps: int
    epoch: int
    batch: int
    order_from: dict


def save(path, params: dict, state: dict, meta: dict, buffers: dict | None = None):
    """Write params (name -> array), optimizer state (name -> slot -> array), buffers (name -> array) and
    JSON-able meta to `path`, atomically: a reader (or a kernel that dies while it writes) sees the old file or the
    new one, never half of one."""
    arrays = {f"param/{k}": np.asarray(_host(v)) for k, v in params.items()}
    arrays.update({f"buffer/{k}": np.asarray(_host(v)) for k, v in (buffers or {}).items()})
    for name, slots in state.items():
        for slot, v in slots.items():
            arrays[f"state/{name}/{slot}"] = np.asarray(_host(v))
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_jsonable).encode(), dtype=np.uint8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):  # else mkstemp's error names the hidden file it meant to write first
        raise BackpropError(f"cannot save the run to {path}: there is no folder {folder} (make it first, e.g. "
                            f"os.makedirs({os.path.dirname(path)!r}, exist_ok=True))")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """(params, state, meta, buffers) as written by `save`."""
    params, state, buffers = {}, {}, {}
    written = "--resume (resume=) and Run.load take the file --checkpoint (checkpoint=) or run.save wrote"
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BackpropError(f"there is no checkpoint at {path}: {written}") from None
    except (ValueError, EOFError):  # NumPy's "contains pickled data" (a file of another kind), an empty file
        raise BackpropError(f"{path} is not a checkpoint (not a NumPy file): {written}") from None
    if not hasattr(data, "files") or "meta" not in data.files:
        raise BackpropError(f"{path} is not a checkpoint (a NumPy file without a run's record): {written}")
    with data:
        meta = json.loads(bytes(data["meta"]).decode())
        for key in data.files:
            kind, _, rest = key.partition("/")
            if kind == "param":
                params[rest] = data[key]
            elif kind == "buffer":
                buffers[rest] = data[key]
            elif kind == "state":
                name, _, slot = rest.rpartition("/")
                state.setdefault(name, {})[slot] = data[key]
    return params, state, meta, buffers


def _host(x):
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON-able")


# -- when to save --------------------------------------------------------------------------------------------------
_EVERY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|steps?)?\s*$")
_SECONDS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
            "h": 3600, "hour": 3600, "hours": 3600}


class Every:
    """How often a run saves its checkpoint: a time ("60s", "5m", a number of seconds) or a number of steps
    ("500 steps"). The run also saves when it ends, however it ends."""

    def __init__(self, every="60s"):
        text = str(every)
        m = _EVERY.match(text)
        amount = float(m.group(1)) if m else 0.0
        if not m or amount <= 0 or not math.isfinite(amount):
            raise BackpropError(f"--every {text}: say how often to save the checkpoint as a time (60s, 5m, 1h) or a "
                                "number of steps (500steps)")
        unit = (m.group(2) or "s").rstrip()
        self.steps = int(amount) if unit.startswith("step") else None
        self.seconds = None if self.steps else amount * _SECONDS[unit]
        self.text = text

    def due(self, steps_since: int, seconds_since: float) -> bool:
        return steps_since >= self.steps if self.steps else seconds_since >= self.seconds


class Checkpointing:
    """A run's checkpoint file and when to write it (the training loop asks at each step boundary)."""

    def __init__(self, path, every="60s"):
        self.path = os.fspath(path)
        self.every = every if isinstance(every, Every) else Every(every)
        self.saved_at, self.saved_step = time.monotonic(), None
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise BackpropError(f"--checkpoint {self.path}: the folder {folder} does not exist; create it first")

    def due(self, steps: int) -> bool:
        return self.every.due(steps - (self.saved_step or 0), time.monotonic() - self.saved_at)

    def write(self, run, position: Position):
        run.save(self.path, position)
        self.saved_at, self.saved_step = time.monotonic(), position.steps


# -- resuming ------------------------------------------------------------------------------------------------------
@dataclass
class Resumed:
    """What a run continues from: its place in the data, step count, history and hyperparameters."""

    path: str
    position: Position
    step_count: int
    history: dict
    hyper: dict  # the hyperparameters in use when it was saved
    state: dict  # the optimizer's: name -> slot -> array


def resume(path, params: dict, buffers: dict, optimizer, examples: int, batch_size: int, seed: int) -> Resumed:
    """Read the checkpoint at `path` into `params` and `buffers` (their arrays, in place) and check it belongs to
    this model and data; the caller gives the optimizer state to the step (Run._continue_from) and says what it
    resumed (fitting._resumed)."""
    saved_params, state, meta, saved_buffers = load(path)
    where = meta.get("position")
    if where is None:
        raise BackpropError(f"{path} holds a run saved without its place in the data (an older bpmagic): it can be "
                            "loaded with Run.load, but not resumed")
    _same("parameters", saved_params, params, path)
    _same("buffers", saved_buffers, buffers, path)
    kind = type(optimizer).__name__
    if meta.get("optimizer") not in (None, kind):
        raise BackpropError(f"{path} was trained with {meta['optimizer']}, and this run uses {kind}: its state "
                            f"(momentum, Adam's moments) would not fit. Resume with the optimizer it was saved "
                            "with, or start over without --resume")
    data = meta.get("data", {})
    mine = {"examples": examples, "batch_size": batch_size, "seed": seed}
    differ = [f"{k} {data[k]} then, {v} now" for k, v in mine.items() if k in data and data[k] != v]
    if differ:
        raise BackpropError(f"{path} was saved from a run over other data or another order ({'; '.join(differ)}): "
                            "resuming continues the same sequence of batches, so give the same data, batch size "
                            "and seed, or start over without --resume")
    for name, a in saved_params.items():
        params[name][...] = a
    for name, a in saved_buffers.items():
        buffers[name][...] = a
    return Resumed(os.fspath(path), Position(**where), int(meta["step_count"]), meta.get("history", {}),
                   meta.get("hyperparameters", {}), state)


def _same(what, saved: dict, mine: dict, path):
    missing = [n for n in mine if n not in saved]
    extra = [n for n in saved if n not in mine]
    shapes = [f"{n} {tuple(saved[n].shape)} there, {tuple(np.shape(mine[n]))} here" for n in mine
              if n in saved and tuple(saved[n].shape) != tuple(np.shape(mine[n]))]
    if missing or extra or shapes:
        said = "; ".join(filter(None, [missing and f"not saved: {', '.join(missing)}",
                                       extra and f"saved but not in this model: {', '.join(extra)}",
                                       shapes and "other shapes: " + ", ".join(shapes)]))
        raise BackpropError(f"{path} holds another model's {what} ({said}): resume the model it was saved from, or "
                            "start over without --resume")
