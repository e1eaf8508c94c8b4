"""Helpers of the GPU-free CUDA tests: run tests/support/cuda_corpus.py and tests/support/cuda_probe.py in their environments."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_envs import EXTRA, PINS, ensure_cuda_env, python_of

HERE = Path(__file__).resolve().parent
# BPMAGIC_CUDA_MAJORS=13 BPMAGIC_CUDA13_PYTHON=python: check only CUDA 13, with a Python that has CuPy already (a
# GPU machine without internet: bench/gpu_check.sh); by default both majors, in environments built here
MAJORS = tuple(int(m) for m in os.environ.get("BPMAGIC_CUDA_MAJORS", "12,13").split(","))


def cuda_python(major: int) -> str:
    """The Python of the CUDA `major` environment; a test that needs it fails, saying what could not be installed."""
    given = os.environ.get(f"BPMAGIC_CUDA{major}_PYTHON")
    if given:
        return given
    try:
        return str(python_of(ensure_cuda_env(major)))
    except RuntimeError as e:
        pytest.fail(f"The CUDA {major} environment of this check could not be installed: bpmagic[{EXTRA[major]}] "
                    f"with {', '.join(PINS[major])} (from the package index). pip said:\n{e}", pytrace=False)


def cuda_pythons() -> dict:
    """CUDA major -> its Python, the environments built at once (downloading and unpacking ~2.6 GB of wheels is
    most of a first run's time)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(MAJORS)) as pool:
        return dict(zip(MAJORS, pool.map(cuda_python, MAJORS)))


def start_probe(major: int, mode: str, *paths) -> subprocess.Popen:
    return subprocess.Popen([cuda_python(major), str(HERE / "cuda_probe.py"), mode, *map(str, paths)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_probe(process: subprocess.Popen, result: Path, timeout=900) -> dict:
    output, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        pytest.fail(f"{' '.join(process.args)} failed (exit {process.returncode}):\n{output[-6000:]}", pytrace=False)
    return json.loads(Path(result).read_text())


def probe(major: int, mode: str, *paths) -> dict:
    return finish_probe(start_probe(major, mode, *paths), paths[-1])


def corpus(path: Path, *args) -> dict:
    """The kernels of tests/support/cuda_corpus.py (run with this Python, in a process of its own)."""
    done = subprocess.run([sys.executable, str(HERE / "cuda_corpus.py"), str(path), *args], capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"collecting the fused kernels failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}",
                    pytrace=False)
    return json.loads(path.read_text())


def failures(results: list) -> str:
    """One paragraph per failed compile: the kernel, its ops, the arch, NVRTC's message."""
    return "\n\n".join(f"{r['name']} (ops: {r['ops']}), variant {r['variant']}, sm_{r['arch']}:\n{r['error']}"
                       for r in results if not r["ok"])


def report(request, line: str):
    """A figure CI's log must show: printed in the summary at the end of the run (tests/conftest.py), also when the
    test ran on another worker."""
    request.config.__dict__.setdefault("bpmagic_figures", []).append(line)
