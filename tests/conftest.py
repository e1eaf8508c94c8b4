"""Shared by every test: test helpers importable by name (tests/support/), IPython's shell with bpmagic loaded,
which tests share a worker under pytest-xdist, and the figures tests report for CI's log. The browser fixtures are in
tests/browser/conftest.py."""
import os
import sys
from pathlib import Path

import pytest

# One BLAS thread per process under test. `./dev test` runs two xdist workers on two cores, each driving kernels
# whose OpenBLAS would start a thread per core; OpenBLAS's threads spin while they wait, so two processes multiplying
# at once starve each other: lab 07's --check cells took 76 s beside a busy neighbour with BLAS's default threads and
# 6.4 s with one (2 cores, measured). What the tests check does not depend on it; set here, every kernel, engine and
# notebook a test starts inherits it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
pytest_plugins = ["plugin_install"]  # the fixture `installed_plugin`


@pytest.fixture(scope="module")
def ip():
    """IPython's shell (the one a notebook's kernel runs) with bpmagic loaded: `ip.run_cell("%%backprop ...")`."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "bpmagic")
    return shell


@pytest.fixture
def ns(ip):
    """The shell's namespace with the XOR data (X, Y) of support/cells.py's XOR_CELL, and no model of an earlier test."""
    ip.run_cell("import numpy as np\n"
                "X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)\n"
                "Y = np.array([[0], [1], [1], [0]], np.float32)")
    for name in ("W1", "b1", "W2", "b2", "_bp", "xor"):
        ip.user_ns.pop(name, None)
    return ip.user_ns


# -- running on several workers (pytest-xdist: `./dev test` runs -n 2) ----------------------------------------------
# Tests that share one expensive thing run on one worker, one after another: the browser tests share one Jupyter
# server and one Chromium (tests/browser/conftest.py); the tests that build cached environments (support/venvs.py)
# must not build the same one twice at once; the hub tests run one JupyterHub with its proxy; the workers' tests
# start MPI clusters (their waiting engines spin a core each: one cluster at a time); the JupyterLite tests share
# one site and one Chromium; the grading tests share one nbgrader course (its set-up
# grades every lab: once, not once per worker); test_plugins installs
# and removes the test plugin, as a browser test does, so it runs beside them, never at once. Every other test is a
# unit of its own. (xdist's own --dist loadgroup does this with marks, but it renames test ids in a way pytest 9
# no longer reads, so the groups are given to its scope scheduler instead.)
_GROUPS = {"browser/": "browser", "package/test_plugins": "browser", "cuda/": "envs",
           "frontends/test_ipykernel_versions": "envs", "classroom/test_hub": "hub",
           "train/test_workers_": "workers", "classroom/test_lite": "lite",
           "classroom/test_grading": "grading"}  # paths under tests/


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Grouped(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::")[0].partition("tests/")[2]
            return next((group for prefix, group in _GROUPS.items() if path.startswith(prefix)), nodeid)

    return Grouped(config, log)


# -- figures a test reports for CI's log (support/cuda_check.py report): carried with the test's report, so a worker's
# figures reach the summary printed by the process that runs the session
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    figures = item.config.__dict__.pop("bpmagic_figures", [])
    outcome.get_result().user_properties.extend(("bpmagic figure", line) for line in figures)


def pytest_runtest_logreport(report):
    lines = [value for key, value in report.user_properties if key == "bpmagic figure"]
    _FIGURES.extend(line for line in lines if line not in _FIGURES)


_FIGURES: list = []


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures the tests measured")
        for line in _FIGURES:
            terminalreporter.write_line(line)
