"""Gradients checked against an independent implementation, on a learner's own code (bp.check_gradients and
%%backprop --check): JAX's autodiff of the same forward pass, and central differences. Every lab's cells agree
with both; a deliberately wrong custom VJP is caught and named, with its line; mistakes in the option are one
message."""
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import bpmagic as bp
from cells import XOR_CELL, backprop
from op_samples import SAMPLES

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.ipynb"))
ROW = re.compile(r"^\s+(\S+)\s+layer \S+\s+([0-9.e+-]+)\s+(ok|DIFFERS)$", re.M)


def wrong_cube():
    @bp.primitive
    def cube(xp, x):
        return x * x * x

    @cube.defvjp
    def _(g, out, x):
        return g * 3 * x  # the mistake: d(x³)/dx is 3x², not 3x

    return cube


@pytest.fixture
def cube():
    op = wrong_cube()
    yield op
    del bp.ops.core.PRIMITIVES["cube"]


@pytest.mark.parametrize("against", ["jax", "fd"])
def test_a_wrong_vjp_is_caught_and_named_through_the_api(cube, against):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 4)), "V": rng.standard_normal((4, 1))}
    x = rng.standard_normal((5, 3))

    def loss(p, x):
        return bp.mean(cube(bp.tanh(x @ p["W"])) @ p["V"])

    result = bp.check_gradients(loss, params, x, against=against, argnums=0)
    assert not result
    diffs = {name: diff for name, _, diff in result.rows}
    assert set(diffs) == {"W", "V"} and diffs["W"] > 0.01 and diffs["V"] < result.tolerance  # V is above the cube
    assert result.culprit.startswith("cube at line ") and "cube(bp.tanh(x @ p[\"W\"]))" in result.culprit
    assert "WARNING: the gradient of W differs" in repr(result)
    # and the right rule passes both checks
    ok = bp.check_gradients(lambda p, x: bp.mean(bp.tanh(x @ p["W"]) ** 3 @ p["V"]), params, x, against=against,
                            argnums=0)
    assert ok and ok.worst < ok.tolerance, repr(ok)


def test_the_cell_option_prints_the_table_and_warns(ip, ns, capsys, cube):
    ns["cube"] = cube
    cell = XOR_CELL.replace("h = tanh(x @ W1 + b1)", "h = cube(tanh(x @ W1 + b1))")
    for against in ("jax", "fd"):
        assert backprop(ip, f"--steps 2 --no-dashboard --reset --check {against}", cell).success
        out = capsys.readouterr().out
        rows = {name: flag for name, _, flag in ROW.findall(out)}
        assert rows == {"W1": "DIFFERS", "b1": "DIFFERS", "W2": "ok", "b2": "ok"}, out
        assert "The first equation whose VJP disagrees: cube at line 8: h = cube(tanh(x @ W1 + b1))" in out
    ns.pop("cube")


def test_mistakes_in_the_option_are_one_message(ip, ns, capsys):
    result = backprop(ip, "--steps 2 --no-dashboard --check torch")
    assert not result.success and "--check" in str(result.error_in_exec) and "jax" in str(result.error_in_exec)
    with pytest.raises(bp.BackpropError, match="PyTorch is not available yet"):
        bp.check_gradients(lambda x: bp.sum(x * x), np.ones(3), against="torch")


def test_a_primitive_jax_cannot_compute_is_one_message():
    @bp.primitive
    def clamp_in_place(xp, x):
        out = xp.array(x)
        out[out < 0] = 0  # in place: fine for NumPy, impossible for JAX arrays
        return out

    @clamp_in_place.defvjp
    def _(g, out, x):
        return g * (x > 0)

    try:
        with pytest.raises(bp.BackpropError, match=r"clamp_in_place could not be computed with JAX.*jax=.*'fd'"):
            bp.check_gradients(lambda x: bp.sum(clamp_in_place(x) ** 2), np.array([1.0, -2.0, 3.0]))
        assert bp.check_gradients(lambda x: bp.sum(clamp_in_place(x) ** 2), np.array([1.0, -2.0, 3.0]),
                                  against="fd")
    finally:
        del bp.ops.core.PRIMITIVES["clamp_in_place"]


def test_without_jax_the_message_points_to_fd(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_jax(name, *args, **kwargs):
        if name == "jax" or name.startswith("jax."):
            raise ImportError("no jax here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jax)
    with pytest.raises(bp.BackpropError, match=r"needs JAX.*against='fd'"):
        bp.check_gradients(lambda x: bp.sum(x * x), np.ones(3), against="jax")


@pytest.mark.parametrize("sample", [pytest.param(s, id=s.id) for s in SAMPLES])
def test_every_primitive_computes_the_same_lowered_to_jax(sample):
    """The JAX lowering --check jax differentiates: each primitive's `jax` facet (or its implementation over
    jax.numpy) gives bpmagic's values, on every op's samples (so the comparison of gradients is a fair one)."""
    import jax

    from bpmagic.check import _lowered
    from bpmagic.ops.evaluate import evaluate

    arrays = [sample.args[i] for i in sample.diff]
    flat = [x for a in arrays for x in (a if isinstance(a, list) else [a])]
    sizes = [len(a) if isinstance(a, list) else None for a in arrays]

    def fn(*xs):
        it, args = iter(xs), list(sample.args)
        for i, n in zip(sample.diff, sizes):
            args[i] = [next(it) for _ in range(n)] if n is not None else next(it)
        return sample.flat(lambda *a, **k: sample.op(*a, **k), *[args[i] for i in sample.diff])

    graph = bp.trace(fn, *flat)
    want = np.asarray(evaluate(graph, flat, np)[0])
    got = np.asarray(jax.jit(_lowered(graph, jax))(*flat))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=sample.id)


# central differences cannot resolve a 50-layer sigmoid net's gradients, which span 20 orders of magnitude from its
# last layer to its first (lab 09's point): there the reference is JAX alone
_NO_FD = {"09_depth_that_trains"}


@pytest.mark.slow
@pytest.mark.parametrize("against", ["jax", "fd"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_labs_cells_agree(path, against):
    """Each lab run as it is, with --check added to every %%backprop cell: every parameter's gradient agrees."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%backprop")]
    if not cells:
        pytest.skip(f"{path.stem} has no %%backprop cell")  # reported with its reason, not silently
    if against == "fd" and path.stem in _NO_FD:
        pytest.skip(f"{path.stem}: central differences cannot resolve a 50-layer net's vanishing gradients; "
                    "checked against JAX")
    for c in cells:
        first, _, rest = c.source.partition("\n")
        c.source = f"{first} --check {against}\n{rest}"
    NotebookClient(nb, kernel_name="backprop", timeout=300, startup_timeout=180,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    worst = 0.0
    for c in cells:
        out = "".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout")
        rows = ROW.findall(out)
        assert rows and all(flag == "ok" for _, _, flag in rows), out
        worst = max(worst, max(float(d) for _, d, _ in rows))
    print(f"{path.stem} --check {against}: {len(cells)} cell(s), largest relative difference {worst:.2e}")
    print(json.dumps({"lab": path.stem, "against": against, "worst": worst}))


# -- bp.check: the checks of a teacher's graded cells -----------------------------------------------------------------
def failed(check, *args, **kwargs) -> str:
    """The message a student reads when `check` fails (it is an AssertionError, so a grader counts a failure)."""
    with pytest.raises(bp.check.CheckFailed) as info:
        check(*args, **kwargs)
    assert isinstance(info.value, AssertionError)
    assert info.value._render_traceback_() == [f"✗ {info.value}"]  # IPython shows this, not our frames
    return str(info.value)


def test_check_gradient_names_the_entry_a_wrong_rule_gets_wrong(cube, capsys):
    xs = np.linspace(-2, 2, 9)
    message = failed(bp.check.gradient, lambda x: bp.sum(cube(x)), xs, name="cube")
    # 3x where 3x² is right: relative to the tolerance, x = -0.5 (entry 3) is the worst: -1.5 against 0.75
    assert message.startswith("The gradient of cube is wrong: for x[3] the backward pass gives -1.5, but nudging")
    assert "central differences, float64) gives 0.75." in message and "forgetting to multiply" in message

    @cube.defvjp
    def _(g, out, x):
        return g * 3 * x * x

    assert bp.check.gradient(lambda x: bp.sum(cube(x) * bp.sin(x)), xs, name="cube")
    assert capsys.readouterr().out == "✓ the gradient of cube: it agrees with central differences\n"
    assert bp.check.gradient(lambda x: bp.sum(cube(x) * bp.sin(x)), xs, order=2, name="cube")
    assert capsys.readouterr().out == "✓ the gradient of cube: its first and second order agree with central " \
                                      "differences\n"

    @cube.defvjp
    def _(g, out, x):  # right at first order, but not differentiable: computed on the raw array
        return g * 3 * np.asarray(getattr(x, "value", x)) ** 2

    message = failed(bp.check.gradient, lambda x: bp.sum(cube(x)), xs, order=2, name="cube")
    assert message.startswith("The gradient of cube is right, but its own gradient (second order) is not")


def test_check_close_says_what_is_wrong_with_a_students_value(capsys):
    passed = bp.check.close(2.0000000001, 2.0, name="dL_da")
    assert passed and capsys.readouterr().out == "✓ dL_da is right\n"
    from IPython.core.interactiveshell import InteractiveShell

    # a cell that ends with a check shows its ✓ line alone: no `Out: True` under it
    assert InteractiveShell.instance().display_formatter.format(passed) == ({}, {})
    assert failed(bp.check.close, 2.5, 2.0, name="dL_da", hint="a is used twice.") == \
        "dL_da is 2.5, but it should be 2 (to within 1e-06 of it). a is used twice."
    assert failed(bp.check.close, [1.0, 5.0, 3.0], [1.0, 2.0, 3.0], name="w") == \
        "w[1] is 5, but it should be 2 (to within 1e-06 of it)."
    assert failed(bp.check.close, np.ones((2, 3)), np.ones(3), name="h") == \
        "h has shape (2, 3), but it should have shape (3,)."
    assert failed(bp.check.close, None, 1.0, name="dL_db") == "dL_db should be a number, but it is None (NoneType)."
    assert failed(bp.check.close, float("nan"), 1.0, name="loss").startswith("loss is nan, but it should be 1")


def test_check_trained_reads_the_runs_history(ip, ns, capsys):
    backprop(ip, "--steps 300 --lr 0.5 --batch-size 4 --no-dashboard --name xor --seed 0", XOR_CELL)
    run = ns["xor"]
    assert bp.check.trained(run, loss_below=0.5)
    assert "✓ xor trained: mean loss of its last 10 steps" in capsys.readouterr().out
    message = failed(bp.check.trained, run, loss_below=1e-9)
    assert message.startswith(f"xor ended with a loss of {np.mean(run.history['loss'][-10:]):.4g} (the mean of its "
                              "last 10 steps), but it needs a loss below 1e-09. Train longer")
    backprop(ip, "--steps 30 --no-dashboard --name nan", "W: Param = ones(2, 1)\nx: Input = X\ny: Target = Y\n"
                                                           "loss: Loss = mse(sqrt(x @ W - 5), y)")
    assert failed(bp.check.trained, ns["nan"], loss_below=10) == (
        "nan did not train to the end: it failed at step 1, the loss or a gradient became non-finite. Fix that "
        "first, then run its cell again.")
