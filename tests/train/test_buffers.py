"""Buffers: arrays a model keeps between steps without training them (batch_norm's running averages).

In a cell they are declared `m: Buffer = zeros(8)` and reassigned in the body; through the API, compile_step and fit
take `buffers=` and the loss function returns `(loss, new_buffers)`. Each step stores the new values in place, after
the step's finiteness check, so a NaN step leaves them (and the params) as they were.
"""
import numpy as np
import pytest

import bpmagic as bp
from cells import backprop

BN_CELL = """\
W1: Param = randn(4, 8) * 0.5
g1: Param = ones(8)
c1: Param = zeros(8)
W2: Param = randn(8, 1) * 0.5
b2: Param = zeros(1)
mean1: Buffer = zeros(8)
var1: Buffer = ones(8)
x: Input = XB
y: Target = YB
h, mean1, var1 = batch_norm(x @ W1, g1, c1, mean1, var1, training=True)
p = sigmoid(relu(h) @ W2 + b2)
loss: Loss = binary_cross_entropy(p, y)
"""


@pytest.fixture
def data(ip):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((256, 4)) * 3 + 5).astype(np.float32)  # far from mean 0, variance 1
    ip.user_ns.update(XB=x, YB=(x[:, :1] > 5).astype(np.float32))
    for name in ("W1", "g1", "c1", "W2", "b2", "mean1", "var1", "_bp"):
        ip.user_ns.pop(name, None)
    return ip.user_ns


def test_running_averages_follow_the_batches_and_serve_evaluation(ip, data, capsys):
    result = backprop(ip, "--steps 300 --lr 0.5 --batch-size 32 --no-dashboard", BN_CELL)
    assert result.success, capsys.readouterr().err
    ns, run = data, data["_bp"]
    assert run.status == "finished" and run.loss < 0.2
    z = ns["XB"] @ ns["W1"]
    # 300 steps with momentum 0.1: the averages have converged on the data's statistics (the last W1 moved little)
    np.testing.assert_allclose(ns["mean1"], z.mean(axis=0), rtol=0.05, atol=0.1)
    np.testing.assert_allclose(ns["var1"], z.var(axis=0, ddof=1), rtol=0.1)
    assert ns["mean1"] is run.buffers["mean1"]  # the very arrays the worker updated
    # evaluation mode with the running averages classifies as well as training did
    h, _, _ = bp.batch_norm(z, ns["g1"], ns["c1"], ns["mean1"], ns["var1"], training=False)
    p = 1 / (1 + np.exp(-(np.maximum(h, 0) @ ns["W2"] + ns["b2"])))
    assert ((p > 0.5) == (ns["YB"] > 0.5)).mean() > 0.9


def test_buffers_carry_over_a_rerun_and_reset_starts_them_over(ip, data, capsys):
    backprop(ip, "--steps 50 --lr 0.5 --batch-size 32 --no-dashboard", BN_CELL)
    after = data["mean1"].copy()
    assert np.abs(after).max() > 1  # moved from zeros
    backprop(ip, "--steps 1 --lr 0.5 --batch-size 32 --no-dashboard", BN_CELL)
    np.testing.assert_allclose(data["mean1"], after, rtol=0.2, atol=0.5)  # one more step from where it was
    backprop(ip, "--steps 1 --lr 0.5 --batch-size 32 --no-dashboard --reset", BN_CELL)
    assert np.abs(data["mean1"]).max() < np.abs(after).max() * 0.2  # one step from zeros: 0.1 of the batch mean


def test_a_nan_step_keeps_the_buffers(ip, data, capsys):
    backprop(ip, "--steps 20 --lr 0.5 --batch-size 32 --no-dashboard", BN_CELL)
    before = {k: data[k].copy() for k in ("mean1", "var1", "W1")}
    data["XB"] = data["XB"].copy()
    # the first batch of the next run (all 256) holds a row of values finite in float32 whose products overflow it
    # (a NaN in the data itself is refused before any step)
    data["XB"][5] = 3e38
    backprop(ip, "--steps 3 --lr 0.5 --batch-size 256 --no-dashboard", BN_CELL)
    run = data["_bp"]
    assert run.status == "failed" and run.ended_because == "non-finite" and run.steps_done == 0
    for k, v in before.items():
        np.testing.assert_array_equal(data[k], v)


def test_the_api_takes_buffers_and_checks_what_the_loss_returns():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((64, 3)), rng.standard_normal((64, 1))
    params = {"w": np.zeros((3, 1))}
    buffers = {"count": np.zeros(()), "seen": np.zeros(3)}

    def loss_fn(p, b, x, y):
        new = {"count": b["count"] + 1, "seen": b["seen"] + bp.sum(x, axis=0)}
        return bp.mse(x @ p["w"], y), new

    run = bp.fit(loss_fn, params, (x, y), steps=8, batch_size=16, buffers=buffers, backend="numpy",
                 optimizer=bp.optim.SGD(lr=0.1))
    assert run.status == "finished" and float(buffers["count"]) == 8.0 and run.buffers is buffers
    np.testing.assert_allclose(buffers["seen"], 2 * x.sum(axis=0))  # 8 batches of 16: every example twice
    graph = run.step_graph
    assert [v.name for v in graph.inputs[:5]] == ["w", "count", "seen", "x", "y"]  # after the params (SGD: no state)

    def forgets(p, b, x, y):
        return bp.mse(x @ p["w"], y)

    with pytest.raises(bp.BackpropError, match=r"must return \(loss, new_buffers\)"):
        bp.compile_step(forgets, {"w": np.zeros((3, 1))}, x, y, buffers={"count": np.zeros(())})

    def reshapes(p, b, x, y):
        return bp.mse(x @ p["w"], y), {"count": bp.sum(x)[None]}

    with pytest.raises(bp.BackpropError, match=r"buffer 'count' has shape \(\), but its new value has shape \(1,\)"):
        bp.compile_step(reshapes, {"w": np.zeros((3, 1))}, x, y, buffers={"count": np.zeros(())})


def test_save_and_load_keep_the_buffers(ip, data, tmp_path, capsys):
    backprop(ip, "--steps 10 --lr 0.5 --batch-size 32 --no-dashboard", BN_CELL)
    run = data["_bp"]
    run.save(tmp_path / "bn.npz")
    loaded = bp.Run.load(tmp_path / "bn.npz")
    np.testing.assert_array_equal(loaded.buffers["mean1"], data["mean1"])
    np.testing.assert_array_equal(loaded.params["W1"], data["W1"])


def test_a_donated_input_is_not_overwritten_while_a_view_of_it_is_still_read():
    """W.T is read after W's last direct read: writing W's new value into W in place would change what the view
    shows (once it did, and s came out 16 instead of 12)."""
    from bpmagic.backends.numpy_backend import NumpyBackend
    from bpmagic.compile.executor import Executable

    def f(W, x):
        v = W.T
        loss = bp.sum(x)
        new_W = x * 2.0
        return loss, new_W, bp.sum(v @ x)

    W, x = np.arange(4.0).reshape(2, 2), np.ones((2, 2))
    exe = Executable(bp.trace(f, W, x), NumpyBackend(), donate={1: 0}, guards=[0])
    _, new_W, s = exe(W.copy(), x)
    assert float(s) == float((W.T @ x).sum()) == 12.0
    np.testing.assert_array_equal(new_W, x * 2.0)
