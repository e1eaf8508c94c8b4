"""The training loop under each of its drivers (bpmagic/train/drivers.py): a worker thread, inline in the waiting
thread, and an asyncio task. The same behaviour is asserted for each — pause, step, resume, a learning-rate change,
stop, a NaN mid-run, Reset, the pace, wait(until_step=) and join() — with waits on events and generous deadlines,
never on a time a step is expected to take."""
import asyncio
import math
import time

import numpy as np
import pytest

import bpmagic as bp

DRIVERS = ["thread", "inline", "asyncio"]
DEADLINE = 120.0  # seconds: CI's machine is busy


def xor_loss(p, x, y):
    h = bp.tanh(x @ p["W1"] + p["b1"])
    return bp.mse(h @ p["W2"] + p["b2"], y)


def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)).astype(np.float32)
    return X, (X[:, :1] * X[:, 1:] > 0).astype(np.float32)


def params():
    rng = np.random.default_rng(1)
    return {"W1": rng.standard_normal((2, 8)).astype(np.float32), "b1": np.zeros(8, np.float32),
            "W2": rng.standard_normal((8, 1)).astype(np.float32), "b2": np.zeros(1, np.float32)}


class Harness:
    """Starts runs with one driver and lets time pass as that driver needs: the inline driver takes steps only while
    someone waits, the asyncio driver only while the event loop gets turns."""

    def __init__(self, driver):
        self.driver = driver

    def start(self, **kwargs):
        kwargs = {"steps": math.inf, "batch_size": 16, "optimizer": bp.optim.SGD(lr=0.1), **kwargs}
        return bp.fit(xor_loss, kwargs.pop("params", None) or params(), data(), background=True,
                      driver=self.driver, backend="numpy", **kwargs)

    async def until(self, run, condition, what, deadline=DEADLINE):
        end = time.monotonic() + deadline
        while not condition():
            assert time.monotonic() < end, f"{self.driver}: {what} did not happen within {deadline} s ({run!r})"
            assert not (run.done and run.status == "failed" and run.ended_because == "error"), run.error
            await self.let_time_pass(run, 0.02)

    async def let_time_pass(self, run, seconds):
        if self.driver == "inline":
            run.wait(timeout=seconds)  # the waiting thread takes the steps
        else:
            await asyncio.sleep(seconds)  # the worker thread, or the event loop's task, takes them


def run_with(driver, body):
    asyncio.run(body(Harness(driver)))


@pytest.mark.parametrize("driver", DRIVERS)
def test_pause_step_resume_change_and_stop(driver):
    async def body(h):
        run = h.start()
        await h.until(run, lambda: run.steps_done >= 20, "20 steps")
        run.pause()
        assert run.status == "paused"
        await h.let_time_pass(run, 0.05)  # the step in progress when Pause came may still end
        held = run.steps_done
        await h.let_time_pass(run, 0.3)  # paused: no step runs for as long as we look
        assert run.steps_done == held
        run.step_once()
        await h.until(run, lambda: run.steps_done == held + 1, "one step after Step")
        await h.let_time_pass(run, 0.2)
        assert run.steps_done == held + 1 and run.status == "paused"  # exactly one
        run.optimizer.lr = 0.05
        run.resume()
        await h.until(run, lambda: run.steps_done >= held + 30, "30 steps after Resume")
        lrs = run.history["lr"]
        assert lrs[held] == 0.1 and lrs[held + 1] == 0.05  # the change took effect at the next step
        assert [(c.step, c.name, c.old, c.new) for c in run.changes()] == [(held + 2, "lr", 0.1, 0.05)]
        run.stop()
        await h.until(run, lambda: run.done, "the end after Stop")
        run.join()
        stopped_at = run.steps_done
        await h.let_time_pass(run, 0.1)
        assert run.status == "stopped" and run.steps_done == stopped_at and run.total_steps is None
        assert run.outcome == f"stopped at step {stopped_at}"  # no "of <total>": it trained until stopped

    run_with(driver, body)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_nan_mid_run_ends_it_with_the_params_of_the_last_good_step(driver):
    async def body(h):
        run = h.start()
        await h.until(run, lambda: run.steps_done >= 10, "10 steps")
        run.optimizer.lr = 1e30
        await h.until(run, lambda: run.done, "the end after the NaN")
        run.join()
        assert run.status == "failed" and run.ended_because == "non-finite"
        assert all(np.isfinite(p).all() for p in run.params.values())
        assert 'bp.mse(h @ p["W2"] + p["b2"], y)' in str(run.error) and "not applied" in str(run.error)
        assert run.steps_done == run.history["step"][-1]  # the failed step left no row

    run_with(driver, body)


@pytest.mark.parametrize("driver", DRIVERS)
def test_reset_starts_over_from_the_initial_params_with_the_controls_as_they_are(driver):
    async def body(h):
        start = params()
        run = h.start(params={n: p.copy() for n, p in start.items()}, optimizer=bp.optim.Adam(lr=0.01))
        await h.until(run, lambda: run.steps_done >= 50, "50 steps")
        first_losses = list(run.history["loss"][:5])
        run.optimizer.lr = 0.02
        run.reset()
        await h.until(run, lambda: run.previous_attempts and run.steps_done >= 5, "5 steps after Reset")
        assert run.previous_attempts[0]["loss"][:5] == first_losses
        assert run.history["step"][:5] == [1, 2, 3, 4, 5]  # step 0 again, with Adam's bias correction from step 1
        assert run.history["lr"][0] == 0.02  # the learning rate the learner set is kept
        assert run.history["loss"][0] == first_losses[0]  # same initial params, same first batch
        run.stop()
        await h.until(run, lambda: run.done, "the end after Stop")
        run.join()
        # once ended, Reset trains it again
        run.reset()
        assert not run.ended
        await h.until(run, lambda: run.steps_done >= 5, "5 steps after a Reset of an ended run")
        assert len(run.previous_attempts) == 2 and run.history["loss"][0] == first_losses[0]
        run.stop()
        await h.until(run, lambda: run.done, "the end after the second Stop")
        run.join()

    run_with(driver, body)


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_pace_limits_the_steps_per_second_and_can_be_changed_live(driver):
    async def body(h):
        run = h.start(pace=20)
        await h.until(run, lambda: run.steps_done >= 3, "3 paced steps")
        began, n0 = time.monotonic(), run.steps_done
        await h.let_time_pass(run, 1.0)
        elapsed = time.monotonic() - began
        assert run.steps_done - n0 <= 20 * elapsed + 2  # never faster than the pace (slower on a busy machine)
        run.pace = None  # full speed from the next boundary on, without waiting out the pace
        await h.until(run, lambda: run.steps_done >= n0 + 400, "400 steps at full speed")
        assert run.history["pace"][n0] == 20 and run.history["pace"][-1] == math.inf
        assert any(c.name == "pace" and c.old == 20 and c.new == math.inf for c in run.changes())
        assert "pace 20 steps/s → full speed" in repr(run.changes())
        run.stop()
        await h.until(run, lambda: run.done, "the end after Stop")

    run_with(driver, body)


@pytest.mark.parametrize("driver", DRIVERS)
def test_wait_until_step_and_a_run_of_known_length(driver):
    async def body(h):
        run = h.start(steps=300)
        if driver != "asyncio":
            assert run.wait(until_step=100, timeout=DEADLINE).steps_done >= 100
        await h.until(run, lambda: run.done, "the end of 300 steps")
        run.join()
        assert run.status == "finished" and run.steps_done == 300 and run.outcome == "finished all 300 steps"

    run_with(driver, body)


def test_waiting_in_the_event_loops_thread_takes_the_asyncio_runs_steps():
    async def body():
        run = Harness("asyncio").start(steps=200)
        assert run.wait(timeout=DEADLINE).status == "finished"  # blocking the loop: the waiter takes the steps
        assert run.steps_done == 200
        assert (await run) is run

    asyncio.run(body())


def test_bad_pace_steps_and_driver_are_one_message_each():
    for kwargs, message in [({"pace": -1}, "pace must be a positive number"), ({"pace": "fast"}, "pace must be"),
                            ({"steps": 2.5}, "steps must be a whole number"),
                            ({"driver": "greenlet"}, "driver='greenlet': choose one of thread, inline, asyncio")]:
        with pytest.raises((bp.BackpropError, ValueError), match=message):
            bp.fit(xor_loss, params(), data(), background=True, **{"steps": 10, **kwargs})
    with pytest.raises(bp.BackpropError, match="needs a running event loop"):
        bp.fit(xor_loss, params(), data(), steps=10, background=True, driver="asyncio")


def test_statistics_stay_on_the_device_and_are_fetched_in_batches():
    """The per-layer statistics are written on the step's device and fetched ~10 times a second, in one copy of
    many steps' rows (on a GPU a copy per step would wait for every step); the history holds every step's values,
    the same as reading each step's own."""
    from bpmagic.backends.numpy_backend import NumpyBackend

    fetched = []

    class Counting(NumpyBackend):
        def to_numpy(self, x):
            fetched.append(np.shape(x))
            return super().to_numpy(x)

    run = bp.fit(xor_loss, params(), data(), steps=3000, batch_size=16, optimizer=bp.optim.SGD(lr=0.1),
                 backend=Counting())
    blocks = [shape[0] for shape in fetched if len(shape) == 2]
    assert sum(blocks) == 3000 and len(blocks) < 3000 / 20, blocks  # many steps per copy
    h = run.history
    assert all(len(h[c]) == 3000 for c in ("grad_norm/1", "signal_norm/2", "update_ratio/1"))

    # the same values as a step read one by one, on the same batches
    step = bp.compile_step(xor_loss, params(), *(d[:16] for d in data()), optimizer=bp.optim.SGD(lr=0.1),
                           backend="numpy", stats=True)
    rng, X, Y = np.random.default_rng(0), *data()
    expected = []
    for _ in range(5):
        order = rng.permutation(64)
        for i in range(4):
            step(X[order[i * 16:(i + 1) * 16]], Y[order[i * 16:(i + 1) * 16]])
            expected.append(step.last.stats)
    for k, stats in enumerate(expected):
        for column, value in stats.items():
            assert h[column][k] == pytest.approx(value, rel=1e-6, nan_ok=True), (k, column)
