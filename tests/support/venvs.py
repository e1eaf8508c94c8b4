"""Second virtual environments for tests that must run bpmagic with other packages than the test environment's.

    env = ensure("tag", ["pkg==1.0", ...], then=[["python", "-m", "..."]])   # -> Path of the venv

Each environment holds the given requirements from the package index and this source tree on its path (a .pth file,
so edits here are what it runs). Environments are cached under $BPMAGIC_TEST_ENVS (default
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

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest brings tomli there
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def envs_dir() -> Path:
    return Path(os.environ.get("BPMAGIC_TEST_ENVS", Path.home() / ".cache" / "bpmagic" / "test-envs"))


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def ensure(tag: str, requirements: list[str], then=()) -> Path:
    """The cached environment `tag` (the Python version is added to it) with `requirements`, built first if missing
    or out of date; `then`: commands run once it is built, "python" standing for its Python."""
    tag = f"{tag}-py{sys.version_info.major}.{sys.version_info.minor}"
    env = envs_dir() / tag
    wanted = {"requirements": list(requirements), "then": [list(c) for c in then], "source": str(ROOT)}
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
    _check([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-compile", "-q", *wanted["requirements"]])
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this source tree, not a build of it: the checks run what is being worked on
    (Path(site) / "bpmagic-source-tree.pth").write_text(str(ROOT) + "\n")
    for command in wanted["then"]:
        _check([py if part == "python" else part for part in command])


def _check(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building a test environment failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
