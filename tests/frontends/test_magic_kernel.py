"""%%backprop on a real kernel: a notebook run by nbclient (as Run All / papermill would), and a kernel interrupt
sent through jupyter_client while a cell is training."""
import json
import re
import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from cells import XOR_CELL
SETUP = ("%load_ext bpmagic\nimport numpy as np\nX = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)\n"
         "Y = np.array([[0], [1], [1], [0]], np.float32)")


def test_notebook_runs_top_to_bottom_with_nbclient():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("%%backprop --epochs 300 --lr 0.5 --batch-size 4 --name xor --no-dashboard\n"
                                  + XOR_CELL),
        nbformat.v4.new_code_cell("import json\nprint(json.dumps({'loss': xor.loss, 'status': xor.status,"
                                  " 'W1': W1.shape, 'steps': xor.steps_done}))"),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=180).execute()
    train_out = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "Trained 300 steps" in train_out
    result = json.loads(nb.cells[2].outputs[-1]["text"])
    assert result == {"loss": pytest.approx(result["loss"]), "status": "finished", "W1": [2, 8], "steps": 300}
    assert result["loss"] < 0.05


def execute(kc, code, timeout=180):
    """Run code on the kernel; returns (reply content, stdout text)."""
    msg_id = kc.execute(code)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return reply_to(kc, msg_id, timeout), "".join(out)


def reply_to(kc, msg_id, timeout=180):
    """The shell channel's reply to `msg_id` (an earlier request's reply, still queued, is not it)."""
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=180)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def test_interrupt_while_training_stops_at_a_step_boundary(kernel):
    km, kc = kernel
    execute(kc, SETUP)
    msg_id = kc.execute("%%backprop --steps 100000000 --lr 0.5 --batch-size 2 --no-dashboard\n" + XOR_CELL)
    deadline, printed = time.monotonic() + 180, ""
    while not re.search(r"step [1-9]", printed):  # until training has really started: it printed a step done
        assert time.monotonic() < deadline, f"training did not start: {printed!r}"
        printed += execute_probe(kc, km, msg_id)[1]
    km.interrupt_kernel()
    while True:
        msg = kc.get_shell_msg(timeout=180)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    reply, out = execute(kc, "import json\nsnap = {k: globals()[k].copy() for k in ('W1', 'b1', 'W2', 'b2')}\n"
                             "print(json.dumps({'status': _bp.status, 'why': _bp.ended_because, "
                             "'steps': _bp.steps_done}))")
    state = json.loads(out.strip().splitlines()[-1])
    assert state["status"] == "interrupted" and state["why"] == "interrupted" and state["steps"] > 0
    # training is deterministic: the same number of steps from the same seed gives the same parameters
    execute(kc, f"%%backprop --steps {state['steps']} --lr 0.5 --batch-size 2 --no-dashboard --reset\n" + XOR_CELL)
    reply, out = execute(kc, "print(all(np.array_equal(snap[k], globals()[k]) for k in snap))")
    assert out.strip() == "True"


def execute_probe(kc, km, msg_id):
    """Has the training cell printed progress yet? (reads IOPub for up to 0.5 s)"""
    try:
        msg = kc.get_iopub_msg(timeout=0.5)
    except Exception:
        return None, ""
    if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
        return None, msg["content"]["text"]
    return None, ""


# -- a learner's own cells, through a real kernel (issue 12) -----------------------------------------------------
RNN_SETUP = ("%load_ext bpmagic\nimport numpy as np\nrng = np.random.default_rng(0)\n"
             "S = rng.standard_normal((64, 6)).astype(np.float32)\nYsum = S.sum(axis=1, keepdims=True)\n"
             "X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)\n"
             "Y = np.array([[0], [1], [1], [0]], np.float32)")

# an unrolled RNN that sums a sequence; its first state is a constant made in the cell body
RNN_CELL = """\
Wx: Param = randn(1, 16) * 0.5
Wh: Param = randn(16, 16) * 0.1
b: Param = zeros(16)
Wo: Param = randn(16, 1) * 0.1
s: Input = S
y: Target = Ysum
h = zeros((s.shape[0], 16))
for t in range(s.shape[1]):
    h = tanh(s[:, t:t + 1] @ Wx + h @ Wh + b)
loss: Loss = mse(h @ Wo, y)
"""

# XOR written with NumPy's functions only
NUMPY_CELL = """\
W1: Param = randn(2, 8) * 0.5
b1: Param = zeros(8)
W2: Param = randn(8, 1) * 0.5
b2: Param = zeros(1)
x: Input = X
y: Target = Y
h = np.tanh(np.dot(x, W1) + b1)
z = np.matmul(np.maximum(h, -0.9), W2) + b2
p = np.clip(1 / (1 + np.exp(-z)), 1e-7, 1 - 1e-7)
loss: Loss = -np.mean(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1))
"""


@pytest.fixture(scope="module")
def learner_kernel():
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=180)
    reply, _ = execute(kc, RNN_SETUP)
    assert reply["status"] == "ok", reply
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def losses(kc, name):
    reply, out = execute(kc, f"import json\nprint(json.dumps([{name}.status, {name}.history['loss'][0], {name}.loss,"
                             f" sorted(str(v.dtype) for v in {name}.graph.inputs)]))")
    assert reply["status"] == "ok", reply
    return json.loads(out.strip().splitlines()[-1])


def test_kernel_trains_an_unrolled_rnn_whose_first_state_is_zeros(learner_kernel):
    reply, out = execute(learner_kernel, "%%backprop --steps 300 --lr 0.05 --optimizer adam --batch-size 32 "
                                         "--no-dashboard --name rnn\n" + RNN_CELL, timeout=180)
    assert reply["status"] == "ok", reply
    status, first, last, dtypes = losses(learner_kernel, "rnn")
    assert status == "finished" and "Trained 300 steps" in out
    assert last < 0.05 * first, (first, last)  # measured: 5.04 -> 0.005
    assert set(dtypes) == {"float32"}


def test_kernel_trains_a_cell_written_with_numpy_functions_only(learner_kernel):
    reply, out = execute(learner_kernel, "%%backprop --epochs 300 --lr 0.5 --batch-size 4 --no-dashboard "
                                         "--name npxor\n" + NUMPY_CELL, timeout=180)
    assert reply["status"] == "ok", reply
    status, first, last, _ = losses(learner_kernel, "npxor")
    assert status == "finished" and first > 0.6 and last < 0.05, (first, last)  # measured: 0.697 -> 0.018


def test_kernel_shows_a_typo_as_one_message_without_bpmagic_frames(learner_kernel):
    msg_id = learner_kernel.execute("%%backprop --steps 3 --no-dashboard\n" + NUMPY_CELL.replace("np.tanh(",
                                                                                                  "np.tanhh("))
    shown = []
    while True:
        msg = learner_kernel.get_iopub_msg(timeout=180)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] in ("stream", "error"):
            shown.append(json.dumps(msg["content"]))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = reply_to(learner_kernel, msg_id)
    assert reply["status"] == "error" and reply["ename"] == "UsageError", (reply, shown)
    assert reply["evalue"].startswith("line 8: AttributeError: module 'numpy' has no attribute 'tanhh'. "
                                      "Did you mean np.tanh?")
    text = "\n".join(shown) + json.dumps(reply)
    assert "bpmagic/" not in text and "Traceback" not in text, text
