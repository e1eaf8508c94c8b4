"""ONNX export, checked by onnxruntime (an independent implementation of every ONNX operator):

  * every op of the registry, on every sample it declares, traced, exported and run by onnxruntime in float32:
    the same values as bpmagic's, or — for the few primitives without an ONNX counterpart (the VJPs' scatter and
    col2im, randomness) — one clear message naming the primitive;
  * labs 03, 06 and 07 (an MLP, a convnet, an embedding language model) trained through a real kernel, exported
    with `bp.export_onnx`, and run by onnxruntime on held-out inputs: the same outputs as bpmagic's forward pass to
    1e-5, the cell's names kept (W1, h, ...); `%%backprop --export` writes the same file after training.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import bpmagic as bp
from bpmagic.onnx_export import export_onnx
from op_samples import SAMPLES

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency (pip install -e '.[test]')")
onnx = pytest.importorskip("onnx", reason="onnx is a test dependency (pip install -e '.[test]')")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# primitives with no ONNX counterpart: the VJP of indexing (scatter_add) and of unfold (fold, col2im), and
# randomness; indexing with several integer arrays (NumPy's broadcasting rules) is not mapped either; ONNX has no
# solver or matrix decomposition (only Det, which slogdet uses), no nextafter, and only unsigned bit shifts
UNMAPPED = {"scatter_add", "fold", "random_uniform", "getitem", "solve", "cholesky", "eigvalsh", "eigh_vectors",
            "svdvals", "svd_u", "svd_vh", "qr_q", "qr_r", "pinv", "nextafter", "left_shift", "right_shift"}


def _f32(a):
    if isinstance(a, np.ndarray) and a.dtype == np.float64:
        return a.astype(np.float32)
    if isinstance(a, list):
        return [_f32(x) for x in a]
    return a


def _exported(sample, tmp_path):
    """(ONNX outputs, bpmagic outputs) for one sample in float32: its float arrays are the model's inputs."""
    args = [_f32(a) for a in sample.args]
    diff = sample.diff
    arrays = [args[i] for i in diff]

    def fn(*xs):
        full = list(args)
        for i, x in zip(diff, xs):
            full[i] = x
        out = sample.op(*full, **sample.kwargs)
        return list(out) if isinstance(out, (list, tuple)) else out

    flat = [x for a in arrays for x in (a if isinstance(a, list) else [a])]
    shapes = [len(a) if isinstance(a, list) else None for a in arrays]

    def flat_fn(*xs):
        it, grouped = iter(xs), []
        for n in shapes:
            grouped.append([next(it) for _ in range(n)] if n is not None else next(it))
        return fn(*grouped)

    graph = bp.trace(flat_fn, *flat)
    path = tmp_path / f"{sample.name}_{sample.index}.onnx"
    export_onnx(graph, path)
    session = ort.InferenceSession(str(path))
    feeds = {i.name: x for i, x in zip(session.get_inputs(), flat)}
    expected = flat_fn(*flat)
    expected = expected if isinstance(expected, list) else [expected]
    return session.run(None, feeds), [np.asarray(e) for e in expected]


@pytest.mark.parametrize("sample", [pytest.param(s, id=s.id) for s in SAMPLES])
def test_every_op_runs_in_onnxruntime_as_in_bpmagic(sample, tmp_path):
    try:
        got, want = _exported(sample, tmp_path)
    except bp.BackpropError as e:
        primitive = str(e).split(": ")[-1].split(" has no ONNX counterpart")[0].split()[-1]
        assert "has no ONNX counterpart" in str(e) and primitive in UNMAPPED, str(e)
        return
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5, err_msg=sample.id)


def test_unexportable_use_is_one_message_naming_the_line(tmp_path):
    x = np.arange(12.0).reshape(3, 4)

    def f(x):
        return bp.sum(x[np.array([0, 2]), np.array([1, 3])] ** 2)  # two index arrays: NumPy's rules, not mapped

    with pytest.raises(bp.BackpropError) as err:
        export_onnx(bp.trace(f, x), tmp_path / "pairs.onnx")
    msg = str(err.value)
    assert msg.startswith("test_onnx_export.py, line ") and "getitem has no ONNX counterpart" in msg
    assert "return bp.sum(x[np.array([0, 2]), np.array([1, 3])] ** 2)" in msg
    # a backward graph: indexing's VJP scatters, which ONNX has no operator for
    with pytest.raises(bp.BackpropError, match=r"scatter_add has no ONNX counterpart.*backward passes"):
        export_onnx(bp.trace(bp.grad(lambda x: bp.sum(x[1] ** 2)), x), tmp_path / "grad.onnx")


# -- the labs ---------------------------------------------------------------------------------------------------------
# appended to each lab: export its run (its batch axis symbolic), run the file with onnxruntime on held-out inputs
# at three batch sizes, compare with bpmagic
CHECK = """\
import json, numpy as np, onnx, onnxruntime as ort, bpmagic as bp
held = np.asarray({held_out})
model = bp.export_onnx({run}, "{path}")
session = ort.InferenceSession("{path}")
diffs, shapes = [], []
for n in (1, 10, 1000):
    X = np.resize(held, (n,) + held.shape[1:])
    got = session.run(None, {{session.get_inputs()[0].name: X}})[0]
    want = np.asarray({forward})
    diffs.append(float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)))
    shapes.append(list(got.shape))
print("ONNX", json.dumps({{"diffs": diffs, "shapes": shapes, "inputs": [i.name for i in session.get_inputs()],
    "batch": [i.shape[0] for i in session.get_inputs()], "outputs": [o.name for o in session.get_outputs()],
    "initializers": sorted(i.name for i in model.graph.initializer if not i.name.startswith("const_"))}}))
"""

LABS = {
    "03_xor_and_encoder": dict(run="encoder", params=["W1", "b1", "W2", "b2"], held_out="patterns[::-1].copy()",
                              # the encoder's own params: the lab's last exercise trains other W1, b1, ...
                              forward="bp.sigmoid(X @ encoder.params['W1'] + encoder.params['b1']) "
                                      "@ encoder.params['W2'] + encoder.params['b2']"),
    "06_convnet_digits": dict(run="cnn", params=["K1", "c1", "K2", "c2", "W3", "b3"], held_out="test_x[:100]", forward=(
        "bp.max_pool2d(bp.relu(bp.conv2d(bp.max_pool2d(bp.relu(bp.conv2d(X, K1, padding=1) + c1), 2), K2,"
        " padding=1) + c2), 2).reshape(len(X), 64) @ W3 + b3")),
    "07_char_language_model": dict(run="lm", params=["E", "W1", "b1", "W2", "b2"],
                                   held_out="np.random.default_rng(7).integers(0, V, (50, CONTEXT))",
                                   # lm's own params: the lab's clipping section trains other E, W1, ...
                                   forward="bp.tanh(bp.embedding(lm.params['E'], X).reshape(len(X), CONTEXT * 16) "
                                           "@ lm.params['W1'] + lm.params['b1']) @ lm.params['W2'] + lm.params['b2']"),
}


@pytest.mark.parametrize("stem", sorted(LABS))
def test_a_labs_trained_model_runs_in_onnxruntime(stem, tmp_path):
    nb = nbformat.read(EXAMPLES / f"{stem}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK.format(path=tmp_path / f"{stem}.onnx", **LABS[stem])))
    NotebookClient(nb, kernel_name="backprop", timeout=300, startup_timeout=180,
                   resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    result = json.loads(printed.split("ONNX ", 1)[1])
    print(stem, result)
    assert max(result["diffs"]) < 1e-5, result  # the same outputs as bpmagic at every batch size
    assert [shape[0] for shape in result["shapes"]] == [1, 10, 1000] and result["batch"] == ["batch"]
    # the cell's names: its Input, its Params as initializers; the logits, unnamed in the cell, are "output"
    assert result["inputs"] == ["x"] and result["outputs"] == ["output"]
    assert set(LABS[stem]["params"]) <= set(result["initializers"]), result


def test_backprop_export_option_writes_the_model_after_training(tmp_path):
    nb = nbformat.v4.new_notebook()
    path = tmp_path / "xor.onnx"
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%load_ext bpmagic\nimport numpy as np\nX = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)\n"
        "Y = np.array([[0], [1], [1], [0]], np.float32)",
        f"%%backprop --epochs 500 --lr 0.5 --batch-size 4 --no-dashboard --export {path}\n"
        "W1: Param = randn(2, 8) * 0.5\nb1: Param = zeros(8)\nW2: Param = randn(8, 1) * 0.5\nb2: Param = zeros(1)\n"
        "x: Input = X\ny: Target = Y\nh = tanh(x @ W1 + b1)\np = sigmoid(h @ W2 + b2)\n"
        "loss: Loss = binary_cross_entropy(p, y)",
        "import onnxruntime as ort, json\ns = ort.InferenceSession(%r)\n"
        "print('XOR', json.dumps([o.name for o in s.get_outputs()] + s.run(None, {'x': X})[0].ravel().tolist()))"
        % str(path)]]
    NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=180).execute()
    said = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert f"exported to {path}" in said, said
    name, *p = json.loads("".join(o.get("text", "") for o in nb.cells[2].outputs).split("XOR ", 1)[1])
    assert name == "p"  # the cell's own name for what the loss reads
    assert p[0] < 0.2 and p[1] > 0.8 and p[2] > 0.8 and p[3] < 0.2, p  # the trained XOR, outside bpmagic


def test_the_batch_axis_is_symbolic_unless_fixed_and_a_batch_dependent_number_is_one_message(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, 20, (64, 8)), rng.integers(0, 20, 64)
    params = {"E": rng.standard_normal((20, 4)).astype(np.float32),
              "W": rng.standard_normal((32, 20)).astype(np.float32) * 0.1}

    def rnn_like(p, x, y):  # a first state of zeros((batch, 32)) and a reshape to (batch, 32): both grow
        e = bp.embedding(p["E"], x)
        h = bp.tanh(e.reshape(e.shape[0], 32) + bp.zeros((x.shape[0], 32), np.float32))
        return bp.cross_entropy(h @ p["W"], y)

    run = bp.fit(rnn_like, params, (X, Y), steps=5, batch_size=16, backend="numpy")
    session = ort.InferenceSession(bp.export_onnx(run, tmp_path / "any.onnx").SerializeToString())
    assert session.get_inputs()[0].shape == ["batch", 8]
    for n in (1, 3, 500):
        x = rng.integers(0, 20, (n, 8))
        want = np.tanh(run.params["E"][x].reshape(n, 32)) @ run.params["W"]
        assert np.abs(session.run(None, {"x": x})[0] - want).max() < 1e-5
    fixed = ort.InferenceSession(bp.export_onnx(run, tmp_path / "fixed.onnx", batch_size=5).SerializeToString())
    assert fixed.get_inputs()[0].shape == [5, 8]

    def centred(p, x, y):  # a mean over the batch: its 1/N is a number of the graph
        h = x @ p["W"]
        return bp.mse(h - bp.mean(h, axis=0), y)

    run = bp.fit(centred, {"W": np.ones((2, 1), np.float32)}, (np.ones((8, 2), np.float32),
                                                                np.ones((8, 1), np.float32)), steps=2, backend="numpy")
    with pytest.raises(bp.BackpropError, match=r"changes with the batch size \(a mean over the batch\?\): export "
                                               r"with batch_size=N"):
        bp.export_onnx(run, tmp_path / "centred.onnx")
    assert bp.export_onnx(run, tmp_path / "centred.onnx", batch_size=8)
