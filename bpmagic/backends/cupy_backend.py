"""The CuPy backend: arrays on an NVIDIA GPU. The only module in bpmagic that imports cupy."""
from __future__ import annotations

from .base import Backend

_HOW_TO_FIX = (
    "Install the GPU extra on a machine with an NVIDIA GPU and CUDA 12 or 13 drivers "
    "(`pip install 'bpmagic[gpu]'`), or use backend='numpy' (or 'auto', which falls back to NumPy)."
)


class CupyBackend(Backend):
    name = "cupy"
    install_hint = _HOW_TO_FIX

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import cupy
        except ModuleNotFoundError:
            return "CuPy is not installed"
        except Exception as e:  # a CUDA library that fails to load
            return f"CuPy is not importable ({type(e).__name__}: {e})"
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "CuPy sees no GPU"
        except Exception as e:
            return f"CuPy cannot reach a GPU ({type(e).__name__}: {e})"
        return None

    def __init__(self):
        import cupy

        self.xp = cupy

    def to_numpy(self, x):
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()
