"""bpmagic where no thread can be started, as in Pyodide (JupyterLite): there `threading.Thread.start` raises
RuntimeError("can't start new thread"), and so it does here, on CPython, for these tests. fit and the %%backprop
magic must then choose the drivers that need no thread (train/drivers.py "auto"): the blocking cell takes its own
steps, --background runs as a task on the kernel's event loop between cells, the dashboard's controls act on it
mid-run, and a paused run never blocks the kernel."""
import asyncio
import json
import threading
import time

import numpy as np
import pytest
from kernel_client import CELL, SETUP, Kernel
from venvs import pyproject

import bpmagic as bp
from bpmagic import threads

NO_THREADS = """\
import threading
def _no_threads(self, *args, **kwargs):
    raise RuntimeError("can't start new thread")
threading.Thread.start = _no_threads
"""


def xor_loss(p, x, y):
    return bp.mse(bp.tanh(x @ p["W1"]) @ p["W2"], y)


def xor():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)).astype(np.float32)
    params = {"W1": rng.standard_normal((2, 8)).astype(np.float32),
              "W2": rng.standard_normal((8, 1)).astype(np.float32)}
    return params, (X, (X[:, :1] * X[:, 1:] > 0).astype(np.float32))


@pytest.fixture
def no_threads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert not threads.available()


def test_a_blocking_fit_takes_its_own_steps(no_threads):
    params, data = xor()
    run = bp.fit(xor_loss, params, data, steps=200, batch_size=16, backend="numpy")
    assert run.status == "finished" and run.steps_done == 200
    assert type(run._driver).__name__ == "InlineDriver"  # no event loop here either


def test_background_runs_on_the_event_loop_and_a_pause_never_blocks(no_threads):
    async def body():
        params, data = xor()
        run = bp.fit(xor_loss, params, data, steps=10**9, batch_size=16, backend="numpy", background=True,
                     optimizer=bp.optim.SGD(lr=0.1))
        assert type(run._driver).__name__ == "AsyncioDriver"
        deadline = time.monotonic() + 120
        while run.steps_done < 50:  # the task steps while this coroutine sleeps
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        run.optimizer.lr = 0.01
        run.pause()
        began = time.monotonic()
        assert run.wait().status == "paused" and run.waits_for_resume  # returns: nothing could resume it
        assert time.monotonic() - began < 5
        held = run.steps_done
        await asyncio.sleep(0.3)
        assert run.steps_done == held
        run.resume()
        while run.steps_done < held + 50:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        run.stop()
        assert run.wait().status == "stopped"  # waited for in the loop's thread: takes the last boundary itself
        lrs = run.history["lr"]
        assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)

    asyncio.run(body())


def test_a_paced_blocking_run_sleeps_instead_of_waiting_for_another_thread(no_threads):
    params, data = xor()
    began = time.monotonic()
    run = bp.fit(xor_loss, params, data, steps=6, batch_size=64, backend="numpy", pace=20)
    assert run.status == "finished" and time.monotonic() - began >= 5 / 20


def test_the_gradient_strip_indexes_with_the_platforms_integer():
    """np.bincount takes intp (int32 on wasm32, where int64 indices raise "Cannot cast ... int64 to int32")."""
    from bpmagic.dashboard.panels.gradients import strip

    real = np.bincount

    def strict(x, *args, **kwargs):
        assert np.asarray(x).dtype == np.intp, np.asarray(x).dtype
        return real(x, *args, **kwargs)

    history = {"step": list(range(1, 501)), "grad_norm/1": [0.5] * 500}
    np.bincount = strict
    try:
        s = strip(history, ["1"], bp.train.stats.GRAD_NORM)
    finally:
        np.bincount = real
    assert s.shape == (1, 120) and np.allclose(s, np.log10(0.5))


def test_pyodide_installs_bpmagic_without_ipykernel_or_ui_poll():
    """`%pip install bpmagic` in JupyterLite: the Pyodide kernel has its own ipykernel stand-in (6.9.2)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    pyodide = {**default_environment(), "sys_platform": "emscripten", "platform_system": "Emscripten",
               "platform_machine": "wasm32", "python_version": "3.12"}
    reqs = [Requirement(r) for r in pyproject()["dependencies"]]
    there = {r.name for r in reqs if r.marker is None or r.marker.evaluate(pyodide)}
    here = {r.name for r in reqs if r.marker is None or r.marker.evaluate()}
    assert there == {"numpy", "ipywidgets", "graphviz", "anywidget"}
    assert here == there | {"ipykernel", "jupyter-ui-poll", "threadpoolctl"}  # BLAS threads: none to limit there


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setenv("BPMAGIC_LIVE_CONTROLS", "off")  # as in JupyterLite: no way to handle comms mid-cell
    k = Kernel("python3")
    k.run(NO_THREADS + "%load_ext bpmagic\n" + SETUP)
    yield k
    k.close()


def state(k):
    out = k.run("import json\nprint(json.dumps({'status': _bp.status, 'steps': _bp.steps_done, 'lr': _bp.history"
                "['lr'], 'driver': type(_bp._driver).__name__, 'threads': threading.active_count()}))")
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_magic_in_a_kernel_without_threads(kernel):
    k = kernel
    before = json.loads(k.run("import json, threading\nprint(json.dumps(threading.active_count()))"))

    # a blocking cell: takes its own steps, says once that the controls apply when it ends
    out = k.run(f"%%backprop --steps 300 --lr 0.1\n{CELL}")
    assert "the controls apply when this cell ends" in out and "RuntimeError" not in out
    s = state(k)
    assert (s["status"], s["steps"], s["driver"]) == ("finished", 300, "AsyncioDriver")

    # --background: the event loop's task trains between cells; the dashboard's learning rate acts mid-run
    k.comms.clear()
    k.run(f"%%backprop --steps 100000000 --lr 0.1 --background\n{CELL}")
    k.wait_until(lambda: "bpmagic-lr" in k.comms, 180, "the dashboard never appeared")
    k.wait_steps(50)
    k.wait_handled(k.set_value("bpmagic-lr", 0.01))
    k.wait_steps(50)

    # Pause from the dashboard; waiting for the paused run returns instead of blocking the kernel
    k.click("bpmagic-pause")
    k.wait_until(lambda: k.status().startswith("paused"), 180, "the dashboard never said paused")
    out = k.run("print(_bp.wait().status, _bp.waits_for_resume)")
    assert out.split()[-2:] == ["paused", "True"]
    held = state(k)["steps"]
    k.click("bpmagic-pause")  # Resume
    k.wait_steps(50)
    k.click("bpmagic-stop")
    k.run("_bp.wait()")
    s = state(k)
    assert s["status"] == "stopped" and s["steps"] > held + 40
    lrs = s["lr"]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)
    changed = next(i for i, v in enumerate(lrs) if v == pytest.approx(0.01))
    assert 10 < changed < len(lrs) - 10  # applied mid-run
    assert s["threads"] == before  # bpmagic started none
