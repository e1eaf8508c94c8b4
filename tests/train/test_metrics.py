"""Metrics and early stopping, as a practitioner uses them: accuracy computed in the step (equal to NumPy's count of
right answers at every step, and on the validation set), a cell's own Metric line, early stopping on the validation
loss with the best epoch's parameters restored, and each mistake one message."""
import numpy as np
import pytest

import bpmagic as bp
from bpmagic.dashboard import Dashboard

RNG = np.random.default_rng(0)
X = RNG.standard_normal((120, 5)).astype(np.float32)
Y = (X[:, 0] + 0.5 * X[:, 1] + RNG.standard_normal(120) > 0).astype(int)
TRAIN, VAL = (X[:60], Y[:60]), (X[60:], Y[60:])


def params():
    rng = np.random.default_rng(1)
    return {"W": rng.standard_normal((5, 64)).astype(np.float32), "V": np.zeros((64, 2), np.float32)}


def logits(p, x):
    return np.tanh(x @ p["W"]) @ p["V"]


def loss(p, x, y):
    return bp.cross_entropy(bp.tanh(x @ p["W"]) @ p["V"], y)


def test_accuracy_is_computed_in_the_step_at_every_step_and_on_the_validation_set():
    start = params()
    run = bp.fit(loss, {k: v.copy() for k, v in start.items()}, TRAIN, steps=12, batch_size=60,
                 optimizer=bp.optim.SGD(lr=0.5), metrics=("accuracy",), validation=VAL, backend="numpy")
    h = run.history
    # each step's accuracy is that of the parameters it started from, on its batch (the whole set here)
    replay = {k: v.copy() for k, v in start.items()}
    step = bp.compile_step(loss, replay, *TRAIN, optimizer=bp.optim.SGD(lr=0.5), backend="numpy")
    for k in range(12):
        assert h["accuracy"][k] == pytest.approx(np.mean(logits(replay, TRAIN[0]).argmax(1) == TRAIN[1]))
        step(*TRAIN)
    val = [v for v in h["val_accuracy"] if v is not None]
    assert len(val) == 12 and val[-1] == pytest.approx(np.mean(logits(run.params, VAL[0]).argmax(1) == VAL[1]))


def test_early_stopping_ends_on_the_validation_loss_and_restores_the_best_epoch():
    run = bp.fit(loss, params(), TRAIN, epochs=300, batch_size=60, optimizer=bp.optim.Adam(lr=0.05),
                 validation=VAL, early_stop=5, restore_best=True, backend="numpy")
    val = [v for v in run.history["val_loss"] if v is not None]
    best = int(np.argmin(val))
    assert run.ended_because == "early-stopped" and len(val) == best + 1 + 5 < 300  # it overfits, then stops
    assert run.outcome.startswith(f"stopped early at step {run.steps_done}: val_loss did not improve for 5 epochs")
    assert float(loss(run.params, *VAL)) == pytest.approx(val[best], rel=1e-5)  # the best epoch's parameters


def test_mistakes_are_one_message_each():
    with pytest.raises(bp.BackpropError, match="early stopping on val_loss needs a validation set"):
        bp.fit(loss, params(), TRAIN, epochs=3, early_stop=2, monitor="val_loss", backend="numpy")
    # without a validation set it watches the training loss, an epoch's mean
    run = bp.fit(loss, params(), TRAIN, epochs=3, early_stop=2, backend="numpy")
    assert run.early_stopping.monitor == "loss" and run.status == "finished"
    with pytest.raises(bp.BackpropError, match="'precision' is not a metric bpmagic computes by itself"):
        bp.fit(loss, params(), TRAIN, epochs=3, metrics=("precision",), backend="numpy")
    with pytest.raises(bp.BackpropError, match="the loss is not a classification loss"):
        bp.fit(lambda p, x, y: bp.mean(bp.square(x @ p["W"])), params(), TRAIN, epochs=1, metrics=("accuracy",),
               backend="numpy")
    with pytest.raises(bp.BackpropError, match="patience is a whole number of epochs"):
        bp.fit(loss, params(), TRAIN, epochs=3, early_stop=0, validation=VAL, backend="numpy")


@pytest.fixture(scope="module")
def ip(ip):
    ip.user_ns.update(np=np, X=X[:60], Y=Y[:60], Xv=X[60:], Yv=Y[60:])
    return ip


CELL = """\
W: Param = randn(5, 2) * 0.1
x: Input = X
y: Target = Y
logits = x @ W
loss: Loss = cross_entropy(logits, y)
margin: Metric = np.mean(logits[:, 1] - logits[:, 0])
"""


def test_a_cells_metric_line_and_the_options(ip, capsys):
    result = ip.run_cell("%%backprop --epochs 40 --lr 0.5 --metrics accuracy --validate Xv Yv --early-stop 3 "
                         "--monitor val_accuracy --no-dashboard --name m\n" + CELL)
    assert result.success
    run = ip.user_ns["m"]
    h = run.history
    assert {"accuracy", "margin", "val_accuracy", "val_margin"} <= set(h)
    W = np.asarray(run.params["W"])
    assert [v for v in h["val_margin"] if v is not None][-1] == pytest.approx(np.mean(Xv_logits(ip, W)[:, 1] -
                                                                                      Xv_logits(ip, W)[:, 0]), rel=1e-5)
    svg = Dashboard(run).static_svg()
    assert "accuracy (linear)" in svg and "margin (linear)" in svg  # the metrics panel's record
    capsys.readouterr()
    result = ip.run_cell("%%backprop --epochs 3 --early-stop 2 --monitor acc --no-dashboard\n" + CELL)
    assert "--monitor acc: this run measures loss, margin (val_... need --validate X Y)" in str(result.error_in_exec)
    result = ip.run_cell("%%backprop --epochs 3 --restore-best --no-dashboard\n" + CELL)
    assert "--restore-best goes with --early-stop" in str(result.error_in_exec)
    result = ip.run_cell("%%backprop --epochs 3 --no-dashboard\n" + CELL.replace("np.mean(logits[:, 1] - logits[:, 0])",
                                                                               "logits * 2"))
    assert str(result.error_in_exec).startswith("line 7: the Metric margin must be a scalar, but it has shape (32, 2)")


def Xv_logits(ip, W):
    return ip.user_ns["Xv"] @ W
