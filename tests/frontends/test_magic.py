"""%%backprop through a real IPython shell: training, re-runs, background runs, live controls, every user error."""
import re
import threading
import time

import numpy as np
import pytest
from cells import XOR_CELL, backprop


def error_of(ip, capsys, line, cell=XOR_CELL):
    result = backprop(ip, line, cell)
    out = capsys.readouterr()
    assert result.error_in_exec is not None, out
    text = out.out + out.err
    assert "Traceback" not in text and "bpmagic/" not in text, text  # a message, not our internals
    return str(result.error_in_exec)


def test_xor_trains_and_results_land_in_the_namespace(ip, ns, capsys):
    result = backprop(ip, "--epochs 300 --lr 0.5 --batch-size 4 --name xor --no-dashboard")
    assert result.success
    run = ns["xor"]
    assert run.status == "finished" and run.loss < 0.05
    assert ns["W1"] is run.params["W1"] and isinstance(ns["W1"], np.ndarray) and ns["W1"].dtype == np.float32
    h = run.history
    assert len(h["step"]) == 300 and h["lr"] == [0.5] * 300
    assert {"grad_norm/1", "grad_norm/2", "update_ratio/1"} <= set(h)
    assert "tanh(" in str(run.graph) and "dW1 = " in str(run.backward_graph)
    assert "line 8: h = tanh(x @ W1 + b1)" in str(run.graph)  # the cell's own line numbers (%%backprop is 1)
    assert "Trained 300 steps" in capsys.readouterr().out


def test_rerun_continues_and_reset_restarts(ip, ns):
    backprop(ip, "--epochs 50 --lr 0.5 --batch-size 4 --no-dashboard")
    first = ns["_bp"]
    w_after_first = ns["W1"].copy()
    backprop(ip, "--epochs 50 --lr 0.5 --batch-size 4 --no-dashboard")
    second = ns["_bp"]
    assert second.history["loss"][0] < first.history["loss"][0]  # continued from trained params
    assert second.history["loss"][0] == pytest.approx(first.history["loss"][-1], rel=0.2)
    backprop(ip, "--epochs 50 --lr 0.5 --batch-size 4 --no-dashboard --reset")
    third = ns["_bp"]
    assert third.history["loss"] == first.history["loss"]  # seeded: a reset replays the first run exactly
    assert np.array_equal(ns["W1"], w_after_first)


def test_shape_change_reinitialises_with_a_notice(ip, ns, capsys):
    backprop(ip, "--steps 5 --no-dashboard")
    capsys.readouterr()
    backprop(ip, "--steps 5 --no-dashboard", XOR_CELL.replace("(2, 8)", "(2, 16)").replace("zeros(8)", "zeros(16)")
             .replace("(8, 1)", "(16, 1)"))
    out = capsys.readouterr().out
    assert out.count("re-initialised") == 1  # one line for the cell
    assert "W1 (2, 8) -> (2, 16), b1 (8,) -> (16,), W2 (8, 1) -> (16, 1)" in out and ns["W1"].shape == (2, 16)


def test_another_models_arrays_of_the_same_names_start_afresh_in_silence(ip, ns, capsys):
    backprop(ip, "--steps 5 --no-dashboard --name small")
    capsys.readouterr()
    wide = XOR_CELL.replace("(2, 8)", "(2, 16)").replace("zeros(8)", "zeros(16)").replace("(8, 1)", "(16, 1)")
    backprop(ip, "--steps 5 --no-dashboard --name wide", wide)  # another model: the learner expects fresh arrays
    assert "re-initialised" not in capsys.readouterr().out and ns["W1"].shape == (2, 16)
    ns["W2"] = np.ones((3, 3), np.float32)  # the learner's own array: not one bpmagic trained
    backprop(ip, "--steps 5 --no-dashboard --name wide2", wide)
    assert "re-initialised W2 (3, 3) -> (16, 1)" in capsys.readouterr().out


def test_another_models_arrays_of_the_same_shapes_are_continued_with_a_notice(ip, ns, capsys):
    """A Param is kept by its name: a new model (another --name) declaring W1 of the same shape starts where the
    last one left it — a diverged one's too, silently until now."""
    backprop(ip, "--steps 5 --no-dashboard --name first")
    capsys.readouterr()
    backprop(ip, "--steps 5 --no-dashboard --name second")
    assert "bpmagic: W1, b1, W2, b2 continue from the values run first trained; --reset starts them from the " \
           "cell's initialisers" in capsys.readouterr().out
    backprop(ip, "--steps 5 --no-dashboard --name second")  # the same model's cell again: what a learner expects
    assert "continue" not in capsys.readouterr().out
    backprop(ip, "--steps 5 --no-dashboard --name third --reset")
    assert "continue" not in capsys.readouterr().out


def test_background_without_steps_trains_until_stop_at_its_pace(ip, ns):
    from bpmagic.train.describe import status_text

    backprop(ip, "--background --pace 40 --no-dashboard --name slow")
    run = ns["slow"]
    try:
        assert run.total_steps is None and run.pace == 40
        run.wait(until_step=5, timeout=180)
        text = status_text(run)
        assert "until Stop" in text and " s left" not in text and "/" not in text.split("loss")[0], text
    finally:
        run.stop().join()
    assert run.outcome == f"stopped at step {run.steps_done}"
    assert "steps/s" not in status_text(run)  # an ended (or paused) run shows no speed
    h = run.history
    assert set(h["pace"]) == {40.0}


def test_background_then_wait_and_awaitable(ip, ns):
    result = backprop(ip, "--steps 3000 --background --no-dashboard --name bg")
    assert result.success
    run = ns["bg"]
    assert run.wait().status == "finished" and run.steps_done == 3000
    import asyncio

    backprop(ip, "--steps 200 --background --no-dashboard --name bg2")
    assert asyncio.run(_await(ns["bg2"])).steps_done == 200


def test_time_left_reads_as_a_person_says_it(ip, ns):
    """A long run says "29 days left", not "2500000 s left"."""
    from bpmagic.train.describe import duration, status_text

    assert [duration(s) for s in (0.4, 59, 119, 150, 599, 7200, 36000, 2.5e6)] == \
        ["0 s", "59 s", "119 s", "2.5 min", "10 min", "2 h", "10 h", "29 days"]
    backprop(ip, "--steps 100000000 --background --pace 40 --no-dashboard --name long")
    run = ns["long"]
    try:
        run.wait(until_step=5, timeout=180)
        text = status_text(run)
        assert re.search(r"·  [\d,.]+ days left$", text), text
    finally:
        run.stop().join()


async def _await(run):
    return await run


def replay(ip, ns, steps):
    """Params after exactly `steps` steps from the same seed (training is deterministic)."""
    backprop(ip, f"--steps {steps} --reset --no-dashboard --name replay --lr 0.5 --batch-size 2")
    return {k: ns[k].copy() for k in ("W1", "b1", "W2", "b2")}


def test_stop_mid_training_leaves_the_params_of_the_last_step(ip, ns):
    backprop(ip, "--steps 1000000 --background --no-dashboard --reset --lr 0.5 --batch-size 2")
    run = ns["_bp"]
    run.wait(until_step=200, timeout=180)
    assert run.steps_done >= 200
    run.stop().wait()
    assert run.status == "stopped" and run.ended_because == "stopped"
    stopped = {k: ns[k].copy() for k in ("W1", "b1", "W2", "b2")}
    again = replay(ip, ns, run.steps_done)
    for k in stopped:
        assert np.array_equal(stopped[k], again[k]), k


def test_interrupt_from_code_ends_at_a_step_boundary_and_joins(ip, ns):
    backprop(ip, "--steps 1000000 --background --no-dashboard --reset --lr 0.5 --batch-size 2 --name intr")
    run = ns["intr"]
    run.wait(until_step=50, timeout=180)
    assert run.interrupt() is run  # returns once the training thread has exited: nothing writes the params now
    assert not run._driver._thread.is_alive() and run.status == "interrupted" and run.ended_because == "interrupted"
    interrupted = {k: ns[k].copy() for k in ("W1", "b1", "W2", "b2")}
    again = replay(ip, ns, run.steps_done)
    for k in interrupted:
        assert np.array_equal(interrupted[k], again[k]), k


def test_pause_step_resume(ip, ns):
    backprop(ip, "--steps 1000000 --background --no-dashboard --name pz")
    run = ns["pz"]
    run.wait(until_step=10, timeout=180)
    run.pause()
    # paused: the step in progress when Pause came may still end, then no step runs for as long as we look (time
    # passing is the test); a run that did not pause would never hold still for 0.3 s
    deadline, n = time.monotonic() + 180, -1
    while n != run.steps_done:
        assert time.monotonic() < deadline, "Pause did not stop the steps"
        n = run.steps_done
        time.sleep(0.3)
    run.step_once()
    run.wait(until_step=n + 1, timeout=180)
    time.sleep(0.3)  # exactly one: no second step follows
    assert run.steps_done == n + 1
    run.resume()
    run.wait(until_step=n + 2, timeout=180)
    assert run.steps_done > n + 1
    run.stop().wait()


def test_learning_rate_changed_from_another_thread_mid_training(ip, ns):
    backprop(ip, "--steps 1000000 --background --no-dashboard --lr 0.2 --name live")
    run = ns["live"]
    run.wait(until_step=100, timeout=180)
    before = run.steps_done
    t = threading.Thread(target=lambda: run.controls.set(lr=0.05))
    t.start()
    t.join()
    after = run.steps_done
    run.wait(until_step=after + 50, timeout=180)
    run.stop().wait()
    lrs = run.history["lr"]
    k = lrs.index(0.05)
    assert before <= k <= after + 1
    assert set(lrs[:k]) == {0.2} and set(lrs[k:]) == {0.05}


def test_validation_and_config_defaults(ip, ns):
    ip.run_line_magic("config", "Backprop.epochs = 7")
    try:
        backprop(ip, "--validate X Y --batch-size 2 --no-dashboard")
        run = ns["_bp"]
        assert run.steps_done == 14 and run.epochs == 7
        val = run.history["val_loss"]
        assert len(val) == 14 and all(v is not None for v in val[1::2]) and all(v is None for v in val[0::2])
    finally:
        ip.run_line_magic("config", "Backprop.epochs = 100")


def test_named_layers(ip, ns):
    cell = XOR_CELL.replace("W2: Param = randn(8, 1) * 0.5\nb2: Param = zeros(1)\n",
                            'with layer("out"):\n    W2: Param = randn(8, 1) * 0.5\n    b2: Param = zeros(1)\n')
    backprop(ip, "--steps 3 --no-dashboard", cell)
    run = ns["_bp"]
    assert run.layers == {"1": ["W1", "b1"], "out": ["W2", "b2"]}
    assert "grad_norm/out" in run.history


def test_user_helper_functions_and_python_loops(ip, ns):
    ip.run_cell("def block(v, W, b):\n    return relu(v @ W + b)\nrelu = None")
    cell = ("W1: Param = randn(2, 8)\nb1: Param = zeros(8)\nWo: Param = randn(8, 1)\nx: Input = X\ny: Target = Y\n"
            "h = x @ W1 + b1\nfor _ in range(2):\n    h = tanh(h)\nloss: Loss = mse(h @ Wo, y)\n")
    assert backprop(ip, "--steps 3 --no-dashboard", cell).success
    assert [e.primitive.name for e in ns["_bp"].graph.eqns].count("tanh") == 2


def test_save_and_load(ip, ns, tmp_path):
    backprop(ip, "--steps 20 --optimizer momentum --no-dashboard")
    run = ns["_bp"]
    run.save(tmp_path / "run.npz")
    from bpmagic import Run

    loaded = Run.load(tmp_path / "run.npz")
    assert np.array_equal(loaded.params["W1"], ns["W1"])
    assert np.array_equal(loaded.optimizer_state["W1"]["velocity"], run.step.state["W1"]["velocity"])
    assert loaded.history["loss"] == run.history["loss"]
    assert loaded.hyperparameters["momentum"] == 0.9


# -- errors: one message naming the cell line, no traceback through bpmagic ----------------------------------------
def test_syntax_error(ip, ns, capsys):
    msg = error_of(ip, capsys, "", XOR_CELL.replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1"))
    assert msg.startswith("line 8: syntax error") or msg.startswith("line 9: syntax error")


def test_no_loss_and_two_losses(ip, ns, capsys):
    assert "has no Loss" in error_of(ip, capsys, "", XOR_CELL.replace("loss: Loss =", "loss ="))
    msg = error_of(ip, capsys, "", XOR_CELL + "loss2: Loss = mse(p, y)\n")
    assert msg.startswith("line 11: the cell has 2 Losses (line 10, line 11)")


def test_loss_not_scalar(ip, ns, capsys):
    msg = error_of(ip, capsys, "", XOR_CELL.replace("loss: Loss = binary_cross_entropy(p, y)", "loss: Loss = p - y"))
    assert msg.startswith("line 10: the Loss must be a scalar, but loss has shape (4, 1)")


def test_missing_input_and_length_mismatch(ip, ns, capsys):
    msg = error_of(ip, capsys, "", XOR_CELL.replace("x: Input = X", "x: Input = X_train"))
    assert msg.startswith("line 6: x = X_train: name 'X_train' is not defined")
    ip.user_ns["Y3"] = np.zeros((3, 1), np.float32)
    msg = error_of(ip, capsys, "", XOR_CELL.replace("y: Target = Y", "y: Target = Y3"))
    assert "same length along axis 0: x (4, 2), y (3, 1)" in msg


def test_unknown_option_and_bad_values(ip, ns, capsys):
    assert "unrecognized arguments: --learning-rate" in error_of(ip, capsys, "--learning-rate 3")
    assert "--optimizer must be one of momentum, adagrad, adam" in error_of(ip, capsys, "--optimizer lion")
    assert "lr must be a finite number > 0" in error_of(ip, capsys, "--lr -1")
    assert "--dtype must be one of" in error_of(ip, capsys, "--dtype int8")
    assert "--pace is in steps per second and must be positive" in error_of(ip, capsys, "--pace -3")
    assert ("--momentum: the adam optimizer has no such hyperparameter; it has --lr, --beta1, --beta2, --eps, "
            "--weight-decay") in error_of(ip, capsys, "--optimizer adam --momentum 0.9")
    assert "--hyper beta2: write NAME=VALUE" in error_of(ip, capsys, "--optimizer adam --hyper beta2")
    assert "--clip-norm must be a positive number" in error_of(ip, capsys, "--clip-norm -1")


def test_clipping_from_the_cell_is_a_live_control_and_a_history_column(ip, ns):
    from bpmagic.dashboard import Dashboard

    backprop(ip, "--steps 200 --lr 2 --clip-norm 0.1 --no-dashboard --name clip")
    run = ns["clip"]
    assert set(run.history["clip_norm"]) == {0.1} and any(run.history["clipped"])
    panel = next(p for p in Dashboard(run).panels if type(p).__name__ == "ControlsPanel")
    assert panel.hyper_controls["clip_norm"].value == 0.1 and panel.hyper_controls["clip_norm"].log


def test_any_declared_hyperparameter_is_an_option(ip, ns):
    backprop(ip, "--steps 30 --optimizer adam --lr 0.01 --hyper beta2=0.99 --hyper eps=1e-6 --no-dashboard --name h")
    h = ns["h"].history
    assert set(h["beta2"]) == {0.99} and set(h["eps"]) == {1e-6} and set(h["beta1"]) == {0.9}
    backprop(ip, "--steps 5 --optimizer momentum --no-dashboard --name m")
    assert set(ns["m"].history["momentum"]) == {0.9}  # "momentum" is SGD with momentum 0.9 unless given


def test_shape_mismatch_names_the_line_and_shapes(ip, ns, capsys):
    msg = error_of(ip, capsys, "", XOR_CELL.replace("randn(8, 1)", "randn(3, 1)"))
    assert msg.startswith("line 9: matmul of (4, 8) and (3, 1)")
    assert "p = sigmoid(h @ W2 + b2)" in msg


def test_branching_on_a_traced_value(ip, ns, capsys):
    cell = XOR_CELL.replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(h @ W2 + b2)\nif p.sum() > 1:\n    p = p * 0.5")
    msg = error_of(ip, capsys, "", cell)
    assert msg.startswith("line 10: Python `if`")


def test_cupy_without_gpu(ip, ns, capsys):
    from bpmagic.backends import available_backends

    if available_backends()["cupy"].unavailable_reason() is None:
        pytest.skip("a GPU is usable here, so --backend cupy is not an error")
    msg = error_of(ip, capsys, "--backend cupy")
    assert "'cupy' backend cannot be used here" in msg and "bpmagic[gpu]" in msg


def test_nan_during_training_ends_at_a_step_boundary(ip, ns, capsys):
    cell = XOR_CELL.replace("loss: Loss = binary_cross_entropy(p, y)", "loss: Loss = mean(log(h @ W2 + b2 + 1.0))")
    result = backprop(ip, "--steps 500 --lr 0.5 --no-dashboard", cell)
    assert result.success
    run = ns["_bp"]
    err = capsys.readouterr().err
    assert run.status == "failed" and run.ended_because == "non-finite"
    assert "line 10: log of (4, 1) produced nan" in err and "keep their values" in err
    assert all(np.isfinite(ns[k]).all() for k in ("W1", "b1", "W2", "b2"))


def test_summary_never_prints_negative_zero_nor_rounds_a_small_loss_to_zero(ip, ns, capsys):
    from bpmagic.train.describe import format_loss

    assert [format_loss(v) for v in (-0.0, 0.0, 3e-6, -2e-9, 0.9353, 3.14159e-6, 1234.5)] == \
        ["0", "0", "3e-6", "-2e-9", "0.9353", "3.142e-6", "1234"]
    # a loss that is exactly -0.0, as a float32 cross-entropy that rounded to zero is
    cell = XOR_CELL.replace("loss: Loss = binary_cross_entropy(p, y)", "loss: Loss = -mean(p * 0.0)")
    assert backprop(ip, "--steps 3 --no-dashboard", cell).success
    assert np.signbit(ns["_bp"].loss)
    out = capsys.readouterr().out
    assert "loss 0 -> 0." in out and "-0" not in out
    assert "loss 0>" in repr(ns["_bp"])
