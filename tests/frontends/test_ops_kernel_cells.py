"""A learner's own models with the new layers, as %%backprop cells through a real kernel (nbclient), each training
to a stated loss drop: an attention block with a causal mask and layer_norm, and a CNN with batch_norm whose running
averages (Buffers) then classify held-out digits in evaluation mode."""
import json

import nbformat
from nbclient import NotebookClient

ATTENTION_SETUP = """\
%load_ext bpmagic
import numpy as np
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 6, 4)).astype(np.float32)
# the rule to learn: at each position, the mean of the sequence so far (only a causal model can see it)
Y = (np.cumsum(X, axis=1) / np.arange(1, 7)[:, None]).astype(np.float32)
"""

ATTENTION_CELL = """\
%%backprop --epochs 30 --lr 0.01 --optimizer adam --batch-size 32 --name attn --no-dashboard
Wq: Param = randn(4, 4) * 0.3
Wk: Param = randn(4, 4) * 0.3
Wv: Param = randn(4, 4) * 0.3
Wo: Param = randn(4, 4) * 0.3
g: Param = ones(4)
x: Input = X
y: Target = Y
h = scaled_dot_product_attention(x @ Wq, x @ Wk, x @ Wv, is_causal=True)
h = layer_norm(h) * g
loss: Loss = mse(h @ Wo, y)
"""

CNN_SETUP = """\
%load_ext bpmagic
import numpy as np
from sklearn.datasets import load_digits
digits = load_digits()
IMAGES = (digits.images[:512, None] / 16.0).astype(np.float32)   # (512, 1, 8, 8)
LABELS = digits.target[:512]
HELD_OUT = (digits.images[1024:, None] / 16.0).astype(np.float32), digits.target[1024:]
"""

CNN_CELL = """\
%%backprop --epochs 8 --lr 0.05 --optimizer momentum --batch-size 32 --name cnn --no-dashboard
W1: Param = randn(8, 1, 3, 3) * 0.3
g1: Param = ones(8)
b1: Param = zeros(8)
W2: Param = randn(128, 10) * 0.1
b2: Param = zeros(10)
mean1: Buffer = zeros(8)
var1: Buffer = ones(8)
x: Input = IMAGES
y: Target = LABELS
h, mean1, var1 = batch_norm(conv2d(x, W1, padding=1), g1, b1, mean1, var1)   # batch statistics while training
h = max_pool2d(relu(h), 2).reshape(-1, 128)
loss: Loss = cross_entropy(h @ W2 + b2, y)
"""

# evaluation: the running averages instead of a batch's statistics, on digits the model never saw
CNN_EVALUATION = """import bpmagic as bp
x, labels = HELD_OUT
h, _, _ = bp.batch_norm(bp.conv2d(x, W1, padding=1), g1, b1, mean1, var1, training=False)
logits = bp.max_pool2d(bp.relu(h), 2).reshape(-1, 128) @ W2 + b2
print(json.dumps({'accuracy': float((logits.argmax(axis=1) == labels).mean()),
                  'moved': float(np.abs(mean1).max()), 'status': cnn.status}))
"""

REPORT = ("import json\nprint(json.dumps({'first': float(np.mean({n}.history['loss'][:5])), "
          "'last': float(np.mean({n}.history['loss'][-5:])), 'status': {n}.status}))")


def _train(setup, cell, name, *more):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (setup, cell, REPORT.replace("{n}", name), *more)]
    NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=180).execute()
    return [json.loads(c.outputs[-1]["text"]) for c in nb.cells[2:]]


def test_causal_attention_block_with_layer_norm_trains():
    (r,) = _train(ATTENTION_SETUP, ATTENTION_CELL, "attn")
    print("attention block: mean loss of the first 5 steps -> last 5:", r)
    assert r["status"] == "finished"
    assert r["last"] < 0.3 * r["first"], r  # the loss drops by at least 70%


def test_cnn_with_batch_norm_trains_on_digits_and_evaluates_with_its_running_averages():
    r, held_out = _train(CNN_SETUP, CNN_CELL, "cnn", "import json\n" + CNN_EVALUATION)
    print("CNN with batch_norm: mean loss of the first 5 steps -> last 5:", r, "held out:", held_out)
    assert r["status"] == "finished"
    assert r["last"] < 0.3 * r["first"], r
    assert held_out["moved"] > 0.05 and held_out["accuracy"] > 0.8, held_out
