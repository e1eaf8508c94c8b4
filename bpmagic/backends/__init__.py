"""Array backends: NumPy (CPU) and CuPy (GPU) behind one switch.

A backend names an array module `xp` and knows how to move arrays to and from its device. Backends are found
through the entry-point group ``bpmagic.backends``; the built-ins are registered there the same way as plugins.
Nothing outside this package imports cupy.
"""
from __future__ import annotations

import sys

from ..errors import BackendError
from ..plugins import load_group
from .base import Backend

__all__ = ["Backend", "get_backend", "available_backends", "array_module", "is_array"]

_instances: dict[str, Backend] = {}


def available_backends() -> dict[str, type]:
    """Backend classes by name, built-ins and plugins alike."""
    return load_group("bpmagic.backends")


_said: set = set()  # what "auto" has told this process already


def get_backend(name: str | Backend = "auto", *, verbose: bool = False) -> Backend:
    """The backend called `name`; "auto" picks CuPy when a GPU is usable, else NumPy. With `verbose`, it says
    which once per process, and only where the choice is not the obvious one: CuPy chosen, or CuPy installed
    but unusable (without CuPy, NumPy goes without saying)."""
    if isinstance(name, Backend):
        return name
    classes = available_backends()
    if name == "auto":
        cupy_cls = classes.get("cupy")
        reason = cupy_cls.unavailable_reason() if cupy_cls else "the cupy backend is not installed"
        chosen = "cupy" if reason is None else "numpy"
        if verbose and cupy_cls is not None and cupy_cls.installed():
            why = "a GPU is usable" if reason is None else f"CuPy is installed but unusable here: {reason}"
            message = f"bpmagic: backend 'auto' chose {chosen} ({why})."
            if message not in _said:
                _said.add(message)
                print(message)
        name = chosen
    if name not in classes:
        raise BackendError(
            f"Unknown backend {name!r}. Available backends: {', '.join(sorted(classes))}. "
            "Pass one of these, or 'auto' to use CuPy when a GPU is usable and NumPy otherwise."
        )
    if name not in _instances:
        cls = classes[name]
        reason = cls.unavailable_reason()
        if reason is not None:
            raise BackendError(f"The {name!r} backend cannot be used here: {reason}. {cls.install_hint}".strip())
        _instances[name] = cls()
    return _instances[name]


def is_array(x) -> bool:
    """True for NumPy and CuPy arrays (and NumPy scalars), without importing CuPy."""
    import numpy as np

    return isinstance(x, (np.ndarray, np.generic)) or type(x).__module__.startswith("cupy")


def array_module(*values):
    """The array module (numpy or cupy) that the given values live in; numpy when none is a device array."""
    for v in values:
        if type(v).__module__.startswith("cupy"):
            return sys.modules["cupy"]
    import numpy as np

    return np

