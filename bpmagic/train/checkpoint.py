"""Save and load a run's parameters, optimizer state, buffers and hyperparameters as one .npz file."""
from __future__ import annotations

import json

import numpy as np


def save(path, params: dict, state: dict, meta: dict, buffers: dict | None = None):
    """Write params (name -> array), optimizer state (name -> slot -> array), buffers (name -> array) and
    JSON-able meta to `path`."""
    arrays = {f"param/{k}": np.asarray(_host(v)) for k, v in params.items()}
    arrays.update({f"buffer/{k}": np.asarray(_host(v)) for k, v in (buffers or {}).items()})
    for name, slots in state.items():
        for slot, v in slots.items():
            arrays[f"state/{name}/{slot}"] = np.asarray(_host(v))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path):
    """(params, state, meta, buffers) as written by `save`."""
    params, state, buffers = {}, {}, {}
    with np.load(path, allow_pickle=False) as data:
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
