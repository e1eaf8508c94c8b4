"""Plugins through entry points: groups bpmagic.ops, bpmagic.backends, bpmagic.optimizers and bpmagic.panels.

Built-ins are declared in bpmagic's own pyproject.toml in these groups, so they load exactly like third-party
plugins. When bpmagic runs from a source tree that was never installed (no entry points on record), the built-ins
below are used so that the package still works.
"""
from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

_BUILTINS = {
    "bpmagic.backends": {
        "numpy": "bpmagic.backends.numpy_backend:NumpyBackend",
        "cupy": "bpmagic.backends.cupy_backend:CupyBackend",
    },
    "bpmagic.ops": {
        "elementwise": "bpmagic.ops.elementwise",
        "reduce": "bpmagic.ops.reduce",
        "linalg": "bpmagic.ops.linalg",
        "shape": "bpmagic.ops.shape",
        "nn": "bpmagic.ops.nn",
        "composite": "bpmagic.ops.composite",
        "elementary": "bpmagic.ops.elementary",
        "activations": "bpmagic.ops.activations",
        "special": "bpmagic.ops.special",
        "constants": "bpmagic.ops.constants",
    },
    "bpmagic.panels": {
        "loss": "bpmagic.dashboard.panels.loss:LossPanel",
        "gradients": "bpmagic.dashboard.panels.gradients:GradientPanel",
        "update_ratio": "bpmagic.dashboard.panels.update_ratio:UpdateRatioPanel",
        "controls": "bpmagic.dashboard.panels.controls:ControlsPanel",
    },
    "bpmagic.optimizers": {
        "sgd": "bpmagic.train.optim:SGD",
        "adam": "bpmagic.train.optim:Adam",
    },
}

_cache: dict[str, dict] = {}
_lock = threading.RLock()


def _load(target: str):
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def load_group(group: str) -> dict:
    """name -> loaded object for every entry point in `group` (cached). A broken plugin is reported, not fatal."""
    with _lock:
        if group in _cache:
            return _cache[group]
        found = {ep.name: ep.value for ep in entry_points(group=group)}
        for name, target in _BUILTINS.get(group, {}).items():
            found.setdefault(name, target)
        loaded = {}
        for name, target in found.items():
            try:
                loaded[name] = _load(target)
            except Exception as e:  # a third-party plugin must not break bpmagic
                import warnings

                warnings.warn(f"bpmagic: plugin {name!r} in {group} ({target}) failed to load: {e}")
        _cache[group] = loaded
        return loaded


def reload_plugins() -> None:
    """Forget loaded plugins, so that packages installed since are found (used by tests)."""
    with _lock:
        _cache.clear()
