"""Learning-rate schedules against optax's schedule functions, and a schedule in a run: the history holds the value
in use at every step, a change from the dashboard or from code scales the schedule from that step on (and is the
only change `changes()` lists), the control shows the value in use with the schedule's part, and each mistake is one
message."""
import math
import time

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.dashboard import Dashboard
from bpmagic.train import schedules

optax = pytest.importorskip("optax", reason="optax is a test dependency (pip install -e '.[test]')")
jax = pytest.importorskip("jax", reason="jax is a test dependency")
jax.config.update("jax_enable_x64", True)

LR, TOTAL = 0.1, 300
CASES = {  # ours, optax's (optax counts updates from 0: its count n - 1 is our step n)
    "constant": (schedules.Schedule(), optax.constant_schedule(LR)),
    "step": (schedules.StepDecay(every=40, decay=0.5), optax.exponential_decay(LR, 40, 0.5, staircase=True)),
    "exponential": (schedules.Exponential(every=40, decay=0.3), optax.exponential_decay(LR, 40, 0.3)),
    "cosine": (schedules.Cosine(warmup=30, final=0.05),
               optax.warmup_cosine_decay_schedule(0.0, LR, 30, TOTAL, LR * 0.05)),
    "onecycle": (schedules.OneCycle(pct_start=0.25), optax.cosine_onecycle_schedule(TOTAL, LR, pct_start=0.25)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_schedule_equals_optaxs(name):
    ours, theirs = CASES[name]
    ours.start(TOTAL)
    got = [LR * ours.factor(n) for n in range(1, TOTAL + 1)]
    want = [float(theirs(jax.numpy.asarray(n - 1))) for n in range(1, TOTAL + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_reduce_on_plateau_equals_optaxs_with_one_value_an_epoch():
    from optax import contrib

    ours = schedules.Plateau(factor=0.5, patience=3).start(None)
    theirs = contrib.reduce_on_plateau(factor=0.5, patience=3, rtol=1e-4, accumulation_size=1)
    params = {"w": jax.numpy.zeros(1)}
    state = theirs.init(params)
    values = [1.0, 0.9, 0.85, 0.86, 0.87, 0.88, 0.84, 0.845, 0.846, 0.9, 0.95, 0.7, 0.71, 0.72, 0.73, 0.74]
    for epoch, value in enumerate(values):
        _, state = theirs.update({"w": jax.numpy.ones(1)}, state, params, value=jax.numpy.asarray(value))
        ours.epoch_ended(epoch, value)
        assert ours.factor(1) == pytest.approx(float(state.scale)), epoch
    assert ours.factor(1) < 0.2  # it did reduce


def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    return X, X[:, :1]


def loss(p, x, y):
    return bp.mse(x @ p["W"], y)


def test_a_schedule_in_a_run_and_a_live_change_that_scales_it():
    run = bp.fit(loss, {"W": np.zeros((3, 1))}, data(), steps=20_000, batch_size=16, optimizer=bp.optim.SGD(lr=LR),
                 schedule=schedules.Cosine(warmup=10), background=True, pace=500)
    try:
        control = next(p for p in Dashboard(run).panels if type(p).__name__ == "ControlsPanel").lr
        run.wait(until_step=50, timeout=180)
        deadline = time.monotonic() + 60
        while not control.note.startswith("cosine, warm-up 10: ×"):
            assert time.monotonic() < deadline, control.note
            time.sleep(0.05)
        # the value in use (the run moves on meanwhile: near the value now)
        assert control.value == pytest.approx(LR * run.optimizer.schedule.factor(run.optimizer.now), rel=1e-3)
        control.set_state({"value": 0.05, "base": control.version})  # the learner: 0.05 from here on
        at = run.steps_done
        run.wait(until_step=at + 30, timeout=180)
        run.optimizer.lr = 0.2  # code sets the rate the schedule scales
        at2 = run.steps_done
        run.wait(until_step=at2 + 30, timeout=180)
    finally:
        run.stop().wait()
    h, schedule = run.history, run.optimizer.schedule
    steps = h["step"]
    # at every step the rate in use is the rate set × the schedule's factor there
    assert all(lr == pytest.approx(s * schedule.factor(n), rel=1e-12) for lr, s, n in zip(h["lr"], h["lr_set"], steps))
    assert h["lr"][:3] == pytest.approx([0.0, 0.01, 0.02])  # the warm-up
    changes = run.changes()
    assert [c.name for c in changes] == ["lr", "lr"]  # the schedule's movement is not a change
    assert changes[0].new == pytest.approx(0.05, rel=1e-12)  # the browser's value, in use at its step, exactly
    assert changes[1].step > changes[0].step and h["lr_set"][-1] == 0.2
    assert repr(changes).startswith(f"step {changes[0].step}: lr ")


def test_a_schedules_mistakes_are_one_message_each():
    with pytest.raises(bp.BackpropError, match="the cosine schedule spans the whole run"):
        bp.fit(loss, {"W": np.zeros((3, 1))}, data(), steps=math.inf, schedule="cosine", background=True)
    with pytest.raises(bp.BackpropError, match="the warm-up \\(50 steps\\) is as long as the run"):
        bp.fit(loss, {"W": np.zeros((3, 1))}, data(), steps=20, schedule=schedules.Cosine(warmup=50))
    with pytest.raises(bp.BackpropError, match="unknown schedule 'linear'"):
        schedules.make_schedule("linear")
    with pytest.raises(bp.BackpropError, match="decay must be between 0 and 1"):
        schedules.StepDecay(every=10, decay=2)
