"""Checkpoints: --checkpoint PATH --every WHEN saves a run as it trains; --resume PATH goes on exactly where it was —
in this process, and in a new kernel after the old one was killed mid-run."""
import os
import shutil
import signal
import time

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.errors import BackpropError
from bpmagic.train.optim import SGD, Adam

rng = np.random.default_rng(0)
X = rng.standard_normal((64, 3))
Y = (X @ np.array([1.0, -2.0, 0.5]))[:, None] + 0.1 * rng.standard_normal((64, 1))


def loss_fn(p, b, x, y):
    """A learner's model with what a resumed run must get right: dropout's mask (new at every step), batch norm's
    running averages (buffers) and Adam's moments (optimizer state)."""
    h = x @ p["W1"] + p["b1"]
    mean = bp.mean(h, axis=0)
    h = bp.dropout(bp.tanh(h - mean), 0.2)
    return bp.mean((h @ p["W2"] - y) ** 2), {"running": 0.9 * b["running"] + 0.1 * mean}


def fresh():
    r = np.random.default_rng(1)
    return {"W1": r.standard_normal((3, 8)), "b1": np.zeros(8), "W2": r.standard_normal((8, 1))}


def train(**kw):
    options = dict(steps=100, batch_size=10, optimizer=Adam(lr=0.01), buffers={"running": np.zeros(8)},
                   validation=(X[:16], Y[:16]))
    return bp.fit(loss_fn, fresh(), (X, Y), **{**options, **kw})


def test_a_run_resumed_from_a_checkpoint_mid_epoch_takes_the_very_steps_it_would_have(tmp_path):
    whole = train()
    path, copy = tmp_path / "run.npz", tmp_path / "at-step-20.npz"
    cut = train(checkpoint=path, checkpoint_every="5 steps", background=True, pace=50)
    cut.wait(until_step=23).pause()
    shutil.copy(path, copy)  # what a kernel killed now would leave
    cut.stop().join()
    saved = bp.Run.load(copy).total_steps
    assert saved % 5 == 0 and saved % 7 and saved < cut.steps_done  # mid-epoch (7 batches an epoch), before the end
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".checkpoint-")]  # no half-written file left
    resumed = train(resume=copy)
    assert resumed.status == "finished" and resumed.steps_done == 100
    for name in whole.params:
        np.testing.assert_array_equal(resumed.params[name], whole.params[name])
    np.testing.assert_array_equal(resumed.buffers["running"], whole.buffers["running"])
    assert resumed.history["loss"] == whole.history["loss"]  # the history goes on from the saved one
    assert resumed.history["val_loss"] == whole.history["val_loss"]
    assert resumed.history["step"] == list(range(1, 101))


def test_every_end_saves_and_a_finished_run_resumed_has_nothing_left_to_do(tmp_path, capsys):
    path = tmp_path / "run.npz"
    run = train(steps=30, checkpoint=path)  # every 60 s: the end alone saves it
    assert run.status == "finished" and path.exists()
    again = train(steps=30, resume=path)
    assert again.status == "finished" and again.steps_done == 30
    assert f"run resumes from {path} at step 30 of 30\n" in capsys.readouterr().out
    longer = train(steps=40, resume=path)  # a longer run from the same checkpoint trains the 10 steps left
    assert longer.steps_done == 40


def test_a_steered_learning_rate_is_kept_unless_the_call_asks_for_another(tmp_path, capsys):
    path = tmp_path / "run.npz"
    run = train(optimizer=SGD(lr=0.05), background=True, checkpoint=path, pace=500)
    run.wait(until_step=10)
    run.optimizer.set(lr=0.02)  # as the dashboard's slider does
    run.wait(until_step=20).stop().join()
    capsys.readouterr()
    kept = train(optimizer=SGD(lr=0.05), resume=path, steps=40)
    assert "lr 0.02 as it was then" in capsys.readouterr().out
    assert kept.history["lr"][-1] == 0.02
    changed = train(optimizer=SGD(lr=0.1), resume=path, steps=40)
    assert "lr 0.1 as this call sets it (it was 0.02)" in capsys.readouterr().out
    assert changed.history["lr"][-1] == 0.1


def test_what_cannot_be_resumed_says_why(tmp_path):
    path = tmp_path / "run.npz"
    train(steps=5, checkpoint=path)

    def message(**kw):
        with pytest.raises(BackpropError) as e:
            kw.setdefault("resume", path)
            train(**kw)
        return str(e.value)

    assert "there is no checkpoint at" in message(resume=tmp_path / "nope.npz")
    assert "trained with Adam, and this run uses SGD" in message(optimizer=SGD(lr=0.1))
    assert "batch_size 10 then, 16 now" in message(batch_size=16)
    other = {"W1": np.zeros((3, 4)), "b1": np.zeros(4), "W2": np.zeros((4, 1))}
    with pytest.raises(BackpropError, match=r"another model's parameters \(other shapes: W1 \(3, 8\) there, "
                                            r"\(3, 4\) here"):
        bp.fit(lambda p, x, y: bp.mean((bp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] - y) ** 2), other, (X, Y),
               resume=path)
    with pytest.raises(BackpropError, match="say how often to save"):
        train(checkpoint=path, checkpoint_every="often")
    with pytest.raises(BackpropError, match="does not exist; create it first"):
        train(checkpoint=tmp_path / "no-such-folder" / "run.npz")


def test_the_magics_options_say_what_they_need(ip, ns, tmp_path):
    from cells import backprop

    for line, said in (("--every 5s", "--every says how often --checkpoint PATH saves the run"),
                       (f"--checkpoint {tmp_path}/x.npz --every soon", "--every soon: say how often")):
        result = backprop(ip, f"--steps 5 --no-dashboard {line}")
        assert said in str(result.error_in_exec), result.error_in_exec


# -- in a real kernel: killed mid-run, resumed in a new one -------------------------------------------------------
CELL = """%%backprop --steps 400 --batch-size 16 --lr 0.2 --dtype float64 --no-dashboard --name fitted {options}
W1: Param = randn(3, 8) * 0.5
b1: Param = zeros(8)
W2: Param = randn(8, 1) * 0.5
x: Input = X
y: Target = Y
loss: Loss = mean((dropout(tanh(x @ W1 + b1), 0.1) @ W2 - y) ** 2)
"""
DATA = ("import numpy as np\nrng = np.random.default_rng(0)\nX = rng.standard_normal((64, 3))\n"
        "Y = (X @ np.array([1.0, -2.0, 0.5]))[:, None]\n")


@pytest.mark.slow
def test_resume_after_the_kernel_is_killed_mid_run(tmp_path):
    from kernel_client import Kernel

    path = tmp_path / "fitted.npz"
    first = Kernel("backprop")
    try:
        first.run(DATA)
        first.kc.execute(CELL.format(options=f"--pace 100 --background --checkpoint {path} --every 0.2s"))
        deadline = time.monotonic() + 180
        while not path.exists():
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        time.sleep(1.0)  # a few more intervals: the file is rewritten while the run goes on
        os.kill(first.km.provisioner.process.pid, signal.SIGKILL)  # as the OOM killer does: no clean-up runs
        first.km.provisioner.process.wait()
    finally:
        first.kc.stop_channels()
    saved = bp.Run.load(path)
    assert 0 < saved.total_steps < 400, saved.total_steps  # killed mid-run: the checkpoint is of a step before

    second = Kernel("backprop")
    try:
        second.run(DATA)
        out = second.run(CELL.format(options=f"--resume {path}"))
        assert f"resumes from {path} at step {saved.total_steps} of 400" in out, out
        second.run(CELL.format(options="--reset").replace("--name fitted", "--name straight"))
        same = second.run("print(all(np.array_equal(fitted.params[k], straight.params[k]) for k in "
                          "straight.params), fitted.steps_done, fitted.history['loss'] == straight.history['loss'])")
        assert same.split() == ["True", "400", "True"], same
    finally:
        second.km.shutdown_kernel(now=True)
        second.kc.stop_channels()
