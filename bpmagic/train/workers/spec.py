"""What travels to the workers to start a run (engine_start): the loss function by value (cloudpickle) with the
names of the cell's lines, the parameters, the optimizer as its class and values, the global batch, the settings to
start with, and the checkpoint to save to and the one resumed from."""
from __future__ import annotations

import linecache

import numpy as np


def worker_spec(loss_fn, params, buffers, optimizer, groups: dict, batch_size, total_steps, seed, metrics, name,
                first: dict, checkpointing=None, resumed=None, early_stopping=None) -> bytes:
    """What every worker is given to start a run (engine_start), pickled: the loss function by value (cloudpickle),
    the parameters, the optimizer as its class and values, the global batch, the settings to start with, and
    the checkpoint to save to and the one resumed from."""
    import cloudpickle

    hyper = optimizer.hyperparameters()
    multipliers = hyper.pop("lr_multipliers", {})
    return cloudpickle.dumps({
        "loss_fn": loss_fn, "params": {k: np.asarray(v) for k, v in params.items()},
        "buffers": {k: np.asarray(v) for k, v in (buffers or {}).items()},
        "optimizer": {"cls": type(optimizer), "hyper": hyper, "multipliers": multipliers,
                      "schedule": optimizer.schedule},
        "layers": list(dict.fromkeys(groups.values())), "batch_size": batch_size, "total_steps": total_steps,
        "seed": seed, "backend": "numpy", "groups": groups, "metrics": tuple(metrics), "name": name,
        "first": first, "sources": _sources_of(loss_fn),
        "checkpoint": None if checkpointing is None else (checkpointing.path, checkpointing.every.text),
        "resumed": resumed, "early_stopping": early_stopping})


def _rebuild_optimizer(d: dict):
    """The notebook's optimizer on a worker (an optimizer holds a lock, so it travels as its class and values)."""
    opt = d["cls"]()
    norm, value = d["hyper"].get("clip_norm"), d["hyper"].get("clip_value")
    if norm is not None or value is not None:
        opt.clipped(norm=norm, value=value)
    opt.set(**d["hyper"])
    for layer, m in d["multipliers"].items():
        opt.set_lr_multiplier(layer, m)
    if d["schedule"] is not None:  # every worker follows the same schedule: the rate depends on the step alone, and
        opt.scheduled(d["schedule"])  # a plateau's on the global loss or the validation, the same on every worker
    return opt


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
