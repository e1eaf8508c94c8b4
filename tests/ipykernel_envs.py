"""Second virtual environments with a chosen ipykernel, for tests that must see bpmagic on other kernels.

    env = ensure_env("6.29.5")      # -> Path of a venv: that ipykernel, bpmagic's dependencies, bpmagic from here

Each environment holds ipykernel at the pinned version, bpmagic's runtime dependencies from PyPI, and this source
tree on its path (a .pth file, so edits here are what it runs), plus the backprop kernelspec installed into it
(`python -m bpmagic.kernel install --sys-prefix`). Environments are cached under $BPMAGIC_TEST_ENVS (default
~/.cache/bpmagic/test-envs) and reused while their requirements are unchanged; pip's own cache makes a rebuild
quick. A file lock keeps two test processes from building the same one at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: ipykernel versions the tests check: the last 6.x line many JupyterHubs run, and the newest on PyPI.
IPYKERNEL_629 = "6.29.5"
IPYKERNEL_NEWEST = "7.4.0"


def dependencies() -> list[str]:
    """bpmagic's runtime dependencies as pyproject.toml declares them, ipykernel excepted (it is pinned here)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest brings tomli there
        import tomli as tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not d.replace("_", "-").lower().startswith("ipykernel")]


def envs_dir() -> Path:
    return Path(os.environ.get("BPMAGIC_TEST_ENVS", Path.home() / ".cache" / "bpmagic" / "test-envs"))


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_env(ipykernel_version: str) -> Path:
    """The cached environment for `ipykernel_version`, built first if missing or out of date."""
    tag = f"ipykernel-{ipykernel_version}-py{sys.version_info.major}.{sys.version_info.minor}"
    env = envs_dir() / tag
    wanted = {"requirements": [f"ipykernel=={ipykernel_version}", *dependencies()], "source": str(ROOT)}
    marker = env / "bpmagic-test-env.json"
    envs_dir().mkdir(parents=True, exist_ok=True)
    with open(envs_dir() / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and json.loads(marker.read_text()) == wanted and python_of(env).exists():
            return env
        _build(env, wanted)
        marker.write_text(json.dumps(wanted))
    return env


def _build(env: Path, wanted: dict) -> None:
    venv.EnvBuilder(clear=True, with_pip=True, symlinks=True).create(env)
    py = str(python_of(env))
    _check([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *wanted["requirements"]])
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this source tree, not a build of it: the checks run what is being worked on
    (Path(site) / "bpmagic-source-tree.pth").write_text(str(ROOT) + "\n")
    _check([py, "-m", "bpmagic.kernel", "install", "--sys-prefix"])


def _check(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building a test environment failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")


if __name__ == "__main__":  # build (or find) the environments by hand: python tests/ipykernel_envs.py
    for version in sys.argv[1:] or [IPYKERNEL_629, IPYKERNEL_NEWEST]:
        print(ensure_env(version))
