"""grad / value_and_grad over pytrees and argnums, grad of grad, gradcheck, user-defined primitives."""
import re
import warnings

import numpy as np
import pytest

import bpmagic as bp


def loss(params, x):
    h = bp.tanh(x @ params["W"] + params["b"])
    return bp.mean(h ** 2)


@pytest.fixture
def setup():
    rng = np.random.default_rng(1)
    return {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}, rng.standard_normal((5, 3))


def test_grad_of_dict_has_the_same_structure(setup):
    params, x = setup
    g = bp.grad(loss)(params, x)
    assert set(g) == {"W", "b"} and g["W"].shape == (3, 2) and g["b"].shape == (2,)
    assert isinstance(g["W"], np.ndarray)


def test_value_and_grad_argnums_tuple_and_lists(setup):
    params, x = setup
    value, (gp, gx) = bp.value_and_grad(loss, argnums=(0, 1))(params, x)
    assert np.isclose(value, loss(params, x))
    assert gx.shape == x.shape
    g_list = bp.grad(lambda ws: bp.sum(ws[0] * ws[1]))([np.arange(3.0), np.ones(3)])
    assert isinstance(g_list, list) and np.allclose(g_list[0], 1) and np.allclose(g_list[1], np.arange(3.0))
    g_tuple = bp.grad(lambda ws: bp.sum(ws[0] * ws[1]))((np.arange(3.0), np.ones(3)))
    assert isinstance(g_tuple, tuple)


def test_grad_matches_jax(setup):
    jax = pytest.importorskip("jax", reason="jax[cpu] is the independent reference (pip install 'jax[cpu]')")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    params, x = setup

    def jloss(p, x):
        return jnp.mean(jnp.tanh(x @ p["W"] + p["b"]) ** 2)

    g, jg = bp.grad(loss)(params, x), jax.grad(jloss)(params, x)
    for k in params:
        np.testing.assert_allclose(g[k], jg[k], rtol=1e-12)


def test_grad_of_grad():
    x = np.array([0.3, -1.2, 2.0])
    f = lambda x: bp.sum(bp.tanh(x) ** 3)
    hess_diag = bp.grad(lambda x: bp.sum(bp.grad(f)(x)))(x)
    t = np.tanh(x)
    # d/dx [3 t^2 (1 - t^2)] = (6t - 12 t^3)(1 - t^2)
    np.testing.assert_allclose(hess_diag, (6 * t - 12 * t ** 3) * (1 - t ** 2), rtol=1e-12)
    third = bp.grad(lambda x: bp.sum(bp.grad(lambda x: bp.sum(bp.grad(f)(x)))(x)))(x)
    assert third.shape == x.shape and np.all(np.isfinite(third))


def test_grad_needs_scalar_and_float():
    with pytest.raises(bp.ShapeError, match=r"returns a scalar.*shape \(3,\)"):
        bp.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(bp.BackpropError, match="integers"):
        bp.grad(lambda x: bp.sum(x))(np.arange(3))


def test_grad_of_unused_argument_is_zero():
    g = bp.grad(lambda x, y: bp.sum(x * 2), argnums=1)(np.ones(2), np.ones(3))
    assert np.array_equal(g, np.zeros(3))


def test_has_aux():
    g, aux = bp.grad(lambda x: (bp.sum(x * x), x * 3), has_aux=True)(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g, [2.0, 4.0])
    np.testing.assert_allclose(aux, [3.0, 6.0])


def test_gradcheck_passes_and_reports(setup):
    params, x = setup
    result = bp.gradcheck(loss, params, x)
    assert result and "worst entry: params.W[" in repr(result) and "gradcheck passed" in repr(result)
    assert bp.gradcheck(loss, params, x, order=2)


def test_gradcheck_catches_a_wrong_vjp():
    @bp.primitive
    def cube(xp, x):
        return x ** 3

    @cube.defvjp
    def _(g, out, x):
        return g * 2 * x * x  # wrong: should be 3 x^2

    x = np.array([[0.5, -1.0], [2.0, 1.5]])
    result = bp.gradcheck(lambda x: bp.sum(cube(x)), x)
    assert not result
    report = repr(result)
    assert "gradcheck FAILED" in report and "analytic" in report and "numeric" in report
    assert "x[1, 0]" in report  # the worst single entry is the largest x


def test_user_primitive_is_registered_and_differentiable_twice():
    @bp.primitive
    def softsign(xp, x):
        return x / (1 + xp.abs(x))

    @softsign.defvjp
    def _(g, out, x):
        return g / bp.square(1 + bp.abs(x))

    from bpmagic.ops.core import PRIMITIVES

    assert PRIMITIVES["softsign"] is softsign
    x = np.array([0.3, -0.7, 1.9])
    assert bp.gradcheck(lambda x: bp.sum(softsign(x) ** 2), x)
    assert bp.gradcheck(lambda x: bp.sum(softsign(x) ** 2), x, order=2)
    assert "softsign(x)" in str(bp.trace(softsign, x))


def test_primitive_declared_without_gradient_passes_none():
    @bp.primitive(differentiable=False)
    def my_floor(xp, x):  # not named floor: a user primitive of a built-in's name replaces it in PRIMITIVES
        return xp.floor(x)

    g = bp.grad(lambda x: bp.sum(my_floor(x) + x))(np.array([1.5, 2.5]))
    np.testing.assert_allclose(g, [1.0, 1.0])


def test_primitive_that_forgot_its_vjp_is_refused_by_name():
    """A missing VJP must not pass for a zero gradient: the message names the op, the line and both ways out."""
    @bp.primitive
    def my_round(xp, x):
        return xp.round(x)

    from bpmagic.ops.core import PRIMITIVES

    try:
        x = np.array([1.2, 2.7])
        np.testing.assert_allclose(my_round(x), [1.0, 3.0])  # the forward pass is fine
        with pytest.raises(bp.BackpropError) as err:
            bp.grad(lambda x: bp.sum(my_round(x) * x))(x)
        msg = str(err.value)
        assert "my_round" in msg and "@my_round.defvjp" in msg and "differentiable=False" in msg
        assert msg.startswith("test_api.py, line "), msg
    finally:
        del PRIMITIVES["my_round"]  # the registry-wide checks cover built-ins and primitives that declare themselves


def test_eager_ops_work_on_plain_arrays():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    np.testing.assert_allclose(bp.relu(x), np.maximum(x, 0))
    np.testing.assert_allclose(bp.softmax(x).sum(-1), 1.0)
    with pytest.raises(bp.ShapeError, match=r"matmul of \(2, 2\) and \(3, 1\)"):
        bp.matmul(x, np.ones((3, 1)))


def test_the_random_op_is_random_uniform_and_its_old_name_warns():
    # the keyed op is random_uniform; `uniform` is the per-step draw of a cell's body (a Param's initialiser when
    # declared), and its old keyed call bp.uniform(key, shape) still answers, with a warning
    assert "random_uniform" in bp.ops.registry() and bp.ops.registry()["uniform"].__name__ == "uniform"
    with pytest.warns(DeprecationWarning, match="random_uniform"):
        old = bp.uniform(7, (3,))
    np.testing.assert_array_equal(old, bp.random_uniform(7, (3,)))


# -- a practitioner's mistakes (a helper tried the API as one would, coming from JAX and PyTorch) ----------------------
@pytest.mark.parametrize("returns, kwargs, said", [
    (lambda x: (bp.sum(x * x), x), {}, "grad needs a function that returns a scalar, but it returned a tuple of 2 "
                                       "(a scalar, an array (2,)); if it returns (loss, something else), pass "
                                       "has_aux=True"),
    (lambda x: {"l": bp.sum(x * x)}, {}, "grad needs a function that returns a scalar, but it returned a dict with "
                                         "keys 'l'"),
    (lambda x: bp.sum(x * x), {"has_aux": True}, "has_aux=True needs a function that returns a pair (loss, aux), "
                                                 "but it returned a scalar"),
], ids=["a tuple without has_aux", "a dict", "has_aux with a scalar"])
def test_grad_of_a_function_returning_more_than_a_scalar_is_refused_not_zero(returns, kwargs, said):
    """JAX refuses; bpmagic returned zeros for every gradient, silently (a tuple has no shape, so it passed for a
    scalar that does not depend on x)."""
    with pytest.raises(bp.BackpropError) as info:
        bp.grad(returns, **kwargs)(np.array([1.0, 2.0]))
    assert str(info.value) == said


def test_fit_with_a_loss_returning_a_tuple_says_so():
    X, Y = np.ones((8, 2)), np.ones((8, 1))
    with pytest.raises(bp.BackpropError, match=re.escape(
            "loss_fn must return the loss, a scalar, but it returned a tuple of 2 (a scalar, a scalar); with buffers "
            "it returns (loss, new_buffers)")):
        bp.fit(lambda p, x, y: (bp.mse(x @ p["W"], y), 1.0), {"W": np.zeros((2, 1))}, (X, Y), steps=2)


def test_a_blocking_fit_that_fails_midway_says_why(capsys):
    """It returned as if all went well: the reason was in run.error only."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((32, 3)), rng.standard_normal((32, 1))
    params = {"W": np.zeros((3, 1))}
    run = bp.fit(lambda p, x, y: bp.mse(x @ p["W"], y * 1e150), params, (X, Y), epochs=5, batch_size=8,
                 optimizer=bp.optim.SGD(lr=1e150), name="boom")
    assert run.status == "failed" and np.isfinite(params["W"]).all()
    err = capsys.readouterr().err
    assert err.startswith(f"boom: Training stopped after step {run.steps_done}: line ") and "produced inf" in err


def test_a_param_replaced_in_the_dict_after_compiling_is_the_one_trained_or_is_refused():
    """params["W"] = new after compile_step: the step went on training the old array, silently."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal((16, 1)).astype(np.float32)
    params = {"W": np.ones((3, 1), np.float32)}
    step = bp.compile_step(lambda p, x, y: bp.mse(x @ p["W"], y), params, X, Y, optimizer=bp.optim.SGD(lr=0.1),
                           backend="numpy")
    params["W"] = np.full((3, 1), 5.0, np.float32)  # before the first step too
    assert step(X, Y) == pytest.approx(float(((X.astype(np.float64) @ np.full((3, 1), 5.0) - Y) ** 2).mean()), rel=1e-6)
    params["W"] = np.zeros((3, 1), np.float32)
    assert step(X, Y) == pytest.approx(float((Y.astype(np.float64) ** 2).mean()), rel=1e-6)  # the loss at W = 0
    new = params["W"]  # the step's own array, holding the new values, trained from them on
    assert new.any() and step.params is params
    for wrong in (np.zeros((2, 1), np.float32), np.zeros((3, 1))):
        params["W"] = wrong
        with pytest.raises(bp.BackpropError, match=r"params\['W'\] was replaced by an array of shape .* but the step "
                                                   r"was compiled for \(3, 1\) float32 \(the old array is put back\)"):
            step(X, Y)
        assert params["W"] is new
    del params["W"]
    with pytest.raises(bp.BackpropError, match="'W' removed"):
        step(X, Y)
    assert params["W"] is new


def test_hyperparameters_that_would_make_every_update_nan_or_inf_are_refused_before_any_step():
    """An accumulator starting below 0 (its root is nan: the params were written nan while the message said they
    kept their values), and an lr whose update coefficient is past float32's largest number (cast to inf)."""
    with pytest.raises(ValueError, match=r"initial_accumulator_value must be a finite number >= 0, got -1.0"):
        bp.optim.Adagrad(lr=0.1, initial_accumulator_value=-1.0)
    X, Y = np.ones((8, 2), np.float32), np.ones((8, 1), np.float32)
    params = {"W": np.zeros((2, 1), np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # not NumPy's "overflow encountered in cast" either
        with pytest.raises(bp.BackpropError, match=re.escape(
                "the update's lr for W comes to 1e+40 at step 1 (from lr = 1e+39), beyond float32's largest number")):
            bp.compile_step(lambda p, x, y: bp.mse(x @ p["W"], y), params, X, Y, optimizer=bp.optim.Adam(lr=1e39),
                            backend="numpy")(X, Y)
    assert not params["W"].any()


@pytest.mark.parametrize("given, said", [
    ({"batch_size": 0}, "batch_size must be a whole number of at least 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be a whole number of at least 1, got 2.5"),
    ({"batch_size": True}, "batch_size must be a whole number of at least 1, got True"),
    ({"epochs": -1}, "epochs must be a whole number of at least 1, got -1"),
    ({"epochs": 2, "steps": 3}, "give epochs or steps, not both (epochs=2, steps=3)"),
    ({"seed": None}, "seed must be a whole number"),
    ({"optimizer": "adam"}, "optimizer must be a bpmagic optimizer, e.g. bp.optim.Adam(lr=1e-3)"),
    ({"groups": {"Q": "x"}}, "groups: 'Q' is not a parameter (they are 'W')"),
    ({"validation": "X"}, "validation must be arrays like data's, one for each of them: (X_val, Y_val)"),
    ({"validation": ("X2", "Y")}, "validation must be arrays like data's, one for each of them, each with the shape of "
                                  "its rows: got (16, 2), (16, 1) for data (16, 3), (16, 1)"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else "")
def test_fit_refuses_arguments_it_would_have_bent_or_failed_on_later(given, said):
    """batch_size 0, -1, True or 2.5 ran with 1 or 2; epochs=-1 "finished all 0 steps"; steps beside epochs won
    silently; a validation set of the wrong shape failed after a whole epoch had changed the params; a class or a
    string for the optimizer raised AttributeError from inside fit."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
    named = {"X": X, "X2": X[:, :2], "Y": Y}
    if "validation" in given:
        v = given["validation"]
        given = {"validation": named[v] if isinstance(v, str) else tuple(named[k] for k in v)}
    params = {"W": np.zeros((3, 1))}
    with pytest.raises(bp.BackpropError) as info:
        bp.fit(lambda p, x, y: bp.mse(x @ p["W"], y), params, (X, Y), **{"epochs": 1, **given} if "steps" not in given
               else given)
    assert str(info.value).startswith(said), info.value
    assert not params["W"].any()


def test_fit_takes_data_as_lists_and_metrics_as_one_name():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 3)), rng.integers(0, 2, 16)
    run = bp.fit(lambda p, x, y: bp.cross_entropy(x @ p["W"], y), {"W": np.zeros((3, 2))}, (X.tolist(), y.tolist()),
                 epochs=2, batch_size=8, metrics="accuracy")
    assert run.status == "finished" and len(run.history["accuracy"]) == 4


@pytest.mark.parametrize("params, said", [({"l1": {"W": np.zeros((2, 1))}}, "params['l1'] is a dict"),
                                          ({0: np.zeros((2, 1))}, "the key 0 is not a str")], ids=["nested", "int key"])
def test_params_that_are_not_a_flat_dict_of_named_arrays_are_said(params, said):
    """A flax-style nested dict got "indexing supports ints, slices ... (got str)" from inside the loss."""
    with pytest.raises(bp.BackpropError, match=re.escape(f"params must be a flat dict from names (str) to arrays, but "
                                                         f"{said}: flatten nested parameters into one dict")):
        bp.fit(lambda p, x, y: bp.mse(x @ p["l1"]["W"], y), params, (np.ones((8, 2)), np.ones((8, 1))), steps=1)


def test_argnums_counts_from_the_end_as_in_jax_and_is_checked():
    f = lambda a, b: bp.sum(a * b * b)  # noqa: E731
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_array_equal(bp.grad(f, argnums=-1)(a, b), 2 * a * b)
    with pytest.raises(bp.BackpropError, match=r"argnums must be an argument's position \(an int\) or a tuple of "
                                               r"them, got 1.0"):
        bp.grad(f, argnums=1.0)
    with pytest.raises(bp.BackpropError, match=r"argnums=-3 but the function got only 2 argument\(s\)"):
        bp.grad(f, argnums=-3)(a, b)


def test_a_step_called_with_another_number_of_batch_arrays_says_which_it_takes():
    X, Y = np.ones((8, 2)), np.ones((8, 1))
    step = bp.compile_step(lambda p, x, y: bp.mse(x @ p["W"], y), {"W": np.zeros((2, 1))}, X, Y, backend="numpy")
    with pytest.raises(bp.BackpropError, match=re.escape("the step takes 2 batch arrays (x, y), as it was compiled "
                                                         "with, but got 3")):
        step(X, Y, Y)


def test_files_that_are_not_checkpoints_and_a_loaded_run_are_said(tmp_path):
    """NumPy's "contains pickled data", a KeyError 'meta is not a file', a FileNotFoundError naming a hidden temp
    file, and AttributeErrors on None from a loaded run's resume() were what a user read."""
    (tmp_path / "notes.txt").write_text("hello")
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    for name, said in (("notes.txt", "is not a checkpoint (not a NumPy file)"),
                       ("plain.npz", "is not a checkpoint (a NumPy file without a run's record)")):
        with pytest.raises(bp.BackpropError, match=re.escape(said)):
            bp.Run.load(tmp_path / name)
    run = bp.fit(lambda p, x, y: bp.mse(x @ p["W"], y), {"W": np.zeros((2, 1))}, (np.ones((8, 2)), np.ones((8, 1))),
                 steps=2, name="small")
    with pytest.raises(bp.BackpropError, match="cannot save the run to .*: there is no folder .*nowhere"):
        run.save(tmp_path / "nowhere" / "run.npz")
    run.save(tmp_path / "run.npz")
    loaded = bp.Run.load(tmp_path / "run.npz")
    for method in (loaded.resume, loaded.pause, loaded.step_once):
        with pytest.raises(bp.BackpropError, match="small was loaded from a file: it has no steps to"):
            method()


def test_params_an_overflowing_update_made_inf_are_said_not_said_kept():
    """The guard checks the gradients: lr 3e38 times a finite gradient overflowed float32 in the update, and the next
    step's message said the parameters kept their values from before it (they were inf)."""
    X, Y = np.ones((8, 2), np.float32), np.ones((8, 1), np.float32)
    params = {"W": np.zeros((2, 1), np.float32)}
    step = bp.compile_step(lambda p, x, y: bp.mse(x @ p["W"], y), params, X, Y, optimizer=bp.optim.SGD(lr=3e38),
                           backend="numpy")
    step(X, Y)
    with pytest.raises(bp.NonFiniteError, match=re.escape(
            "step 2: W is not finite at the start of the step: the update of step 1 made it so")):
        step(X, Y)
    params = {"W": np.full((2, 1), np.nan, np.float32)}
    step = bp.compile_step(lambda p, x, y: bp.mse(x @ p["W"], y), params, X, Y, backend="numpy")
    with pytest.raises(bp.NonFiniteError, match="W holds values that are not finite before the first step"):
        step(X, Y)


def test_fit_takes_what_it_took_before_its_checks():
    """A reviewer's list: argnums as any sequence, epochs and batch_size as whole floats, one data array with one
    validation array."""
    f = lambda a, b: bp.sum(a * b * b)  # noqa: E731
    a = np.array([1.0, 2.0])
    assert len(bp.grad(f, argnums=range(2))(a, a)) == 2
    X = np.random.default_rng(0).standard_normal((8, 2))
    run = bp.fit(lambda p, x: bp.mean((x @ p["W"]) ** 2), {"W": np.ones((2, 1))}, X, validation=X[:3], epochs=2.0,
                 batch_size=4.0)
    assert run.status == "finished" and run.steps_done == 4 and len(run.history["val_loss"]) == 4


def test_a_validation_set_is_named_as_one_and_its_lengths_checked():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    Xv, yv = X[:6], np.array([0, 1, 2, 5, 1, 0])
    loss = lambda p, x, y: bp.cross_entropy(x @ p["W"], y)  # noqa: E731
    with pytest.raises(bp.BackpropError, match=re.escape("the validation set's y holds class 5 in row 3")):
        bp.fit(loss, {"W": np.zeros((4, 3))}, (X, y), validation=(Xv, yv), epochs=1)
    with pytest.raises(bp.BackpropError, match=re.escape("got (6, 4), (5,) for data (20, 4), (20,)")):
        bp.fit(loss, {"W": np.zeros((4, 3))}, (X, y), validation=(Xv, yv[:5]), epochs=1)
    with pytest.raises(bp.BackpropError, match=re.escape("validation[0] has no rows (shape (0, 4)): there is nothing "
                                                         "to validate on")):
        bp.fit(loss, {"W": np.zeros((4, 3))}, (X, y), validation=(X[:0], y[:0]), epochs=1)


def test_an_empty_file_and_a_loaded_runs_pace_are_said(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(bp.BackpropError, match="is not a checkpoint"):
        bp.Run.load(tmp_path / "empty.npz")
    run = bp.fit(lambda p, x, y: bp.mse(x @ p["W"], y), {"W": np.zeros((2, 1))}, (np.ones((8, 2)), np.ones((8, 1))),
                 steps=2, name="small")
    run.save(tmp_path / "run.npz")
    loaded = bp.Run.load(tmp_path / "run.npz")
    assert loaded.pace is None
    with pytest.raises(bp.BackpropError, match="small was loaded from a file"):
        loaded.pace = 3
