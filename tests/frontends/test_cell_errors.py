"""Every mistake in a %%backprop cell is one UsageError naming the cell line and its code, never a traceback.

Cells run through IPython's InteractiveShell as a learner's would; what the user sees (the error, stdout, stderr)
must hold no frame from bpmagic's files. The Python API raises the same text as a BackpropError.
"""
import re

import numpy as np
import pytest

import bpmagic as bp
from cells import XOR_CELL, backprop


def mistake(ip, capsys, cell):
    """The message of the UsageError a cell raises, checking that nothing else reached the user."""
    result = backprop(ip, "--steps 3 --no-dashboard", cell)
    out = capsys.readouterr()
    error = result.error_in_exec
    assert error is not None and type(error).__name__ == "UsageError", (error, out)
    shown = out.out + out.err + str(error)
    assert "Traceback" not in shown and "bpmagic/" not in shown and 'File "' not in shown, shown
    return str(error)


def replace(old, new):
    assert old in XOR_CELL
    return XOR_CELL.replace(old, new)


# (cell, the start of the message, text it must contain)
MISTAKES = {
    "misspelt op": (replace("h = tanh(", "h = tanhh("),
                    "line 8: NameError: name 'tanhh' is not defined. Did you mean tanh?",
                    "\n    h = tanhh(x @ W1 + b1)"),
    "misspelt cell variable": (replace("sigmoid(h @", "sigmoid(hh @"),
                               "line 9: NameError: name 'hh' is not defined. Did you mean h?", "sigmoid(hh @ W2"),
    "misspelt notebook name": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 * scael + b1)"),
                               "line 8: NameError: name 'scael' is not defined. Did you mean scale?", "* scael"),
    "misspelt keyword": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(h @ W2 + b2) * softmax(h, axiss=1)[:, :1]"),
                         "line 9: TypeError: softmax() got an unexpected keyword argument 'axiss'. Did you mean axis?",
                         "softmax(h, axiss=1)"),
    "missing argument": (replace("binary_cross_entropy(p, y)", "binary_cross_entropy(p)"),
                         "line 10: TypeError: binary_cross_entropy() missing 1 required positional argument: 'y'",
                         "loss: Loss = binary_cross_entropy(p)"),
    "misspelt attribute": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1) * b1.sizee"),
                           "line 8: AttributeError: 'Tracer' object has no attribute 'sizee'. Did you mean size?",
                           "b1.sizee"),
    "misspelt tracer method": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(h @ W2 + b2).sqeeze()"),
                               "line 9: AttributeError: 'Tracer' object has no attribute 'sqeeze'. Did you mean "
                               "squeeze?", "sigmoid(h @ W2 + b2).sqeeze()"),
    "misspelt numpy function": (replace("h = tanh(", "h = np.tanhh("),
                                "line 8: AttributeError: module 'numpy' has no attribute 'tanhh'. Did you mean np.tanh?",
                                "np.tanhh(x @ W1 + b1)"),
    "index out of range": (replace("h = tanh(x @ W1 + b1)", "layers = [W1]\nh = tanh(x @ layers[1] + b1)"),
                           "line 9: IndexError: list index out of range", "layers[1]"),
    "zero division": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1) * (1 / (x.shape[1] - 2))"),
                      "line 8: ZeroDivisionError: division by zero", "(1 / (x.shape[1] - 2))"),
    "missing key": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1) * config['scael']"),
                    "line 8: KeyError: 'scael'", "config['scael']"),
    "bad broadcast": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(h @ W2 + b2 + x.T)"),
                      "line 9: add of (4, 1) and (2, 4): shapes do not broadcast", "h @ W2 + b2 + x.T"),
    "wrong matmul shapes": (replace("h = tanh(x @ W1 + b1)", "h = tanh(W1 @ x + b1)"),
                            "line 8: matmul of (2, 8) and (4, 2)", "W1 @ x"),
    "a NumPy function with no bpmagic op": (replace("h = tanh(x @ W1 + b1)", "h = np.unique(x @ W1 + b1)"),
                                            "line 8: np.unique has no bpmagic equivalent", "np.unique("),
    "out= given a value": (replace("h = tanh(x @ W1 + b1)", "h = np.tanh(x @ W1 + b1, out=buffer)"),
                           "line 8: np.tanh(..., out=...): a traced value cannot be written", "out=buffer"),
    "python if on a traced value": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(h @ W2 + b2)\nif p.max() > 0.5:\n"
                                            "    p = p * 0.5"), "line 10: Python `if`", "bp.where"),
    "float() of a traced value": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1) * float(b1.sum())"),
                                  "line 8: float() of a traced value", ""),
    "own assertion": (replace("h = tanh(x @ W1 + b1)", "assert x.shape[1] == 3, 'expected 3 features'\nh = tanh(x @ W1 + b1)"),
                      "line 8: AssertionError: expected 3 features", "assert x.shape[1] == 3"),
    "misspelt param initialiser": (replace("randn(2, 8)", "randnn(2, 8)"),
                                   "line 2: the initial value of W1: name 'randnn' is not defined; define it in an "
                                   "earlier cell. Did you mean randn?", "W1: Param = randnn(2, 8)"),
    "misspelt input": (replace("x: Input = X", "x: Input = X_trian"),
                       "line 6: x = X_trian: name 'X_trian' is not defined", "Did you mean X_train?"),
    # an op's own check of its arguments fails before it records anything: the line is found all the same
    "reshape that does not fit": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1).reshape(3, -1)"),
                                  "line 8: reshape of (4, 8) to (3, -1)", ".reshape(3, -1)"),
    "axis out of range": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(h @ W2 + b2) * softmax(h, axis=2)[:, :1]"),
                          "line 9: ", "axis 2 is out of range"),
    # NumPy runs first when handed a list of traced values: the line is the cell's, not NumPy's
    "a list handed to numpy": (replace("h = tanh(x @ W1 + b1)", "h = np.mean([tanh(x @ W1), b1], axis=0)"),
                               "line 8: a traced value", "np.mean([tanh(x @ W1), b1], axis=0)"),
    "misspelt annotation": (replace("b2: Param = zeros(1)", "b2: Parm = zeros(1)"),
                            "line 5: Parm is not an annotation of the cell. Did you mean Param?", "b2: Parm"),
    "wrong case": (replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ w1 + b1)"),
                   "line 8: NameError: name 'w1' is not defined. Did you mean W1?", "x @ w1"),
    "swapped letters": (replace("h = tanh(", "h = tahn("),
                        "line 8: NameError: name 'tahn' is not defined. Did you mean tanh?", "tahn("),
    "misspelt numpy keyword": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(np.sum(h @ W2, axis=1, keepdim=True))"),
                               "line 9: TypeError: sum() got an unexpected keyword argument 'keepdim'", "Did you mean keepdims?"),
    "python max of traced values": (replace("p = sigmoid(h @ W2 + b2)", "p = sigmoid(max(h @ W2, b2))"),
                                    "line 9: Python `if`", "np.maximum(a, b)"),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_each_mistake_is_one_message_naming_the_line(ip, ns, capsys, name):
    notebook = dict(scale=0.5, config={"scale": 0.5}, buffer=np.zeros((4, 8), np.float32), X_train=ns["X"])
    ns.update(notebook)
    cell, start, contains = MISTAKES[name]
    try:
        msg = mistake(ip, capsys, cell)
    finally:  # the shell is shared with test_magic.py
        for key in notebook:
            ns.pop(key)
    assert msg.startswith(start), msg
    assert contains in msg, msg


def test_numpy_habits_and_python_builtins_work_in_a_cell(ip, ns, capsys):
    """What a learner writes from NumPy and Python habit: builtins keep their meaning, NumPy's spellings trace."""
    cell = replace("p = sigmoid(h @ W2 + b2)", "\n".join([
        "hs = [h[:, :4], h[:, 4:]]",
        "z = sum(hs) + np.clip(h[:, :4], 0, None) + np.clip(h[:, 4:], max=0.5)",  # Python's sum of a list
        "k = max(2, min(3, len(hs)))",  # Python's max and min of numbers
        "mask = (z > -5) & ~(z > 5)",  # logical & and ~ on masks
        "z = np.where(mask, z, 0) * round(0.6) + np.reshape(z, (4, 4), order='F').T * 0",
        "flat = np.concatenate([z, z], axis=None)",
        "p = sigmoid(np.hstack([z, z])[:, :1] @ np.ones((1, 1)) + b2 + 0 * flat.mean() + 0 * np.linalg.norm(z))"]))
    result = backprop(ip, "--steps 20 --lr 0.5 --no-dashboard --reset", cell)
    out = capsys.readouterr()
    assert result.success, (result.error_in_exec, out.err)
    run = ns["_bp"]
    assert run.status == "finished" and np.isfinite(run.history["loss"]).all()
    assert run.history["loss"][-1] < run.history["loss"][0]


@pytest.mark.parametrize("mistake_in_it", ["a Python error", "an operation's shapes"])
def test_a_mistake_in_a_helper_from_an_earlier_cell_names_both_lines(ip, ns, capsys, mistake_in_it):
    """The helper's line as IPython's tracebacks name it (a kernel runs each cell from a file named by its hash:
    "2228612520.py, line 11" was all a learner read of a wrong matmul in a helper), and the cell's line calling it."""
    count = ip.execution_count
    if mistake_in_it == "a Python error":
        ip.run_cell("def block(v, W, b):\n    z = v @ W + b\n    return np.tanh(z) * gian", store_history=True)
        said, code = "NameError: name 'gian' is not defined", "return np.tanh(z) * gian"
    else:
        ip.run_cell("def block(v, W, b):\n    z = v @ W.T + b\n    return np.tanh(z)", store_history=True)
        said, code = "matmul of (4, 2) and (8, 2): inner sizes differ", "z = v @ W.T + b"
    msg = mistake(ip, capsys, replace("h = tanh(x @ W1 + b1)", "h = block(x, W1, b1)"))
    assert msg.startswith(f"cell In[{count}], line 2: in block(), called from line 8: {said}"
                          if mistake_in_it != "a Python error" else
                          f"cell In[{count}], line 3: in block(), called from line 8: {said}"), msg
    assert code in msg


def test_a_list_where_one_array_is_meant_says_what_to_write(ip, ns, capsys):
    msg = mistake(ip, capsys, replace("b1: Param = zeros(8)", "b1: Param = [0.0] * 8"))
    assert msg.startswith("line 8: TypeError: a list of 8 values where an array is needed: make one with "
                          "np.stack(...) (b1 is a list of 8 Params, one per entry"), msg
    assert "b1: Param = zeros(8)" in msg and "Tracer(" not in msg


def test_a_data_set_assigned_whole_is_pointed_at(ip, ns, capsys):
    """`x = X` for `x: Input = X`: the model meets all of X beside a batch of Y; the shapes' message alone pointed
    at a reshape."""
    ns.update(X8=np.repeat(ns["X"], 2, axis=0), Y8=np.repeat(ns["Y"], 2, axis=0))
    try:
        result = backprop(ip, "--steps 3 --batch-size 4 --no-dashboard",
                          replace("x: Input = X", "x = X8").replace("y: Target = Y", "y: Target = Y8"))
        msg = str(result.error_in_exec)
        capsys.readouterr()
    finally:
        ns.pop("X8"), ns.pop("Y8")
    assert msg.startswith("line 10: binary_cross_entropy of (8, 1) and (4, 1)"), msg
    assert msg.endswith("x = X8 (line 6) is the whole data set (8 rows) beside batches of the others: did you mean "
                        "`x: Input = X8` (or Target)?"), msg
    # not under other mistakes, nor for a name the cell declares itself (x, also an array of the notebook's here)
    ns["x"] = ns["X"]
    try:
        msg = mistake(ip, capsys, replace("h = tanh(x @ W1 + b1)", "z = x\nh = tanhh(z @ W1 + b1)"))
    finally:
        ns.pop("x")
    assert "whole data set" not in msg, msg


def test_a_param_the_loss_does_not_depend_on_is_said_and_none_is_refused(ip, ns, capsys):
    backprop(ip, "--steps 3 --no-dashboard", XOR_CELL.replace("b2: Param = zeros(1)", "b2: Param = zeros(1)\n"
                                                                "W3: Param = randn(8, 8)"))
    out = capsys.readouterr().out
    assert out.count("bpmagic: the loss does not depend on W3 (the gradient is 0 at every step, so it stays as "
                     "initialised): is it used in the model?") == 1, out
    assert ns["_bp"].status == "finished"
    msg = mistake(ip, capsys, replace("loss: Loss = binary_cross_entropy(p, y)", "loss: Loss = np.mean(y * 2.0)"))
    assert msg == "the loss does not depend on any parameter (W1, b1, W2, b2), so there is nothing to train: " \
                  "compute it from them", msg
    ns.pop("W3", None)


def test_a_buffer_the_cell_never_assigns_is_said(ip, ns, capsys):
    cell = replace("h = tanh(x @ W1 + b1)", "h = tanh(x @ W1 + b1)\nh2, m, v = batch_norm(h, g, c, mean1, var1)")
    cell = cell.replace("b2: Param = zeros(1)", "b2: Param = zeros(1)\ng: Param = ones(8)\nc: Param = zeros(8)\n"
                        "mean1: Buffer = zeros(8)\nvar1: Buffer = ones(8)")
    backprop(ip, "--steps 3 --no-dashboard --reset", cell)  # --reset: not another test's mean1 of the same shape
    out = capsys.readouterr().out
    assert "bpmagic: the Buffer mean1 is never assigned after line 8, so it never changes" in out, out
    assert "bpmagic: the Buffer var1 is never assigned after line 9" in out
    assert not ns["mean1"].any()
    backprop(ip, "--steps 3 --no-dashboard --reset", cell.replace("h2, m, v =", "h2, mean1, var1 ="))
    assert "Buffer" not in capsys.readouterr().out and ns["mean1"].any()
    for name in ("g", "c", "mean1", "var1"):
        ns.pop(name, None)


def test_a_mistake_does_not_lose_the_trained_params(ip, ns, capsys):
    backprop(ip, "--steps 200 --lr 0.5 --batch-size 4 --no-dashboard --reset")
    trained = {k: ns[k] for k in ("W1", "b1", "W2", "b2")}
    values = {k: v.copy() for k, v in trained.items()}
    last = ns["_bp"].loss
    mistake(ip, capsys, replace("h = tanh(", "h = tanhh("))
    for k in trained:
        assert ns[k] is trained[k] and np.array_equal(ns[k], values[k])
    backprop(ip, "--steps 5 --lr 0.5 --batch-size 4 --no-dashboard")  # fixed: training continues from there
    assert ns["_bp"].history["loss"][0] == pytest.approx(last, rel=0.05)


def test_a_mistake_that_shows_only_in_a_later_batch_ends_training_with_one_message(ip, ns, capsys):
    # 4 examples in batches of 3: the last batch has 1 example, and this cell only works for 3
    cell = replace("h = tanh(x @ W1 + b1)", "assert x.shape[0] == 3, 'batches of 3'\nh = tanh(x @ W1 + b1)")
    result = backprop(ip, "--epochs 3 --batch-size 3 --no-dashboard", cell)
    out = capsys.readouterr()
    assert result.success
    run = ns["_bp"]
    assert run.status == "failed" and run.steps_done == 1
    assert "Training stopped after step 1: line 8: AssertionError: batches of 3" in out.err
    assert "_bp: failed at step 2, an error  ·  epoch 1/3" in out.out  # the error once, on a line of its own
    assert "batches of 3" not in out.out
    assert "Traceback" not in out.out + out.err and "bpmagic/" not in out.out + out.err
    assert all(np.isfinite(ns[k]).all() for k in ("W1", "b1", "W2", "b2"))


@pytest.mark.parametrize("case", ["no rows", "a nan in row 2", "an empty validation set", "an inf in validation"])
def test_data_no_run_can_train_on_is_refused_before_any_step(ip, ns, capsys, case):
    """No rows (a ZeroDivisionError from our loop) or a value that is not finite (the guard blamed the first
    operation it met, at whichever step drew that row) in the data or the validation set: one message naming it."""
    ns.update(X_good=ns["X"].copy(), Y_good=ns["Y"].copy())
    options = ""
    if case == "no rows":
        ns.update(X=ns["X"][:0], Y=ns["Y"][:0])
        start = "line 6: x = X has no rows (shape (0, 2)): there is nothing to train on"
    elif case == "a nan in row 2":
        ns["X"] = ns["X"].copy()
        ns["X"][2, 1] = np.nan
        start = "line 6: x = X holds nan in row 2: a step on a batch with it gives a nan loss whatever the model"
    elif case == "an empty validation set":
        ns.update(Xv=ns["X"][:0], Yv=ns["Y"][:0])
        options, start = "--validate Xv Yv", "--validate Xv Yv: Xv has no rows (shape (0, 2)): there is nothing to validate on"
    else:
        ns.update(Xv=ns["X"].copy(), Yv=ns["Y"].copy())
        ns["Yv"][1:3] = np.inf
        options, start = "--validate Xv Yv", "--validate Xv Yv: Yv holds inf in row 1 (and 1 more row)"
    try:
        result = backprop(ip, f"--steps 3 --no-dashboard {options}", XOR_CELL)
        out = capsys.readouterr()
        assert type(result.error_in_exec).__name__ == "UsageError"
        assert str(result.error_in_exec).startswith(start), result.error_in_exec
        assert "Traceback" not in out.out + out.err and "W1" not in ns
    finally:
        ns.update(X=ns.pop("X_good"), Y=ns.pop("Y_good"))
        ns.pop("Xv", None), ns.pop("Yv", None)


@pytest.mark.parametrize("where", ["cell", "api"])
def test_a_class_number_out_of_range_in_a_later_batch_is_refused_before_any_step(ip, ns, capsys, where):
    """cross_entropy checks the classes it sees while tracing, the first batch's: a class of 7 among 3 in a later
    batch was scored as no class at all (its row's one-hot mask all zero), and the run trained on silently."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    y[45] = 7
    start = "y holds class 7 in row 45, but cross_entropy's logits have 3 classes: class numbers must be 0 to 2."
    if where == "api":
        params = {"W": np.zeros((4, 3), np.float32)}
        with pytest.raises(bp.BackpropError, match=re.escape(start)):
            bp.fit(lambda p, x, y: bp.cross_entropy(x @ p["W"], y), params, (X, y), epochs=1, batch_size=10)
        assert not params["W"].any()
        return
    ns.update(Xc=X, yc=y)
    try:
        result = backprop(ip, "--epochs 1 --batch-size 10 --no-dashboard --reset --name lbl",
                          "Wc: Param = randn(4, 3) * 0.1\nx: Input = Xc\ny: Target = yc\n"
                          "loss: Loss = cross_entropy(x @ Wc, y)\n")
        capsys.readouterr()
        assert str(result.error_in_exec).startswith(start), result.error_in_exec
        assert "Give the model 8 outputs, or number the classes from 0" in str(result.error_in_exec)
    finally:
        for name in ("Xc", "yc", "Wc", "lbl"):
            ns.pop(name, None)


# -- the Python API: the same text, as a BackpropError ---------------------------------------------------------------
def test_the_api_raises_the_same_text_as_a_backprop_error():
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((2, 8)).astype(np.float32), "W2": rng.standard_normal((8, 1)).astype(np.float32)}
    X = rng.standard_normal((4, 2)).astype(np.float32)
    Y = rng.standard_normal((4, 1)).astype(np.float32)

    def loss_fn(p, x, y):
        h = bp.tanh(x @ p["W1"])
        return bp.mse(hh @ p["W2"], y)  # noqa: F821  (the mistake under test)

    line = loss_fn.__code__.co_firstlineno + 2
    texts = []
    for call in (lambda: bp.grad(loss_fn)(params, X, Y),
                 lambda: bp.compile_step(loss_fn, params, X, Y, backend="numpy"),
                 lambda: bp.fit(loss_fn, params, (X, Y), steps=2, backend="numpy")):
        with pytest.raises(bp.BackpropError) as info:
            call()
        texts.append(str(info.value))
        assert isinstance(info.value.original, NameError)
    assert texts[0] == texts[1] == texts[2]
    assert texts[0] == (f"test_cell_errors.py, line {line}: NameError: name 'hh' is not defined. Did you mean h?\n"
                        "    return bp.mse(hh @ p[\"W2\"], y)  # noqa: F821  (the mistake under test)")


def test_an_assertion_inside_bpmagic_is_a_bug_and_is_not_disguised():
    from bpmagic.errors import call_user

    def internal():
        assert False, "internal invariant"

    internal.__code__ = internal.__code__.replace(co_filename=bp.__file__)
    with pytest.raises(AssertionError, match="internal invariant"):
        call_user(internal)


# -- outside %%backprop: what IPython shows for a mistake in an ordinary cell --------------------------------------
PLAIN_MISTAKES = {
    "a shape mistake in an op": ("bp.matmul(np.ones((2, 3)), np.ones((4, 1)))",
                                 ["line 1: bp.matmul(np.ones((2, 3)), np.ones((4, 1)))",
                                  "ShapeError: matmul of (2, 3) and (4, 1): inner sizes differ (3 vs 4)"]),
    "a mistake inside bp.grad": ("bp.grad(lambda w: bp.sum(np.ones((2, 3)) @ w))(np.ones(4))",
                                 ["ShapeError: line 1: matmul of (2, 3) and (4,): inner sizes differ (3 vs 4)"]),
    "an unfinished primitive": ("@bp.primitive\ndef cube(xp, x):\n    raise NotImplementedError()\n\ncube(np.ones(3))",
                                ["line 5: cube(np.ones(3))", "BackpropError: line 3: NotImplementedError",
                                 "    raise NotImplementedError()"]),
}


@pytest.mark.parametrize("name", PLAIN_MISTAKES)
def test_a_mistake_in_an_ordinary_cell_shows_the_users_line_and_the_message_only(ip, ns, capsys, name):
    cell, expected = PLAIN_MISTAKES[name]
    ip.run_cell("import bpmagic as bp")
    capsys.readouterr()
    result = ip.run_cell(cell)
    shown = capsys.readouterr()
    assert isinstance(result.error_in_exec, bp.BackpropError), shown
    text = shown.out + shown.err
    assert "Traceback" not in text and "bpmagic/" not in text and 'File "' not in text, text
    for part in expected:
        assert part in text, text
    bp.ops.core.PRIMITIVES.pop("cube", None)
