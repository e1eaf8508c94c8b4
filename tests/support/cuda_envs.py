"""One virtual environment per CUDA major version with bpmagic's GPU extra, for the CUDA checks that need no GPU.

    env = ensure_cuda_env(13)    # -> Path of a venv: bpmagic[gpu-cuda13] pinned below, bpmagic from this tree

CuPy for CUDA 12 and for CUDA 13 cannot share an environment (both are the package `cupy`), and the test
environment has neither, so each CUDA major gets its own (tests/support/venvs.py builds and caches them: 1.2 GB for CUDA
13, 1.6 GB for CUDA 12; both at once, about 8 minutes on a busy 2-core machine with an empty pip cache). Each holds bpmagic's runtime
dependencies and its GPU extra as pyproject.toml declares them, with every CUDA package pinned, plus the CUDA
headers that the cuBLAS prototype check compiles against (crt: in CUDA 12 only the nvcc wheel has it; cccl).

CuPy is pinned because tests/support/cuda_probe.py uses its private kernel-generation and NVRTC functions (see there).
"""
from __future__ import annotations

from pathlib import Path

from venvs import ensure, pyproject, python_of  # noqa: F401  (python_of: for the tests that use these envs)

CUPY_VERSION = "14.2.0"
EXTRA = {12: "gpu", 13: "gpu-cuda13"}
PINS = {
    12: [f"cupy-cuda12x=={CUPY_VERSION}", "nvidia-cuda-nvrtc-cu12==12.9.86", "nvidia-cuda-runtime-cu12==12.9.79",
         "nvidia-cublas-cu12==12.9.3.13", "nvidia-cuda-cccl-cu12==12.9.27", "nvidia-cuda-nvcc-cu12==12.9.86",
         "cuda-pathfinder==1.9.1"],
    13: [f"cupy-cuda13x=={CUPY_VERSION}", "nvidia-cuda-nvrtc==13.0.88", "nvidia-cuda-runtime==13.0.96",
         "nvidia-cublas==13.1.1.3", "nvidia-cuda-crt==13.0.88", "nvidia-cuda-cccl==13.0.85", "cuda-pathfinder==1.9.1"],
}


def requirements(major: int) -> list[str]:
    """bpmagic's dependencies, its GPU extra for this CUDA major, and the pins (pip must satisfy all at once)."""
    project = pyproject()
    return [*project["dependencies"], *project["optional-dependencies"][EXTRA[major]], *PINS[major]]


def ensure_cuda_env(major: int) -> Path:
    """The cached environment for CUDA `major` (12 or 13), built first if missing or out of date. Raises
    RuntimeError with pip's own message when a package cannot be installed."""
    return ensure(f"cuda{major}-cupy{CUPY_VERSION}", requirements(major))


if __name__ == "__main__":  # build (or find) the environments by hand: python tests/support/cuda_envs.py [12] [13]
    import sys

    for major in sys.argv[1:] or ["12", "13"]:
        print(ensure_cuda_env(int(major)))
