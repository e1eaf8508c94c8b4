"""Second virtual environments with a chosen ipykernel, for tests that must see bpmagic on other kernels.

    env = ensure_env("6.29.5")      # -> Path of a venv: that ipykernel, bpmagic's dependencies, bpmagic from here

Each environment (tests/support/venvs.py builds and caches it) holds ipykernel at the pinned version, bpmagic's runtime
dependencies from PyPI, and this source tree on its path, plus the backprop kernelspec installed into it
(`python -m bpmagic.kernel install --sys-prefix`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from venvs import ensure, pyproject, python_of  # noqa: F401  (python_of: for the tests that use these envs)

#: ipykernel versions the tests check: the last 6.x line many JupyterHubs run, and the newest on PyPI.
IPYKERNEL_629 = "6.29.5"
IPYKERNEL_NEWEST = "7.4.0"


def dependencies() -> list[str]:
    """bpmagic's runtime dependencies as pyproject.toml declares them, ipykernel excepted (it is pinned here)."""
    return [d for d in pyproject()["dependencies"] if not d.replace("_", "-").lower().startswith("ipykernel")]


def ensure_env(ipykernel_version: str) -> Path:
    """The cached environment for `ipykernel_version`, built first if missing or out of date."""
    return ensure(f"ipykernel-{ipykernel_version}", [f"ipykernel=={ipykernel_version}", *dependencies()],
                  then=[["python", "-m", "bpmagic.kernel", "install", "--sys-prefix"]])


if __name__ == "__main__":  # build (or find) the environments by hand: python tests/support/ipykernel_envs.py
    for version in sys.argv[1:] or [IPYKERNEL_629, IPYKERNEL_NEWEST]:
        print(ensure_env(version))
