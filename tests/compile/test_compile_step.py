"""compile_step: forward + backward + update as one compiled graph, on every backend that is usable here."""
import re
import threading
import warnings

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.backends import available_backends


def _backend_or_skip(name):
    reason = available_backends()[name].unavailable_reason()
    if reason:
        pytest.skip(f"{name} backend unusable here: {reason}")
    return bp.get_backend(name)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    return _backend_or_skip(request.param)


def to_numpy(backend, a):
    return backend.to_numpy(a)


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def xor_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"W1": (rng.standard_normal((2, 8)) * 0.5).astype(np.float32), "b1": np.zeros(8, np.float32),
            "W2": (rng.standard_normal((8, 1)) * 0.5).astype(np.float32), "b2": np.zeros(1, np.float32)}


def xor_loss(p, x, y):
    h = bp.tanh(x @ p["W1"] + p["b1"])
    return bp.mse(h @ p["W2"] + p["b2"], y)


def train_xor(backend, steps=2000):
    params = xor_params()
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=bp.optim.SGD(lr=0.2, momentum=0.9),
                           backend=backend)
    return [step(XOR_X, XOR_Y) for _ in range(steps)], params


def test_xor_learns_and_is_deterministic(backend):
    losses, params = train_xor(backend)
    first_below = next(i for i, l in enumerate(losses) if l < 0.01)
    assert first_below < 2000 and losses[-1] < 0.01
    again, params2 = train_xor(backend)
    assert again == losses
    for k in params:
        assert np.array_equal(to_numpy(backend, params[k]), to_numpy(backend, params2[k]))


# -- the compiled step equals an eager reference, step after step --------------------------------------------------
def reference_sgd(params, grads, state, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    for k in params:
        g = grads[k] + weight_decay * params[k]
        if momentum:
            v = state[k] = momentum * state.get(k, np.zeros_like(g)) + g
            g = g + momentum * v if nesterov else v
        params[k] = params[k] - lr * g


def reference_adam(params, grads, state, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=True):
    for k in params:
        g = grads[k]
        if weight_decay and not decoupled:
            g = g + weight_decay * params[k]
        m, v = state.get(k, (np.zeros_like(g), np.zeros_like(g)))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[k] = (m, v)
        p = params[k]
        if weight_decay and decoupled:
            p = p * (1 - lr * weight_decay)
        params[k] = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


OPTIMIZERS = {
    "sgd": (lambda: bp.optim.SGD(lr=0.1), lambda p, g, s, t: reference_sgd(p, g, s, 0.1)),
    "momentum": (lambda: bp.optim.SGD(lr=0.1, momentum=0.9),
                 lambda p, g, s, t: reference_sgd(p, g, s, 0.1, momentum=0.9)),
    "nesterov+wd": (lambda: bp.optim.SGD(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01),
                    lambda p, g, s, t: reference_sgd(p, g, s, 0.1, 0.8, True, 0.01)),
    "adam": (lambda: bp.optim.Adam(lr=0.01), lambda p, g, s, t: reference_adam(p, g, s, t, 0.01)),
    "adamw": (lambda: bp.optim.Adam(lr=0.01, weight_decay=0.1),
              lambda p, g, s, t: reference_adam(p, g, s, t, 0.01, weight_decay=0.1)),
    "adam-l2": (lambda: bp.optim.Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, decoupled=False),
                lambda p, g, s, t: reference_adam(p, g, s, t, 0.01, 0.8, 0.99, weight_decay=0.1,
                                                  decoupled=False)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_compiled_step_matches_eager_reference(name, backend):
    make_opt, reference = OPTIMIZERS[name]
    rng = np.random.default_rng(3)
    X = rng.standard_normal((16, 5))
    labels = rng.integers(0, 3, 16)
    params = {"W1": rng.standard_normal((5, 7)) * 0.5, "b1": np.zeros(7), "W2": rng.standard_normal((7, 3)) * 0.5,
              "b2": np.zeros(3)}
    ref = {k: v.copy() for k, v in params.items()}

    def loss_fn(p, x, y):
        h = bp.relu(x @ p["W1"] + p["b1"])
        return bp.cross_entropy(h @ p["W2"] + p["b2"], y)

    step = bp.compile_step(loss_fn, params, X[:8], labels[:8], optimizer=make_opt(), backend=backend)
    state = {}
    for t in range(1, 7):
        batch = slice(0, 8) if t % 2 else slice(8, 16)  # alternate batches: buffers must not leak across calls
        loss = step(X[batch], labels[batch])
        ref_loss, grads = bp.value_and_grad(loss_fn)(ref, X[batch], labels[batch])
        reference(ref, grads, state, t)
        assert loss == pytest.approx(float(ref_loss), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(to_numpy(backend, params[k]), ref[k], rtol=1e-10, atol=1e-12)


def test_against_torch_optimizers():
    torch = pytest.importorskip("torch", reason="torch is optional (the bench installs torch==2.13.0)")
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((4, 3))
    x = rng.standard_normal((6, 4))
    for make, tmake in [(lambda: bp.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
                        (lambda: bp.optim.Adam(lr=0.01, weight_decay=0.1),
                         lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1))]:
        params = {"w": w0.copy()}
        step = bp.compile_step(lambda p, x: bp.mean(bp.tanh(x @ p["w"]) ** 2), params, x, optimizer=make(),
                               backend="numpy")
        tw = torch.tensor(w0, requires_grad=True)
        opt = tmake([tw])
        for _ in range(5):
            step(x)
            opt.zero_grad()
            torch.mean(torch.tanh(torch.tensor(x) @ tw) ** 2).backward()
            opt.step()
        np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-10)


# -- plans, shapes, structure -------------------------------------------------------------------------------------
def test_same_shapes_reuse_the_plan_and_new_shapes_compile_once():
    params = xor_params()
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=bp.optim.SGD(lr=0.1), backend="numpy")
    for _ in range(3):
        step(XOR_X, XOR_Y)
    assert len(step.plans) == 1
    step(XOR_X[:2], XOR_Y[:2])
    step(XOR_X[:2], XOR_Y[:2])
    assert len(step.plans) == 2
    step(XOR_X, XOR_Y)
    assert len(step.plans) == 2


def test_switching_momentum_on_mid_training_compiles_once_and_keeps_going():
    params = xor_params()
    opt = bp.optim.SGD(lr=0.1)
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=opt, backend="numpy")
    step(XOR_X, XOR_Y)
    opt.momentum = 0.9
    step(XOR_X, XOR_Y)
    assert len(step.plans) == 2 and np.any(step.state["W1"]["velocity"] != 0)
    assert "velocity" in str(step.update_graph)


def test_graphs_of_the_step():
    params = xor_params()
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=bp.optim.SGD(lr=0.1), backend="numpy")
    fwd, bwd, upd = str(step.forward_graph), str(step.backward_graph), str(step.update_graph)
    assert "tanh(" in fwd and "matmul(" in fwd
    assert "dW1 = matmul(" in bwd and "backward of line" in bwd
    assert "subtract(W1," in upd


# -- live hyperparameters ---------------------------------------------------------------------------------------
def test_learning_rate_changed_from_another_thread_applies_at_the_next_step():
    params = xor_params()
    opt = bp.optim.SGD(lr=0.1)
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=opt, backend="numpy")
    used = []
    changed_at = []
    ready, done = threading.Event(), threading.Event()

    def changer():
        ready.wait()
        opt.lr = 0.05
        done.set()

    t = threading.Thread(target=changer)
    t.start()
    for i in range(20):
        if i == 10:
            ready.set()
            done.wait()
            changed_at.append(step.step_count)
        step(XOR_X, XOR_Y)
        used.append(step.last.lrs["W1"])
    t.join()
    k = changed_at[0]
    assert used[:k] == [pytest.approx(0.1)] * k and used[k:] == [pytest.approx(0.05)] * (20 - k)
    assert len(step.plans) == 1  # a new learning rate is an input, not a new graph


def test_per_layer_lr_multiplier():
    params = xor_params()
    opt = bp.optim.SGD(lr=0.1)
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=opt, backend="numpy")
    assert step.groups == {"W1": "1", "b1": "1", "W2": "2", "b2": "2"}
    opt.set_lr_multiplier("1", 0.0)
    before = {k: v.copy() for k, v in params.items()}
    step(XOR_X, XOR_Y)
    assert np.array_equal(params["W1"], before["W1"]) and np.array_equal(params["b1"], before["b1"])
    assert not np.array_equal(params["W2"], before["W2"])
    assert step.last.lrs == {"W1": 0.0, "b1": 0.0, "W2": pytest.approx(0.1), "b2": pytest.approx(0.1)}


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf"), "fast"])
def test_invalid_hyperparameters_are_rejected_and_change_nothing(bad):
    opt = bp.optim.SGD(lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match="lr must be"):
        opt.lr = bad
    assert opt.lr == 0.1
    with pytest.raises(ValueError, match="momentum"):
        opt.set(momentum=1.5)
    assert opt.momentum == 0.5
    with pytest.raises(ValueError, match="no hyperparameter 'beta'"):
        opt.set(beta=0.3)


def test_stats_are_the_layers_norms_named_as_history_columns():
    params = xor_params()
    before = {k: v.copy() for k, v in params.items()}
    step = bp.compile_step(xor_loss, params, XOR_X, XOR_Y, optimizer=bp.optim.SGD(lr=0.1), backend="numpy",
                           stats=True)
    _, grads = bp.value_and_grad(xor_loss)(before, XOR_X, XOR_Y)
    step(XOR_X, XOR_Y)
    layers = {}
    for name, layer in step.groups.items():
        layers.setdefault(layer, []).append(name)
    assert len(layers) == 2, layers
    stats = bp.train.stats
    for layer, names in layers.items():
        g = np.sqrt(sum(float(np.sum(grads[k] ** 2)) for k in names))
        w = np.sqrt(sum(float(np.sum(before[k] ** 2)) for k in names))
        assert step.last.stats[stats.GRAD_NORM.column(layer)] == pytest.approx(g, rel=1e-5)
        assert step.last.stats[f"update_ratio/{layer}"] == pytest.approx(0.1 * g / w, rel=1e-4)
        assert np.isfinite(step.last.stats[f"signal_norm/{layer}"]) and step.last.stats[f"signal_norm/{layer}"] > 0
    assert set(step.last.stats) == {s.column(layer) for s in stats.LAYER_STATS for layer in layers}


# -- errors -------------------------------------------------------------------------------------------------------
def test_nan_loss_keeps_params_and_names_the_line():
    params = {"w": np.array([1.0, 2.0])}

    def loss_fn(p, x):
        z = p["w"] * x
        return bp.sum(bp.log(z))  # log of a negative number is nan

    step = bp.compile_step(loss_fn, params, np.ones(2), optimizer=bp.optim.SGD(lr=0.1), backend="numpy")
    step(np.ones(2))
    before = params["w"].copy()
    with pytest.raises(bp.NonFiniteError) as info:
        step(np.array([1.0, -1.0]))
    msg = str(info.value)
    assert f"line {loss_fn.__code__.co_firstlineno + 2}: log of (2,) produced nan at step 2" in msg
    assert "return bp.sum(bp.log(z))" in msg and "keep their values" in msg
    assert np.array_equal(params["w"], before)
    assert step.step_count == 1


def test_nan_gradient_with_finite_loss_keeps_params():
    params = {"w": np.array([1.0, 0.5])}
    step = bp.compile_step(lambda p: bp.sum(bp.arcsin(p["w"])), params, optimizer=bp.optim.SGD(lr=0.1),
                           backend="numpy")
    with pytest.raises(bp.NonFiniteError, match=r"line \d+: divide of \(2,\) and \(2,\) produced inf"):
        step()  # d arcsin(w)/dw = ḡ / sqrt(1 - w²) = inf at w = 1 (the edge of its domain); the loss (2.09) is finite
    assert np.array_equal(params["w"], [1.0, 0.5])


@pytest.mark.parametrize("stats,clip", [(False, False), (True, False), (False, True)],
                         ids=["plain", "with statistics", "clipped by norm"])
def test_an_exploding_gradient_is_refused_alike_with_or_without_the_dashboards_statistics(stats, clip):
    """A float32 gradient whose squares overflow (finite entries of 4e20) is refused the same way whether the
    step measures statistics or not, with a message that says so: not "matmul of (1, 6) and (6, 1) produced inf";
    clipped by norm too, where the overflowed norm scaled the gradient to 0 and the step went on without a word."""
    params = {"W": np.ones((3, 2), np.float32)}
    opt = bp.optim.SGD(lr=1e-30).clipped(norm=1.0) if clip else bp.optim.SGD(lr=1e-30)
    step = bp.compile_step(lambda p, x: bp.sum(x @ p["W"]) * 1e20, params, np.ones((4, 3), np.float32),
                           optimizer=opt, stats=stats, backend="numpy")
    with warnings.catch_warnings(record=True) as said, pytest.raises(
            bp.NonFiniteError, match=r"step 1: a gradient is too large to measure \(entries up to 4e\+20\)"
                                     r".*overflows float32.*--clip-value"):
        step(np.ones((4, 3), np.float32))
    assert np.array_equal(params["W"], np.ones((3, 2)))
    assert not said  # not NumPy's "overflow encountered in dot" besides, naming the guard's generated line


def test_a_nan_is_reported_once_by_the_guard_not_also_by_numpys_warning_on_our_generated_line():
    with warnings.catch_warnings(record=True) as said:
        params = {"w": np.array([1.0, -1.0])}
        step = bp.compile_step(lambda p: bp.sum(bp.log(p["w"])), params, optimizer=bp.optim.SGD(lr=0.1),
                               backend="numpy")
        with pytest.raises(bp.NonFiniteError, match=r"log of \(2,\) produced nan at step 1"):
            step()
        with np.errstate(invalid="warn"):
            np.log(np.array([-1.0]))  # the learner's own NumPy still warns as NumPy does
    assert [str(w.message) for w in said] == ["invalid value encountered in log"]
    assert said[0].filename == __file__


@pytest.mark.parametrize("after", ["catch_warnings", "resetwarnings", "simplefilter error"])
def test_a_step_compiled_inside_catch_warnings_stays_quiet_after_the_block(after):
    """catch_warnings puts back the filters it found when it ends (resetwarnings empties them): a step compiled
    inside such a block, and refused after it, had lost its filter, and NumPy's "overflow encountered in dot" named
    the guard's generated line above the guard's own message."""
    params = {"W": np.ones((3, 2), np.float32)}
    x = np.ones((4, 3), np.float32)
    with warnings.catch_warnings():
        step = bp.compile_step(lambda p, x: bp.sum(x @ p["W"]) * 1e20, params, x, optimizer=bp.optim.SGD(lr=1e-30),
                               backend="numpy")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        if after == "resetwarnings":
            warnings.resetwarnings()
        if after == "simplefilter error":  # in front of the step's own filter: it would turn the warning into an error
            warnings.simplefilter("error")
        with pytest.raises(bp.NonFiniteError, match="too large to measure"):
            step(x)
    assert not [str(w.message) for w in said]
    assert np.array_equal(params["W"], np.ones((3, 2)))


@pytest.mark.parametrize("stats,clip", [(False, False), (True, False), (False, True)],
                         ids=["plain", "with statistics", "clipped by norm"])
def test_a_float16_step_is_applied_though_its_gradients_squares_would_overflow(stats, clip):
    """float16's squares overflow from |g| ~ 256: its sums of squares (the guard's, the dashboard's, clipping's) are
    taken in float32 (entries up to 42 here, squares summing to 3e5 > 65504), so the step is applied, not refused
    as exploding, and the norms are the float64 reference's to float16 rounding."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64)).astype(np.float16)
    c = (rng.standard_normal((64, 64)) * 1.5).astype(np.float16)
    params = {"W": (rng.standard_normal((64, 64)) * 0.1).astype(np.float16)}
    before = params["W"].copy()
    opt = bp.optim.SGD(lr=1e-2).clipped(norm=1.0) if clip else bp.optim.SGD(lr=1e-4)
    step = bp.compile_step(lambda p, x, c: bp.sum(bp.tanh(x @ p["W"]) * c), params, x, c,
                           optimizer=opt, stats=stats, backend="numpy")
    assert np.isfinite(step(x, c)) and not np.array_equal(params["W"], before)
    assert params["W"].dtype == np.float16
    z = x.astype(np.float64) @ before.astype(np.float64)
    norm = np.linalg.norm(x.astype(np.float64).T @ ((1 - np.tanh(z) ** 2) * c))
    if stats:
        assert step.last.stats["grad_norm/W"] == pytest.approx(norm, rel=1e-2)
    if clip:  # clipped to norm 1 exactly: the update is lr times a unit gradient
        assert np.linalg.norm(before.astype(np.float64) - params["W"]) == pytest.approx(1e-2, rel=5e-2)


def test_a_float16_gradient_clipped_by_a_tiny_scale_keeps_its_digits():
    """Clipping a float16 gradient of norm 3750 to 1e-4: the scale, 2.7e-8, is 0 in float16; applied in float32,
    the update is lr x 1e-4 long."""
    params = {"w": np.zeros(64, np.float16)}
    c = np.full(64, 3e4, np.float16)
    step = bp.compile_step(lambda p, c: bp.mean(p["w"] * c), params, c,
                           optimizer=bp.optim.SGD(lr=100.0).clipped(norm=1e-4), backend="numpy")
    step(c)
    assert np.linalg.norm(params["w"].astype(np.float64)) == pytest.approx(0.01, rel=2e-2)


def test_a_float16_update_that_overflows_is_still_told_by_numpys_warning():
    """The guard sums float16 squares in float32, so |g| = 1000 passes it; Adam's g * g then overflows float16 in
    its state: only NumPy's warning says so, and a float16 step keeps it."""
    params = {"w": np.ones(4, np.float16)}
    c = np.full(4, 1000, np.float16)
    step = bp.compile_step(lambda p, c: bp.sum(p["w"] * c), params, c, optimizer=bp.optim.Adam(lr=0.1),
                           backend="numpy")
    with warnings.catch_warnings(record=True) as said:
        step(c)
    assert any("overflow" in str(w.message) for w in said), [str(w.message) for w in said]


def test_integer_params_are_refused():
    with pytest.raises(bp.BackpropError, match=r"parameter 'W' has dtype int64 \(2, 2\).*astype"):
        bp.compile_step(lambda p, x: bp.sum(x @ p["W"]), {"W": np.ones((2, 2), int)}, np.ones((1, 2)),
                        backend="numpy")


def test_shape_mismatch_in_loss_names_the_line():
    def loss_fn(p, x):
        return bp.sum(x @ p["W"])

    with pytest.raises(bp.ShapeError, match=r"line \d+: matmul of \(4, 3\) and \(2, 5\)"):
        bp.compile_step(loss_fn, {"W": np.ones((2, 5))}, np.ones((4, 3)), backend="numpy")


def test_cupy_without_gpu_is_a_clear_error():
    reason = available_backends()["cupy"].unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is usable here, so there is no error to check")
    with pytest.raises(bp.BackendError, match=r"'cupy' backend cannot be used here.*pip install 'bpmagic\[gpu\]'"):
        bp.compile_step(xor_loss, xor_params(), XOR_X, XOR_Y, backend="cupy")


def test_auto_backend_says_which_once_and_only_when_it_is_not_the_obvious_choice(capsys, monkeypatch):
    from bpmagic import backends

    cupy = available_backends()["cupy"]
    monkeypatch.setattr(backends, "_said", set())
    monkeypatch.setattr(cupy, "installed", classmethod(lambda cls: False))
    monkeypatch.setattr(cupy, "unavailable_reason", classmethod(lambda cls: "CuPy is not installed"))
    bp.compile_step(xor_loss, xor_params(), XOR_X, XOR_Y, backend="auto")
    assert capsys.readouterr().out == ""  # no CuPy: NumPy goes without saying
    monkeypatch.setattr(cupy, "installed", classmethod(lambda cls: True))
    monkeypatch.setattr(cupy, "unavailable_reason", classmethod(lambda cls: "CuPy sees no GPU"))
    for _ in range(3):
        bp.compile_step(xor_loss, xor_params(), XOR_X, XOR_Y, backend="auto")
    out = capsys.readouterr().out
    assert out == "bpmagic: backend 'auto' chose numpy (CuPy is installed but unusable here: CuPy sees no GPU).\n"


# -- a convolutional net exercises indexing, unfold/fold and pooling in the compiled executor -----------------------
def test_small_convnet_compiled_equals_eager(backend):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((6, 1, 8, 8))
    y = rng.integers(0, 4, 6)
    params = {"K1": rng.standard_normal((3, 1, 3, 3)) * 0.3, "c1": np.zeros((1, 3, 1, 1)),
              "W2": rng.standard_normal((3 * 3 * 3, 4)) * 0.3, "b2": np.zeros(4)}
    ref = {k: v.copy() for k, v in params.items()}

    def loss_fn(p, x, y):
        h = bp.relu(bp.conv2d(x, p["K1"], padding=1) + p["c1"])
        h = bp.max_pool2d(h, 2)[:, :, 1:, 1:]
        logits = h.reshape(h.shape[0], -1) @ p["W2"] + p["b2"]
        return bp.cross_entropy(logits, y) + 0.01 * bp.sum(bp.embedding(p["W2"], np.array([0, 0, 5])) ** 2)

    step = bp.compile_step(loss_fn, params, X, y, optimizer=bp.optim.SGD(lr=0.1), backend=backend)
    for _ in range(3):
        loss = step(X, y)
        ref_loss, g = bp.value_and_grad(loss_fn)(ref, X, y)
        for k in ref:
            ref[k] = ref[k] - 0.1 * g[k]
        assert loss == pytest.approx(float(ref_loss), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(to_numpy(backend, params[k]), ref[k], rtol=1e-10, atol=1e-12)


MODEL = '''\
import bpmagic as bp

broken = {"now": False}


@bp.primitive
def fragile(xp, x):
    if broken["now"]:
        raise RuntimeError("fragile broke")
    return x * 1.0


@fragile.defvjp
def _(g, out, x):
    return g


def loss_fn(p, x, y):
    h = bp.tanh(x @ p["W1"])
    z = fragile(h)
    return bp.mse(z @ p["W2"], y)
'''


def test_the_step_reads_as_code_and_a_traceback_through_it_shows_its_lines(tmp_path, monkeypatch):
    import importlib
    import traceback

    (tmp_path / "learners_model.py").write_text(MODEL)  # a model in a file of its own: its lines are known
    monkeypatch.syspath_prepend(str(tmp_path))
    model = importlib.import_module("learners_model")
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((2, 4)), "W2": rng.standard_normal((4, 1))}
    step = bp.compile_step(model.loss_fn, params, XOR_X.astype(np.float64), XOR_Y.astype(np.float64),
                           backend="numpy", optimizer=bp.optim.SGD(lr=0.1))
    step(XOR_X.astype(np.float64), XOR_Y.astype(np.float64))
    source = step.source
    assert str(step) == source
    assert source.startswith("def run(W1, W2, x, y, lr_W1, momentum_W1, weight_decay_W1, lr_W2, ")  # named as printed
    assert "    # line 19: h = bp.tanh(x @ p[\"W1\"])\n" in source and "    # backward of line 21: " in source
    assert re.search(r"xp\.tanh\(\w+, out=\w+\) +# line 19 -> h\n", source)
    assert re.search(r"-> dW1\n", source)
    del bp.ops.core.PRIMITIVES["fragile"]

    model.broken["now"] = True
    with pytest.raises(RuntimeError, match="fragile broke") as info:
        step(XOR_X.astype(np.float64), XOR_Y.astype(np.float64))
    shown = "".join(traceback.format_exception(info.value))
    # the generated line that failed, with the user's line it comes from
    assert re.search(r'File "<bpmagic train_step \d+>", line \d+, in run\n    z = _f\d+\(\w+\) +# line 20\n', shown), \
        shown


def test_step_graph_is_named_as_on_a_run_and_the_old_name_warns():
    params = {"W": np.ones((2, 1))}
    step = bp.compile_step(lambda p, x, y: bp.mse(x @ p["W"], y), params, XOR_X, XOR_Y, backend="numpy")
    phases = {e.phase for e in step.step_graph.eqns}
    assert phases == {"forward", "backward", "update"}
    assert {e.phase for e in step.forward_graph.eqns} == {"forward"}
    with pytest.warns(DeprecationWarning, match="step_graph"):
        assert step.graph is step.step_graph or len(step.graph.eqns) == len(step.step_graph.eqns)
