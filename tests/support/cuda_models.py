"""Models beyond the labs for the CUDA checks (tests/cuda/test_cuda_compile.py, tests/support/cuda_probe.py): each factory
returns (loss_fn, params, batch, optimizer factory), small enough to compile and take a few steps in a second."""
from __future__ import annotations

import numpy as np

import bpmagic as bp


def _rng():
    return np.random.default_rng(0)


def mlp(dtype=np.float32):
    """The README's model: tanh MLP, mean squared error, SGD with momentum."""
    rng = _rng()
    x = rng.standard_normal((16, 5)).astype(dtype)
    y = rng.standard_normal((16, 2)).astype(dtype)
    params = {"W1": (rng.standard_normal((5, 8)) * 0.5).astype(dtype), "b1": np.zeros(8, dtype),
              "W2": (rng.standard_normal((8, 2)) * 0.5).astype(dtype), "b2": np.zeros(2, dtype)}

    def loss_fn(p, x, y):
        h = bp.tanh(x @ p["W1"] + p["b1"])
        return bp.mse(h @ p["W2"] + p["b2"], y)

    return loss_fn, params, (x, y), lambda: bp.optim.SGD(lr=0.1, momentum=0.9)


def attention():
    """A causal self-attention block with layer_norm (float32), Adam."""
    rng = _rng()
    x = rng.standard_normal((8, 6, 4)).astype(np.float32)
    y = (np.cumsum(x, axis=1) / np.arange(1, 7)[:, None]).astype(np.float32)
    params = {n: (rng.standard_normal((4, 4)) * 0.3).astype(np.float32) for n in ("Wq", "Wk", "Wv", "Wo")}
    params["g"] = np.ones(4, np.float32)

    def loss_fn(p, x, y):
        h = bp.scaled_dot_product_attention(x @ p["Wq"], x @ p["Wk"], x @ p["Wv"], is_causal=True)
        return bp.mse(bp.layer_norm(h) * p["g"] @ p["Wo"], y)

    return loss_fn, params, (x, y), lambda: bp.optim.Adam(lr=0.01)


def activations():
    """Every activation in one network (float32), cross-entropy, Adam."""
    rng = _rng()
    x = rng.standard_normal((16, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 16)
    params = {f"W{i}": (rng.standard_normal((6, 6)) * 0.4).astype(np.float32) for i in range(1, 9)}
    params["Wout"] = (rng.standard_normal((6, 3)) * 0.4).astype(np.float32)
    layers = [bp.relu, bp.gelu, bp.silu, bp.softplus, bp.elu, bp.leaky_relu, bp.selu, bp.hard_tanh]

    def loss_fn(p, x, labels):
        h = x
        for i, f in enumerate(layers, 1):
            h = f(h @ p[f"W{i}"]) + bp.sigmoid(h) * 0.1
        return bp.cross_entropy(h @ p["Wout"], labels)

    return loss_fn, params, (x, labels), lambda: bp.optim.Adam(lr=0.01)


def convnet():
    """conv2d, batch_norm-free: relu, max_pool2d, a dense layer (float32), SGD."""
    rng = _rng()
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 8)
    params = {"W1": (rng.standard_normal((4, 1, 3, 3)) * 0.3).astype(np.float32), "b1": np.zeros(4, np.float32),
              "W2": (rng.standard_normal((64, 10)) * 0.1).astype(np.float32), "b2": np.zeros(10, np.float32)}

    def loss_fn(p, x, labels):
        h = bp.relu(bp.conv2d(x, p["W1"], padding=1) + p["b1"].reshape(1, 4, 1, 1))
        h = bp.max_pool2d(h, 2)
        return bp.cross_entropy(h.reshape(h.shape[0], -1) @ p["W2"] + p["b2"], labels)

    return loss_fn, params, (x, labels), lambda: bp.optim.SGD(lr=0.05)


def rnn64():
    """A float64 recurrent network over 5 time steps, tanh cells, Adam."""
    rng = _rng()
    x = rng.standard_normal((4, 5, 3))
    y = rng.standard_normal((4, 2))
    params = {"Wx": rng.standard_normal((3, 6)) * 0.4, "Wh": rng.standard_normal((6, 6)) * 0.4,
              "b": np.zeros(6), "Wy": rng.standard_normal((6, 2)) * 0.4}

    def loss_fn(p, x, y):
        h = bp.zeros((x.shape[0], 6))
        for t in range(x.shape[1]):
            h = bp.tanh(x[:, t] @ p["Wx"] + h @ p["Wh"] + p["b"])
        return bp.mse(h @ p["Wy"], y)

    return loss_fn, params, (x, y), lambda: bp.optim.Adam(lr=0.01)


MODELS = {"mlp": mlp, "attention": attention, "activations": activations, "convnet": convnet, "rnn64": rnn64}
STEP_MODELS = {"mlp": mlp, "attention": attention}  # also run on CuPy's real kernel objects (tests/support/cuda_probe.py)
