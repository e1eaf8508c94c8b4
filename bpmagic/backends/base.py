"""The interface every array backend implements."""
from __future__ import annotations


class Backend:
    """An array module plus device transfers. Subclasses set `name` and `xp`."""

    name: str = "?"
    xp = None
    install_hint: str = ""  # what to do when unavailable_reason() is not None

    @classmethod
    def installed(cls) -> bool:
        """True when this backend's array library is installed here (usable or not): then a user may expect it."""
        return True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here, else a short reason why not (install_hint says how to fix it)."""
        return None

    def asarray(self, x, dtype=None):
        """`x` as an array on this backend's device."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x):
        """`x` as a NumPy array on the host."""
        import numpy as np

        return np.asarray(x)

    def owns(self, x) -> bool:
        """True when `x` already lives on this backend's device."""
        return isinstance(x, self.xp.ndarray)

    def runner(self, graph, run):
        """What calls `run`, the step generated for `graph`: `run` itself, or it inside what the backend needs
        around a step (NumPy: its BLAS's thread count)."""
        return run

    def synchronize(self) -> None:
        """Wait until queued device work has finished (no-op on the CPU)."""

    def __repr__(self):
        return f"<bpmagic backend {self.name}>"
