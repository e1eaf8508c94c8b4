"""The dashboard's controls and states on the Python side, without a browser: a control holds exactly the value
in use, orders browser values against changes from code, and every change lands in the history at the step it took
effect; pause, stop and the end show at once; the static image carries the run's final state."""
import time

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.dashboard import Dashboard
from bpmagic.dashboard.theme import THEME

THEME_ROW = THEME["lines_row"]


def start(lr=0.03, steps=1_000_000, dashboard=True):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)).astype(np.float32)
    Y = (X[:, :1] > 0).astype(np.float32)
    params = {"W1": rng.standard_normal((2, 8)).astype(np.float32) * 0.5, "b1": np.zeros(8, np.float32),
              "W2": rng.standard_normal((8, 1)).astype(np.float32) * 0.5}

    def loss(p, x, y):
        return bp.mse(bp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"], y)

    run = bp.fit(loss, params, (X, Y), steps=steps, optimizer=bp.optim.SGD(lr=lr, momentum=0.5), background=True)
    return run, Dashboard(run) if dashboard else None


def controls_of(dashboard):
    return next(p for p in dashboard.panels if type(p).__name__ == "ControlsPanel")


def wait_for(condition, timeout=180, why=lambda: ""):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {why()}"
        time.sleep(0.01)


def settled(run, hold=0.3, timeout=180):
    """Steps done once they hold still for `hold` s (paused: the step in progress when Pause came may still end, then
    none runs; time passing is the test). A run that did not pause never holds still, and fails the deadline."""
    deadline, n = time.monotonic() + timeout, -1
    while n != run.steps_done:
        assert time.monotonic() < deadline, f"the steps did not stop: {run.steps_done}, {run.status}"
        n = run.steps_done
        time.sleep(hold)
    return n


def test_values_are_exact_and_ordered_and_recorded():
    run, dash = start(lr=0.03)
    try:
        lr = controls_of(dash).lr
        assert lr.value == 0.03 and lr.version == 0  # shown exactly, nothing snapped
        run.wait(until_step=50, timeout=180)
        run.optimizer.lr = 0.1  # from code
        wait_for(lambda: lr.value == 0.1)  # appears on the control
        assert lr.version == 1
        lr.set_state({"value": 0.5, "base": 0})  # made before the browser saw 0.1: dropped
        assert run.optimizer.lr == 0.1 and lr.stale == 1
        lr.set_state({"value": 0.5, "base": 1})  # made after it: taken
        assert run.optimizer.lr == 0.5 and lr.value == 0.5
        lr.set_state({"value": float("nan"), "base": 1})
        lr.set_state({"value": 1e9, "base": 1})
        assert run.optimizer.lr == 0.5 and lr.rejected == 2 and "rejected" in lr.error
        at = run.steps_done
        run.wait(until_step=at + 50, timeout=180)
    finally:
        run.stop().wait()
    changes = [(name, old, new) for _, name, old, new in run.changes()]
    assert changes == [("lr", 0.03, 0.1), ("lr", 0.1, 0.5)]
    h = run.history
    first_01 = h["lr"].index(0.1)
    assert set(h["lr"][:first_01]) == {0.03}  # every step before the change at exactly 0.03
    assert h["momentum"] == [0.5] * len(h["step"]) and h["lr_multiplier/1"][0] == 1.0


def test_pause_stop_and_the_end_are_shown_at_once():
    run, dash = start()
    panel = controls_of(dash)
    loss_view = dash.panels[0].widget
    try:
        run.wait(until_step=20, timeout=180)
        panel._toggle_pause()
        assert run.status == "paused"
        wait_for(lambda: loss_view.status.startswith(f"paused at step {run.steps_done} of"),
                 why=lambda: f"{loss_view.status!r}, {run.steps_done} steps, {run.status}")
        assert panel.pause.description == "Resume" and not panel.step.disabled
        before = settled(run)
        wait_for(lambda: loss_view.status.startswith(f"paused at step {before} of"),
                 why=lambda: f"{loss_view.status!r}, {run.steps_done} steps, {run.status}")
        run.step_once()
        wait_for(lambda: loss_view.status.startswith(f"paused at step {before + 1} of"))
        panel._toggle_pause()
        assert run.status == "running" and panel.step.disabled
    finally:
        run.stop().wait()
    assert run.status == "stopped" and run.outcome == f"stopped at step {run.steps_done} of {run.total_steps}"
    assert loss_view.status.startswith("stopped at step")
    assert panel.pause.disabled and panel.step.disabled and panel.stop.disabled
    assert all(c.disabled for c in panel.number_controls)
    assert "stopped at step" in panel.message.value and "finished" not in panel.message.value


def test_finished_run_and_its_static_record():
    run, dash = start(steps=300)
    run.wait()
    assert run.status == "finished" and run.outcome == "finished all 300 steps"
    live = dash._repr_mimebundle_()
    # the live widget alone: no text that an export would show in its place (the record is what it shows)
    assert "application/vnd.jupyter.widget-view+json" in live and "text/plain" not in live
    record = dash._record_bundle()
    svg = record["image/svg+xml"]
    assert svg.startswith("<svg") and "finished all 300 steps" in svg and "<polyline" in svg
    assert "Gradient magnitude per layer" in svg and "learning rate 0.03" in svg
    assert "finished" in record["text/plain"]
    # the live view hides exactly this record while it renders
    assert f'data-bpmagic-record="{dash.record.token}"' in record["text/html"]
    assert dash.panels[0].widget.record_token == dash.record.token
    # one process: the gradient panel is its bars alone, no per-worker lines live or in the record
    gradients = next(p for p in dash.panels if type(p).__name__ == "GradientPanel")
    assert gradients.lines is None and gradients.widget is gradients.bars
    assert "per worker" not in svg and "bpmagic-worker-line" not in svg


def test_per_worker_lines_sample_the_history_and_draw_in_the_record():
    """The gradient panel's per-worker lines on a history shaped as a run on 2 workers records it: evenly spaced
    steps that reach the last one, a value the relay has not brought yet left out, and the static image drawing
    each worker's line thin and the average thick."""
    from bpmagic.dashboard.panels.gradients import worker_lines
    from bpmagic.dashboard.static import lines_svg
    from bpmagic.dashboard.views import LayerLinesView

    n = 1000
    rng = np.random.default_rng(0)
    history = {"step": list(range(1, n + 1))}
    for layer in ("1", "2"):
        workers = np.exp(rng.standard_normal((2, n)) * 0.3) * (0.1 if layer == "1" else 0.01)
        history[f"grad_norm/{layer}"] = list(workers.mean(0) * 0.8)
        history[f"worker0/grad_norm/{layer}"] = list(workers[0])
        history[f"worker1/grad_norm/{layer}"] = list(workers[1][:-1])  # its last step not relayed yet
    steps, values = worker_lines(history, ["1", "2"], 2, points=300)
    assert values.shape == (2, 3, 300) and steps[0] == 1 and steps[-1] == n
    assert np.isnan(values[:, 2, -1]).all() and np.isfinite(values[:, :2]).all()
    assert values[1, 1, -1] == np.float32(history["worker0/grad_norm/2"][-1])
    view = LayerLinesView(layers=["1", "2"], workers=2, title="per worker", series=["average", "each worker's own"])
    view.show(steps, values)
    lo, hi = view.axes["rows"][1]
    assert 10 ** lo == pytest.approx(float(np.nanmin(values[1])), rel=1e-5) and hi > lo
    assert view.axes["x"] == [1.0, n] and "2 workers' noise" in view.axes["caption"]
    elements, height = lines_svg(view, 900, 0)
    svg = "".join(elements)
    assert svg.count('class="bpmagic-worker-line"') == 4 and svg.count('class="bpmagic-average-line"') == 2
    assert "each worker&#x27;s own" in svg and "step 1000" in svg and height > 2 * THEME_ROW


def test_the_strip_ends_where_the_statistics_do_while_a_run_on_workers_relays_them():
    """Its steps arrive before their statistics: the strip was all NaN (drawn black) for the whole live run."""
    from bpmagic.dashboard.panels.gradients import strip
    from bpmagic.train.stats import GRAD_NORM

    history = {"step": list(range(1, 101)), "grad_norm/1": [0.1] * 90, "grad_norm/2": [0.01] * 95}
    s = strip(history, ["1", "2"], GRAD_NORM)
    assert np.isfinite(s).all() and s[0] == pytest.approx(-1) and s[1] == pytest.approx(-2)
    assert strip({"step": [1, 2]}, ["1"], GRAD_NORM).shape == (1, 2)  # no statistics at all yet: nothing to draw


@pytest.mark.parametrize("lo, hi", [(-1.2, -1.1), (0, 3), (-2.5, -2.49)])
def test_tick_labels_are_distinct(lo, hi):
    from bpmagic.dashboard.scales import tick_labels

    labels = tick_labels(lo, hi, 5)
    assert len(set(labels)) == 5


def test_a_value_from_code_outside_the_usual_range_is_shown_and_can_be_set_again():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)).astype(np.float32)
    run = bp.fit(lambda p, x: bp.mean(bp.square(x @ p["W"])), {"W": np.ones((2, 1), np.float32)}, (X,),
                 steps=1_000_000, optimizer=bp.optim.SGD(lr=0.001, momentum=0.995), background=True)
    try:
        momentum = controls_of(Dashboard(run)).hyper_controls["momentum"]
        assert momentum.value == 0.995 and momentum.max >= 0.995  # the slider's range holds the value in use
        momentum.set_state({"value": 0.9, "base": momentum.version})
        momentum.set_state({"value": 0.995, "base": momentum.version})  # typed back: inside the range
        assert run.optimizer.momentum == 0.995 and momentum.rejected == 0
    finally:
        run.stop().wait()


def test_a_browser_value_never_overwrites_a_newer_value_from_code():
    """The check (is the value in use still the one shown?) and the write are one step under the optimizer's lock:
    code that changes the rate between the two wins, and the browser's value is dropped as stale."""
    from bpmagic.train import optim
    from bpmagic.train.controls import Controls, Stale

    c = Controls(optim.SGD(lr=0.1))
    c.offer_range("lr", 1e-4, 10.0)
    c.optimizer.lr = 0.2  # from code, after the browser read 0.1
    with pytest.raises(Stale):
        c.offer("lr", 0.5, expected=0.1)
    assert c.optimizer.lr == 0.2
    assert c.offer("lr", 0.5, expected=0.2) == 0.5 and c.optimizer.lr == 0.5
    c.offer_range("lr_multiplier/1", 0.0, 4.0)
    with pytest.raises(Stale):
        c.offer("lr_multiplier/1", 2.0, expected=3.0)  # it holds 1.0
    assert c.offer("lr_multiplier/1", 2.0, expected=1.0) == 2.0 and c.optimizer.lr_multipliers == {"1": 2.0}

    run, dash = start(lr=0.03)
    try:
        lr = controls_of(dash).lr
        seen = lr.version  # what the browser was showing when the person moved the slider
        run.optimizer.lr = 0.07  # code changes it; the control may or may not have followed yet: either way
        lr.set_state({"value": 0.5, "base": seen})
        assert run.optimizer.lr == 0.07 and lr.stale == 1
    finally:
        run.stop().wait()


def test_a_run_that_ends_while_its_dashboard_is_made_is_shown_ended():
    """bp.fit starts the worker before %%backprop makes the dashboard: a run that ends while the dashboard is being
    made (after its first look at the run, before it subscribes) must still show its end, not its last step."""
    from bpmagic.dashboard.dashboard import Panel
    from bpmagic.dashboard.panels.loss import LossPanel

    class EndsTheRun(Panel):  # the loss panel has looked at the running run; now the run ends
        def update(self, run):
            if not run.ended:
                run.stop()
                assert run._done.wait(180), "the run did not stop"

    run, _ = start(dashboard=False)
    run.wait(until_step=5, timeout=180)
    dash = Dashboard(run, panels=[LossPanel, EndsTheRun])
    try:
        assert run.status == "stopped"
        status = dash.panels[0].widget.status
        assert status.startswith(f"stopped at step {run.steps_done}"), status
        assert f"stopped at step {run.steps_done}" in dash.record.bundle(dash.static_svg(), "")["image/svg+xml"]
    finally:
        dash.close()


def test_speed_and_reset_from_the_dashboard():
    run, dash = start(lr=0.03)
    panel = controls_of(dash)
    pace = panel.pace
    try:
        assert pace.value == 0 and pace.unlimited == "full speed"  # shown as full speed, nothing set
        run.wait(until_step=30, timeout=180)
        pace.set_state({"value": 25.0, "base": pace.version})  # the browser's slider: 25 steps a second
        assert run.pace == 25.0 and pace.value == 25.0
        pace.set_state({"value": -5.0, "base": pace.version})  # a crafted value: rejected, nothing changes
        assert run.pace == 25.0 and pace.rejected == 1
        run.pace = 10  # from code: appears on the control
        wait_for(lambda: pace.value == 10)
        pace.set_state({"value": 0, "base": pace.version})  # the slider's far end: full speed
        assert run.pace is None
        first_losses = list(run.history["loss"][:3])
        run.optimizer.lr = 0.05
        panel.reset.click()  # as the browser's click
        wait_for(lambda: bool(run.previous_attempts) and run.steps_done >= 3,
                 why=lambda: f"{run.steps_done} steps, {len(run.previous_attempts)} earlier attempts")
        assert run.history["lr"][0] == 0.05 and run.history["loss"][0] == first_losses[0]
        loss_view = dash.panels[0].widget
        wait_for(lambda: len(loss_view.previous_loss) > 0)  # the attempt before Reset, to compare
    finally:
        run.stop().wait()
    assert [c.name for c in run.changes()] == []  # the history restarted at Reset ...
    assert any(c.name == "pace" for c in _changes(run.previous_attempts[0]))  # ... the pace changes are in the first
    assert panel.stop.disabled and not panel.reset.disabled  # ended: Reset still starts it over
    panel.reset.click()
    wait_for(lambda: not run.ended and not panel.stop.disabled and not any(c.disabled for c in panel.number_controls))
    run.stop().wait()
    svg = dash._record_bundle()["image/svg+xml"]
    assert "layer 1: lr ×1" in svg and "speed full" in svg and "grey: before Reset" in svg


def _changes(history):
    run = bp.train.Run("h", None, None)
    run.history = history
    return run.changes()


def test_an_optimizers_declared_hyperparameters_make_its_controls_columns_and_changes():
    from bpmagic.train.optim import LEARNING_RATE, Hyper, Optimizer

    class Shrinking(Optimizer):  # a plugin's optimizer with a hyperparameter of its own
        name = "shrinking"
        hypers = (LEARNING_RATE, Hyper("shrink", 0.01, lo=0, hi=1, label="shrink", slider=(0.0, 0.1)))

        def __init__(self, lr=0.01, shrink=0.01):
            super().__init__(lr=lr, shrink=shrink)

        def scalars(self, hyper, step):
            return {"lr": hyper["lr"], "shrink": hyper["shrink"]}

        def update(self, p, g, state, s, structure):
            return p - s["lr"] * g - s["shrink"] * p, {}

    class OldStyle(Optimizer):  # written before hypers were declared: its bounds still hold
        hyper_rules = {"lr": dict(lo=0, lo_open=True), "rho": dict(lo=0, hi=1)}

        def __init__(self, lr=0.1, rho=0.5):
            super().__init__(lr=lr, rho=rho)

    assert [h.name for h in OldStyle.hypers] == ["lr", "rho"]
    with pytest.raises(ValueError, match="rho must be a finite number >= 0 and <= 1"):
        OldStyle(rho=2)

    X = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    run = bp.fit(lambda p, x: bp.mean(bp.square(x @ p["W"] - 1)), {"W": np.ones((2, 1), np.float32)}, (X,),
                 steps=1_000_000, optimizer=Shrinking(lr=0.05), background=True)
    try:
        shrink = controls_of(Dashboard(run)).hyper_controls["shrink"]  # its own control, as it declares it
        assert shrink.value == 0.01 and (shrink.min, shrink.max) == (0.0, 0.1) and shrink.description == "shrink"
        run.wait(until_step=20, timeout=180)
        shrink.set_state({"value": 0.05, "base": shrink.version})  # from the browser
        at = run.steps_done
        run.wait(until_step=at + 20, timeout=180)
    finally:
        run.stop().wait()
    h = run.history
    assert h["shrink"][0] == 0.01 and h["shrink"][-1] == 0.05  # its own column
    assert [(c.name, c.old, c.new) for c in run.changes()] == [("shrink", 0.01, 0.05)]
