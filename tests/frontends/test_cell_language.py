"""What a learner writes after the labs, as a learner writes it: dropout and noise that are new at every step (and
the same for the same seed), evaluation without dropout, a VAE whose noise is drawn in the cell, twenty layers as one
list of Params, a one-hot from integer classes (one_hot, or rows of np.eye picked by them), and the mistakes —
np.random in the body, string labels — each one message at the cell's line."""
import math

import numpy as np
import pytest

import bpmagic as bp


@pytest.fixture
def ns(ip):
    ip.run_cell("import numpy as np\nrng = np.random.default_rng(0)\n"
                "X = rng.standard_normal((256, 16)).astype(np.float32)\nY = (X[:, 0] > 0).astype(int)")
    return ip.user_ns


def cell(ip, line, body):
    result = ip.run_cell(f"%%backprop {line}\n{body}")
    return result


def masked_mean(p, x):
    """A loss whose value is decided by dropout's mask alone: the mean of dropout(ones) is (kept / n) * 2."""
    return bp.mean(bp.dropout(bp.ones_like(x) + 0 * x @ p["W"], 0.5)) + 0 * bp.sum(p["W"])


def losses(seed, steps=5, key=None):
    X = np.ones((8, 4), np.float32)
    loss = masked_mean if key is None else (lambda p, x: bp.mean(bp.dropout(bp.ones_like(x) + 0 * x @ p["W"], 0.5,
                                                                            key=key)) + 0 * bp.sum(p["W"]))
    step = bp.compile_step(loss, {"W": np.zeros((4, 4), np.float32)}, X, optimizer=bp.optim.SGD(lr=1e-9),
                           backend="numpy", seed=seed)
    return [step(X) for _ in range(steps)]


def test_dropout_draws_a_new_mask_at_every_step_the_same_for_the_same_seed():
    first = losses(seed=0)
    assert len(set(first)) > 1  # a new mask at each step (the same mask would give the same loss every time)
    assert losses(seed=0) == first  # reproducible: the same seed, the same masks step by step
    assert losses(seed=1) != first
    named = losses(seed=0, key=3)  # a key of its own only tells two dropouts apart: still new at every step
    assert len(set(named)) > 1 and named != first


def test_dropout_is_off_when_the_model_is_evaluated():
    W = np.eye(4, dtype=np.float32)
    X = np.ones((8, 4), np.float32)

    def loss(p, x):
        return bp.mean(bp.dropout(x @ p["W"], 0.5))

    assert "random_uniform" not in str(bp.trace(loss, {"W": W}, X))  # a drawing of the model
    assert float(loss({"W": W}, X)) == 1.0  # called on arrays: evaluated, nothing dropped
    assert float(bp.dropout(X, 0.5, training=True).mean()) != 1.0  # unless asked
    run = bp.fit(loss, {"W": W.copy()}, (X,), steps=4, batch_size=4, validation=(X,), backend="numpy")
    # validated after the last epoch without dropout: the loss of the final params, evaluated
    assert run.history["val_loss"][-1] == pytest.approx(float(loss(run.params, X)), rel=1e-6)
    assert "random_uniform" in str(run.graph)  # the training step's graph draws


def test_normal_and_uniform_draws_have_their_distributions():
    z = np.asarray(bp.normal(200_000))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01 and z.dtype == np.float64
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.005  # one sigma
    u = np.asarray(bp.uniform(100_000, low=-2.0, high=3.0))
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 0.02
    assert np.asarray(bp.randn_like(np.zeros((3, 4), np.float32))).dtype == np.float32


def test_a_vae_cell_draws_its_noise_anew_at_every_step(ip, ns):
    result = cell(ip, "--steps 400 --lr 0.01 --optimizer adam --batch-size 64 --no-dashboard --name vae", """\
We: Param = randn(16, 8) * 0.1
Wd: Param = randn(4, 16) * 0.1
x: Input = X
mu = (x @ We)[:, :4]
logvar = (x @ We)[:, 4:]
z = mu + np.exp(0.5 * logvar) * randn_like(mu)
kl = -0.5 * np.mean(1 + logvar - mu ** 2 - np.exp(logvar))
loss: Loss = mse(z @ Wd, x) + 0.1 * kl
""")
    assert result.success
    vae = ns["vae"]
    h = vae.history["loss"]
    assert vae.status == "finished" and np.mean(h[-50:]) < np.mean(h[:50])
    assert str(vae.graph).count("random_uniform(step_key") == 2  # Box–Muller: two uniform draws per step


def test_twenty_layers_as_one_list_of_params(ip, ns):
    body = """\
Ws: Param = [randn(16, 16) * 0.2 for _ in range(20)]
head: Param = {"W": randn(16, 2) * 0.1, "b": zeros(2)}
x: Input = X
y: Target = Y
h = x
for W in Ws:
    h = h + np.tanh(h @ W)
loss: Loss = cross_entropy(h @ head["W"] + head["b"], y)
"""
    assert cell(ip, "--steps 60 --lr 0.05 --no-dashboard --name deep", body).success
    deep = ns["deep"]
    assert list(deep.layers)[:3] == ["Ws[0]", "Ws[1]", "Ws[2]"] and len(deep.layers) == 22
    assert all(f"grad_norm/Ws[{i}]" in deep.history for i in range(20))  # the gradient panel shows 20 layers
    assert isinstance(ns["Ws"], list) and len(ns["Ws"]) == 20 and ns["Ws"][7] is deep.params["Ws[7]"]
    assert set(ns["head"]) == {"W", "b"} and ns["head"]["b"] is deep.params["head['b']"]
    assert "Ws_7" in str(deep.step)  # generated code names each entry
    trained = ns["Ws"][0].copy()
    assert cell(ip, "--steps 5 --lr 0.05 --no-dashboard --name deep", body).success
    assert ns["deep"].history["loss"][0] < deep.history["loss"][0]  # a re-run continues from the trained list
    assert not np.array_equal(ns["Ws"][0], trained) and ns["Ws"][0] is ns["deep"].params["Ws[0]"]


@pytest.mark.parametrize("one_hot_rows", ["eye(10)[y]", "np.eye(10)[y]", "np.take(np.eye(10), y, axis=0)",
                                          "E.take(y, axis=0)", "E[:, y].T", "E[y, :]"])
def test_rows_of_a_constant_picked_by_traced_integers(ip, ns, one_hot_rows):
    # a learner's one-hot: NumPy indexes a plain array without asking the traced index, so the cell asks bpmagic
    ip.run_cell("Y10 = rng.integers(0, 10, 256)\nE = np.eye(10)")

    def trained(rows):
        ns.pop("W", None)
        assert cell(ip, "--steps 20 --no-dashboard --name onehot --seed 1", f"""\
W: Param = randn(16, 10) * 0.1
x: Input = X
y: Target = Y10
t = {rows}
loss: Loss = np.mean((x @ W - t) ** 2)
""").success
        return ns["onehot"].history["loss"]

    expected = trained("one_hot(y, 10)")
    np.testing.assert_allclose(trained(one_hot_rows), expected, rtol=1e-6)  # np.eye is float64: the loss is too
    assert ns["W"].dtype == np.float32  # the Params keep the cell's dtype


def test_indexing_by_traced_integers_where_it_cannot_work_is_one_message(ip, ns, capsys):
    result = cell(ip, "--steps 5 --no-dashboard", """\
W: Param = randn(16, 2)
x: Input = X
y: Target = Y
t = np.take(np.eye(2), y, axis=0, mode="clip")
loss: Loss = np.mean((x @ W - t) ** 2)
""")
    assert str(result.error_in_exec).startswith("line 5: np.take(..., out=, mode=) with traced indices")
    assert "Traceback" not in capsys.readouterr().err


def test_np_random_in_the_body_is_one_message(ip, ns, capsys):
    result = cell(ip, "--steps 5 --no-dashboard", """\
W: Param = np.random.randn(16, 2) * 0.1
x: Input = X
y: Target = Y
h = x + 0.1 * np.random.randn(*x.shape)
loss: Loss = cross_entropy(h @ W, y)
""")
    message = str(result.error_in_exec)
    assert message.startswith("line 5: np.random.randn(...) in the cell's body is drawn once")
    assert "randn_like(h)" in message and "h = x + 0.1 * np.random.randn(*x.shape)" in message
    assert "Traceback" not in capsys.readouterr().err  # the Param's initialiser (line 2) is fine: drawn once


def test_a_target_of_strings_is_one_message_at_its_line(ip, ns, capsys):
    ip.run_cell("labels = np.array(['cat', 'dog'])[Y]")
    result = cell(ip, "--steps 5 --no-dashboard", """\
W: Param = randn(16, 2)
x: Input = X
y: Target = labels
loss: Loss = cross_entropy(x @ W, y)
""")
    message = str(result.error_in_exec)
    assert message.startswith("line 4: y holds strings ('") and "...): a Target must be numbers" in message
    assert "np.unique(labels, return_inverse=True)" in message


def test_a_run_with_dropout_is_reproducible_and_reset_replays_it():
    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)

    def loss(p, x):
        return bp.mean(bp.square(bp.dropout(bp.tanh(x @ p["W"]), 0.3) - 0.5))

    def run():
        return bp.fit(loss, {"W": np.full((4, 4), 0.3, np.float32)}, (X,), steps=40, batch_size=16,
                      backend="numpy", seed=5, optimizer=bp.optim.SGD(lr=0.1))

    first = run()
    assert run().history["loss"] == first.history["loss"]
    first.reset().wait()
    assert first.history["loss"] == first.previous_attempts[0]["loss"]
    assert math.isfinite(first.loss)
