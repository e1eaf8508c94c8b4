#!/usr/bin/env python3
"""Time ONE training step, fp32, of four MLPs and an unrolled RNN: bpmagic against hand-written NumPy, JAX jit and
PyTorch eager, side by side in one process.

    ./dev bench                          # all sizes, ~1-2 minutes on 2 CPU cores
    ./dev bench --quick --sizes xor      # a smoke test (a few seconds)
    ./dev bench --json bench/results/cpu.json
    python bench/run.py --backend cupy   # on a GPU machine: bpmagic on CuPy, hand-written CuPy, torch on cuda

The sizes (plain SGD, random data from a fixed seed):
    xor     batch 4,   layers 2-8-1,          tanh hidden, MSE loss
    digits  batch 64,  layers 64-128-10,      relu hidden, softmax cross-entropy with integer labels
    mnist128  batch 64, layers 784-128-10,    relu hidden, cross-entropy (an MNIST-sized input, a small net)
    mnist   batch 512, layers 784-1024-1024-10, relu hidden, cross-entropy
    rnnT    a tanh RNN unrolled over T = 10, 50, 200 steps, batch 16, 8 inputs -> 32 hidden, MSE of a linear
            read-out of the last state (no hand-written version: the ratio is against JAX jit)

The implementations:
    bpmagic  bp.compile_step(loss_fn, params, X, Y, optimizer=bp.optim.SGD(lr), backend=...); we time step(X, Y)
    hand     the same step written by hand in NumPy (or CuPy): forward, manual backward, W -= lr * gW,
             returns float(loss); written plainly, without buffer reuse or other tricks
    jax      jax.jit of the whole step (jax.value_and_grad, then the SGD update), params as a dict; returns
             float(loss); the first call (trace + XLA compile) is timed separately, as is bpmagic's first step
             (trace + compile + one step)
    jax+guard  the same jitted step that keeps its params when a gradient is not finite, as bpmagic's step does (the
             gradients' sum checked, then a select in the update): the least a guard costs under XLA (bpmagic's own
             step graph compiled by XLA, whose guard sums the gradients' squares, measured 7-10% over JAX jit at
             mnist: issue #32). Shown beside the others; not one of the peers the targets compare with
    torch    PyTorch eager: plain tensors with requires_grad (no nn.Module), loss.backward(), SGD under
             torch.no_grad(), grads reset with `.grad = None`, returns loss.item(); default thread count
    products the MLP step's matrix products alone, NumPy into arrays made once, timed in the same rounds (not a
             step, not a peer): the floor a NumPy step stands on, each step shown as a ratio over it
    gemm     the machine's fp32 GEMM peak (NumPy's BLAS, and torch's when installed, on 2048x2048 squares): mnist's
             step is GEMM-bound, and its FLOPs per second are shown as a share of that peak

Before timing, all are run for 3 steps from identical parameters and must agree on every loss and every final
parameter to fp32 tolerance (1e-4 relative); otherwise the script prints what differs and exits 1.

Timing: warm-up, then rounds; each round runs a block of n steps of every implementation (the order rotates from
round to round), so machine noise hits all of them alike. A round's per-step time is its block time / n; we report
the median over rounds. A ratio is the median of the rounds' own ratios (both implementations ran moments apart in
the same round), shown with the 95 % confidence interval of that median; a target inside it is "within noise". The
garbage collector is off inside blocks (as timeit does), for every implementation.

Note: this machine may set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (for older OpenBLAS builds). They are left as they
are on purpose; they may slow NumPy (and so both bpmagic and the hand-written baseline) somewhat. The header of
the output prints them when set.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

LR = 0.01
SEED = 1234
CHECK_STEPS = 3
RTOL = 1e-4

SIZES = {
    "xor": {"batch": 4, "layers": [2, 8, 1], "act": "tanh", "loss": "mse"},
    "digits": {"batch": 64, "layers": [64, 128, 10], "act": "relu", "loss": "cross_entropy"},
    "mnist128": {"batch": 64, "layers": [784, 128, 10], "act": "relu", "loss": "cross_entropy"},
    "mnist": {"batch": 512, "layers": [784, 1024, 1024, 10], "act": "relu", "loss": "cross_entropy"},
    **{f"rnn{T}": {"batch": 16, "layers": [8, 32, 1], "rnn_steps": T, "act": "tanh", "loss": "mse"}
       for T in (10, 50, 200)},
}
# seconds of timed work per size in a full run (rounds x n steps x all implementations), and rounds
BUDGET = {"xor": 15.0, "digits": 15.0, "mnist128": 15.0, "mnist": 45.0, "rnn10": 10.0, "rnn50": 15.0, "rnn200": 30.0}
ROUNDS = 30
MIN_ROUNDS = 10   # when a size runs past twice its budget, stop after this many rounds
QUICK_BUDGET, QUICK_ROUNDS = 0.4, 5

# targets stated in the issue (#32), checked against the CPU run (NumPy backend)
TARGET_OVER_FASTEST = 1.0     # bpmagic time / the fastest peer's (hand, jax, torch) <= 1.0 at every MLP size
TARGET_OVER_JAX_RNN = 1.0     # bpmagic time / JAX jit's <= 1.0 for the RNN at T = 50 and 200 ...
TARGET_FIRST_OVER_JAX = 0.2   # ... while bpmagic's first step takes <= 0.2x JAX's first call
RNN_TARGET_SIZES = ("rnn50", "rnn200")
TARGET_GEMM_SHARE = 0.8       # at mnist (GEMM-bound): >= 80% of the machine's fp32 GEMM peak

IMPLS = ("bpmagic", "hand", "jax", "jax_guarded", "torch")
PEERS = ("hand", "jax", "torch")
FLOOR = "products"  # the MLP step's matrix products alone (ProductsImpl): timed in the rounds, not a step


# ---------------------------------------------------------------------------------------------------------------------
# problem set-up (always in NumPy on the host; each implementation copies onto its own device)

def make_problem(name):
    cfg = SIZES[name]
    rng = np.random.default_rng(SEED)
    sizes = cfg["layers"]
    if "rnn_steps" in cfg:
        (n_in, hidden, n_out), T, batch = sizes, cfg["rnn_steps"], cfg["batch"]
        params = {"Wx": rng.standard_normal((n_in, hidden)) / np.sqrt(n_in),
                  "Wh": rng.standard_normal((hidden, hidden)) * (0.9 / np.sqrt(hidden)),
                  "b": 0.1 * rng.standard_normal(hidden), "Wo": rng.standard_normal((hidden, n_out)) / np.sqrt(hidden)}
        params = {k: v.astype(np.float32) for k, v in params.items()}
        X = rng.standard_normal((T, batch, n_in)).astype(np.float32)
        Y = rng.standard_normal((batch, n_out)).astype(np.float32)
        return cfg, params, X, Y
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        params[f"W{i}"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(1.0 / fan_in)).astype(np.float32)
        params[f"b{i}"] = (0.1 * rng.standard_normal(fan_out)).astype(np.float32)
    X = rng.standard_normal((cfg["batch"], sizes[0])).astype(np.float32)
    if cfg["loss"] == "mse":
        Y = rng.standard_normal((cfg["batch"], sizes[-1])).astype(np.float32)
    else:
        Y = rng.integers(0, sizes[-1], size=cfg["batch"]).astype(np.int64)
    return cfg, params, X, Y


# ---------------------------------------------------------------------------------------------------------------------
# (a) bpmagic

def loss_fn_of(cfg, lib="bpmagic"):
    """The size's loss as code of `lib` ("bpmagic" or "jax"): loss_fn(params, x, y)."""
    if lib == "jax":  # the same code over jax.numpy's ops
        import jax
        import jax.numpy as jnp

        bp = SimpleNamespace(tanh=jnp.tanh, relu=jax.nn.relu, mse=lambda p, y: jnp.mean((p - y) ** 2),
                             cross_entropy=lambda z, y: -jnp.mean(jnp.take_along_axis(
                                 jax.nn.log_softmax(z, axis=1), y[:, None], axis=1)))
    else:
        import bpmagic as bp
    if "rnn_steps" in cfg:
        def rnn_loss(p, x, y):
            h = bp.tanh(x[0] @ p["Wx"] + p["b"])
            for t in range(1, cfg["rnn_steps"]):
                h = bp.tanh(x[t] @ p["Wx"] + h @ p["Wh"] + p["b"])
            return bp.mse(h @ p["Wo"], y)
        return rnn_loss
    n_layers = len(cfg["layers"]) - 1
    act = bp.tanh if cfg["act"] == "tanh" else bp.relu
    loss = bp.mse if cfg["loss"] == "mse" else bp.cross_entropy

    def loss_fn(p, x, y):
        h = x
        for i in range(1, n_layers + 1):
            h = h @ p[f"W{i}"] + p[f"b{i}"]
            if i < n_layers:
                h = act(h)
        return loss(h, y)

    return loss_fn


class BpmagicImpl:
    def __init__(self, cfg, params, X, Y, backend, **options):
        import bpmagic as bp

        loss_fn = loss_fn_of(cfg)
        self.xp = _xp(backend)
        # host (NumPy) copies: compile_step moves them to the backend's device once and keeps them in step.params.
        # (Handing it CuPy arrays directly trips `p.flags.writeable` in CompiledStep.__init__: CuPy's flags have no
        # `writeable`; reported separately.) The batch goes onto the device here, once, outside the timed steps.
        self.params = {k: v.copy() for k, v in params.items()}
        self.X, self.Y = self.xp.asarray(X), self.xp.asarray(Y)
        self.step = bp.compile_step(loss_fn, self.params, self.X, self.Y, optimizer=bp.optim.SGD(lr=LR),
                                    backend=backend, **options)  # options: cuda_graph, matmul_precision

    def __call__(self):
        return self.step(self.X, self.Y)

    def get_params(self):
        return {k: _to_numpy(v) for k, v in self.step.params.items()}


# ---------------------------------------------------------------------------------------------------------------------
# (b) hand-written NumPy / CuPy

class HandImpl:
    def __init__(self, cfg, params, X, Y, backend):
        xp = self.xp = _xp(backend)
        self.n_layers = len(cfg["layers"]) - 1
        self.W = [xp.asarray(params[f"W{i}"].copy()) for i in range(1, self.n_layers + 1)]
        self.b = [xp.asarray(params[f"b{i}"].copy()) for i in range(1, self.n_layers + 1)]
        self.X, self.Y = xp.asarray(X), xp.asarray(Y)
        self.rows = xp.arange(X.shape[0])
        self.tanh = cfg["act"] == "tanh"
        self.mse = cfg["loss"] == "mse"

    def __call__(self):
        xp, W, b, L = self.xp, self.W, self.b, self.n_layers
        X, Y = self.X, self.Y
        # forward: keep every layer's input (for the weight gradients) and activation (for the derivative)
        hs = [X]
        h = X
        for i in range(L):
            z = h @ W[i] + b[i]
            if i < L - 1:
                h = xp.tanh(z) if self.tanh else xp.maximum(z, 0)
                hs.append(h)
            else:
                out = z
        # loss and its gradient w.r.t. the output
        if self.mse:
            diff = out - Y
            loss = (diff * diff).mean()
            d = diff * (2.0 / diff.size)
        else:
            z = out - out.max(axis=1, keepdims=True)
            e = xp.exp(z)
            s = e.sum(axis=1, keepdims=True)
            loss = xp.log(s[:, 0]).mean() - z[self.rows, Y].mean()
            d = e / s
            d[self.rows, Y] -= 1.0
            d /= X.shape[0]
        # backward
        gW, gb = [None] * L, [None] * L
        for i in range(L - 1, -1, -1):
            gW[i] = hs[i].T @ d
            gb[i] = d.sum(axis=0)
            if i > 0:
                d = d @ W[i].T
                if self.tanh:
                    d *= 1.0 - hs[i] * hs[i]
                else:
                    d *= hs[i] > 0
        # SGD, in place
        for i in range(L):
            W[i] -= LR * gW[i]
            b[i] -= LR * gb[i]
        return float(loss)

    def get_params(self):
        out = {}
        for i in range(self.n_layers):
            out[f"W{i + 1}"] = _to_numpy(self.W[i])
            out[f"b{i + 1}"] = _to_numpy(self.b[i])
        return out


class ProductsImpl:
    """Only the step's matrix products, NumPy into arrays made once: forward, then each layer's input gradient (not
    the first's) and weight gradient, the shapes the step multiplies, nothing else. Not a step and not a peer: the
    floor a NumPy step stands on (bpmagic and hand NumPy run these same products, plus their elementwise passes)."""

    def __init__(self, cfg, X):
        rng = np.random.default_rng(SEED)
        sizes, batch = cfg["layers"], cfg["batch"]
        self.X = X
        self.W = [(rng.standard_normal((i, o)) / np.sqrt(i)).astype(np.float32) for i, o in zip(sizes[:-1], sizes[1:])]
        self.h = [np.empty((batch, o), np.float32) for o in sizes[1:]]  # each layer's output, and its gradient
        self.d = [np.ones((batch, o), np.float32) for o in sizes[1:]]
        self.gW = [np.empty_like(W) for W in self.W]

    def __call__(self):
        W, h, d, gW = self.W, self.h, self.d, self.gW
        inputs = [self.X, *h[:-1]]
        for i in range(len(W)):
            np.dot(inputs[i], W[i], h[i])
        for i in range(len(W) - 1, -1, -1):
            if i > 0:
                np.dot(d[i], W[i].T, d[i - 1])
            np.dot(inputs[i].T, d[i], gW[i])
        return 0.0


# ---------------------------------------------------------------------------------------------------------------------
# (c) JAX jit

class JaxImpl:
    def __init__(self, cfg, params, X, Y, backend, guarded=False):
        import jax
        import jax.numpy as jnp

        loss_fn = loss_fn_of(cfg, "jax")

        def step(p, x, y):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            if not guarded:
                return {k: p[k] - LR * g[k] for k in p}, loss
            finite = jnp.isfinite(sum(jnp.sum(v) for v in g.values()))  # bpmagic's check: the gradients' sum
            return {k: jnp.where(finite, p[k] - LR * g[k], p[k]) for k in p}, loss

        device = jax.devices("gpu" if backend == "cupy" else "cpu")[0]
        self.params = jax.device_put({k: v.copy() for k, v in params.items()}, device)
        self.X, self.Y = jax.device_put(X, device), jax.device_put(Y, device)
        self.step = jax.jit(step, donate_argnums=0)

    def __call__(self):
        self.params, loss = self.step(self.params, self.X, self.Y)
        return float(loss)

    def get_params(self):
        return {k: np.asarray(v).copy() for k, v in self.params.items()}


# ---------------------------------------------------------------------------------------------------------------------
# (d) PyTorch eager

class TorchImpl:
    def __init__(self, cfg, params, X, Y, device):
        import torch
        import torch.nn.functional as F

        self.torch = torch
        self.n_layers = len(cfg["layers"]) - 1
        self.names = list(params)
        self.p = {k: torch.tensor(v.copy(), device=device).requires_grad_(True) for k, v in params.items()}
        self.plist = list(self.p.values())
        self.X = torch.tensor(X, device=device)
        self.Y = torch.tensor(Y, device=device)
        self.act = torch.tanh if cfg["act"] == "tanh" else torch.relu
        self.loss = F.mse_loss if cfg["loss"] == "mse" else F.cross_entropy
        self.rnn_steps = cfg.get("rnn_steps")

    def forward_loss(self):
        p, L = self.p, self.n_layers
        if self.rnn_steps:
            h = self.act(self.X[0] @ p["Wx"] + p["b"])
            for t in range(1, self.rnn_steps):
                h = self.act(self.X[t] @ p["Wx"] + h @ p["Wh"] + p["b"])
            return self.loss(h @ p["Wo"], self.Y)
        h = self.X
        for i in range(1, L + 1):
            h = h @ p[f"W{i}"] + p[f"b{i}"]
            if i < L:
                h = self.act(h)
        return self.loss(h, self.Y)

    def __call__(self):
        torch = self.torch
        loss = self.forward_loss()
        loss.backward()
        with torch.no_grad():
            for q in self.plist:
                q.add_(q.grad, alpha=-LR)   # q -= LR * q.grad
                q.grad = None
        return loss.item()

    def get_params(self):
        return {k: v.detach().cpu().numpy().copy() for k, v in self.p.items()}


# ---------------------------------------------------------------------------------------------------------------------
# helpers

def _xp(backend):
    if backend == "cupy":
        import cupy
        return cupy
    return np


def _to_numpy(a):
    if isinstance(a, np.ndarray):
        return a.copy()
    return a.get()  # cupy


def jax_status(backend):
    """(usable, a description)."""
    try:
        import jax
    except ModuleNotFoundError:
        return False, "not installed"
    kind = "gpu" if backend == "cupy" else "cpu"
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        return False, f"jax {jax.__version__} has no {kind} device here"
    return True, f"jax {jax.__version__} jit on {devices[0].platform}"


def build_impls(cfg, params, X, Y, backend, torch_device, use_jax):
    """The implementations, each with its own copy of the same initial parameters, and each one's first call
    (bpmagic: trace + compile + one step; JAX: trace + XLA compile + one step; others: one step) in seconds."""
    makers = {"bpmagic": lambda: BpmagicImpl(cfg, params, X, Y, backend)}
    if "rnn_steps" not in cfg:
        makers["hand"] = lambda: HandImpl(cfg, params, X, Y, backend)
        if backend == "numpy":
            makers[FLOOR] = lambda: ProductsImpl(cfg, X)
    if use_jax:
        makers["jax"] = lambda: JaxImpl(cfg, params, X, Y, backend)
        makers["jax_guarded"] = lambda: JaxImpl(cfg, params, X, Y, backend, guarded=True)
    if torch_device:
        makers["torch"] = lambda: TorchImpl(cfg, params, X, Y, torch_device)
    impls, first = {}, {}
    for k, make in makers.items():
        t0 = time.perf_counter()
        impls[k] = make()
        impls[k]()
        first[k] = time.perf_counter() - t0
    return impls, first


def gemm_peak(backend, torch_device, n=2048, seconds=1.0):
    """{library: best fp32 FLOP/s} of an n x n x n matmul (NumPy's BLAS, torch's on the CPU)."""
    if backend != "numpy":
        return {}
    a, b = (np.random.default_rng(0).standard_normal((n, n)).astype(np.float32) for _ in range(2))
    libs = {"numpy": lambda: a @ b}
    if torch_device == "cpu":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        libs["torch"] = lambda: ta @ tb
    peak = {}
    for name, mm in libs.items():
        mm()
        best, end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            mm()
            best = min(best, time.perf_counter() - t0)
        peak[name] = 2 * n ** 3 / best
    return peak


def step_flops(cfg):
    """Multiply-adds of the MLP step's GEMMs x 2: forward, and two GEMMs per layer backward (the first layer's
    input gradient is not needed)."""
    sizes, b = cfg["layers"], cfg["batch"]
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return 2 * b * (3 * sum(i * o for i, o in pairs) - sizes[0] * sizes[1])


def make_sync(backend, torch_device):
    fns = []
    if backend == "cupy":
        import cupy
        fns.append(lambda: cupy.cuda.get_current_stream().synchronize())
    if torch_device == "cuda":
        import torch
        fns.append(torch.cuda.synchronize)

    def sync():
        for f in fns:
            f()
    return sync


def torch_status(backend):
    """(device or None, a description)."""
    try:
        import torch
    except ModuleNotFoundError:
        return None, "not installed"
    except Exception as e:  # a broken install (a missing shared library, ...)
        return None, f"not usable ({type(e).__name__}: {e})"
    if backend == "cupy":
        if torch.cuda.is_available():
            return "cuda", f"torch {torch.__version__} on cuda ({torch.cuda.get_device_name(0)})"
        return "cpu", f"torch {torch.__version__} on CPU (torch has no CUDA here), {torch.get_num_threads()} threads"
    return "cpu", f"torch {torch.__version__} on CPU, {torch.get_num_threads()} threads"


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: d.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "architecture")}
            for d in threadpool_info()]


def fmt_time(s):
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


# ---------------------------------------------------------------------------------------------------------------------
# correctness check

def check_agreement(name, impls):
    """Run CHECK_STEPS steps of each implementation from the same start; return a list of problems (empty = ok)."""
    impls = {k: impl for k, impl in impls.items() if k != FLOOR}  # no loss, no parameters to agree on
    losses = {k: [] for k in impls}
    for k, impl in impls.items():
        try:
            for _ in range(CHECK_STEPS):
                losses[k].append(float(impl()))
        except Exception:
            print(f"\nerror: {name}: {k} crashed at step {len(losses[k]) + 1} of the agreement check", file=sys.stderr)
            raise
    params = {k: impl.get_params() for k, impl in impls.items()}
    problems = []
    ref = "hand" if "hand" in impls else "jax" if "jax" in impls else "bpmagic"
    for k in impls:
        if k == ref:
            continue
        for s, (a, b) in enumerate(zip(losses[k], losses[ref]), 1):
            if not (np.isfinite(a) and abs(a - b) <= RTOL * max(abs(b), 1e-6)):
                problems.append(f"{name}: step {s} loss {k}={a!r} vs {ref}={b!r} (rel diff "
                                f"{abs(a - b) / max(abs(b), 1e-12):.2e})")
        for pname, pref in params[ref].items():
            got = params[k].get(pname)
            if got is None or got.shape != pref.shape:
                problems.append(f"{name}: param {pname} missing or misshapen in {k}")
                continue
            scale = float(np.max(np.abs(pref))) or 1.0
            err = float(np.max(np.abs(got.astype(np.float64) - pref.astype(np.float64))))
            if not np.isfinite(err) or err > RTOL * scale:
                problems.append(f"{name}: after {CHECK_STEPS} steps param {pname}: max |{k} - {ref}| = {err:.3e} "
                                f"> {RTOL:g} * max|{pname}| = {RTOL * scale:.3e}")
    return losses, problems


# ---------------------------------------------------------------------------------------------------------------------
# timing

def time_size(name, impls, sync, budget, rounds, warmup_s):
    keys = list(impls)
    # warm-up: run each until warmup_s has passed (and at least 3 steps), measuring a rough per-step time
    rough = {}
    for k in keys:
        fn = impls[k]
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            sync()
            el = time.perf_counter() - t0
            if n >= 3 and el >= warmup_s:
                break
        rough[k] = el / n
    n = max(1, int(budget / (rounds * sum(rough.values()))))
    samples = {k: [] for k in keys}
    gc_was_enabled = gc.isenabled()
    t_start = time.perf_counter()
    try:
        for r in range(rounds):
            # the warm-up estimate can be far off on a busy machine: stop early rather than run far over budget
            if r >= min(rounds, MIN_ROUNDS) and time.perf_counter() - t_start > 2 * budget:
                break
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for k in order:
                fn = impls[k]
                gc.collect()
                gc.disable()
                sync()
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                sync()
                t1 = time.perf_counter()
                if gc_was_enabled:
                    gc.enable()
                samples[k].append((t1 - t0) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return n, samples


def paired_ratio(samples, a, b):
    """(median, [low, high]) of a's time over b's, round by round, [low, high] the 95 % confidence interval of that
    median: both ran in the same round, moments apart, so a round in which the machine was slow slows both and its
    ratio still holds (a ratio of the medians mixes rounds: on a VM whose second core changes speed from second to
    second, it moved by ±10 % between runs)."""
    ratios = sorted(x / y for x, y in zip(samples[a], samples[b], strict=True))
    return statistics.median(ratios), median_interval(ratios)


def median_interval(ordered, z=1.96):
    """The distribution-free 95 % confidence interval of the median of `ordered` (sorted) values: the order
    statistics n/2 -+ z sqrt(n)/2 (the binomial count of values below the median). It narrows as rounds are added, so
    more rounds can settle a verdict that fewer left "within noise"."""
    n = len(ordered)
    k = max(0, math.floor(n / 2 - z * math.sqrt(n) / 2))
    return [ordered[k], ordered[min(n - 1, n - 1 - k)]]


def sure(interval, target) -> str:
    """"met" when the median's whole confidence interval is within the target, "missed" when it is all past it,
    else "within noise": this run cannot say."""
    return "met" if interval[1] <= target else "missed" if interval[0] > target else "within noise"


def quantiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


# ---------------------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few iterations (a smoke test; figures are rough)")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of: " + ", ".join(SIZES))
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                    help="numpy (CPU; default) or cupy (GPU: bpmagic on CuPy, hand-written CuPy, torch on cuda)")
    ap.add_argument("--rounds", type=int, default=None, help=f"timing rounds per size (default {ROUNDS})")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the time budget per size by this")
    args = ap.parse_args(argv)

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        ap.error(f"unknown size(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SIZES)}")
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    warmup_s = 0.05 if args.quick else 0.5

    backend = args.backend
    if backend == "cupy":
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("CuPy sees no GPU")
        except Exception as e:
            print(f"error: --backend cupy needs CuPy and a GPU: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
    torch_device, torch_desc = torch_status(backend)
    sync = make_sync(backend, torch_device)
    use_jax, jax_desc = jax_status(backend)
    hand_label = "hand-written CuPy" if backend == "cupy" else "hand-written NumPy"
    labels = {"bpmagic": f"bpmagic ({backend})", "hand": hand_label, "jax": "JAX jit", "jax_guarded": "JAX jit+guard",
              FLOOR: "its products alone (NumPy)",
              "torch": f"torch eager ({torch_device})" if torch_device else "torch eager"}

    # -- header ---------------------------------------------------------------------------------------------------
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.processor() or platform.machine(),
        "backend": backend,
        "torch": torch_desc,
        "jax": jax_desc,
        "blas": blas_info(),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith("OPENBLAS") or k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "lr": LR, "seed": SEED, "dtype": "float32", "quick": args.quick, "rounds": rounds,
    }
    try:
        import bpmagic
        meta["bpmagic"] = getattr(bpmagic, "__version__", "?")
    except Exception as e:
        print(f"error: cannot import bpmagic: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if backend == "cupy":
        import cupy
        meta["cupy"] = cupy.__version__
        props = cupy.cuda.runtime.getDeviceProperties(0)
        meta["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    print(f"bpmagic benchmark: one fp32 SGD training step (lr={LR}), backend={backend}"
          + ("  [--quick: rough figures]" if args.quick else ""))
    print(f"  python {meta['python']}, numpy {meta['numpy']}, bpmagic {meta['bpmagic']}, "
          f"{meta['cpu_count']} CPUs ({meta['cpus_usable']} usable), {meta['platform']}")
    if meta["blas"] is not None:
        for d in meta["blas"]:
            print(f"  threadpool: {d['internal_api']} {d['version']} ({d['user_api']}), {d['num_threads']} threads"
                  + (f", {d['architecture']}" if d.get("architecture") else ""))
    else:
        print("  BLAS threads: (threadpoolctl not installed; skipped)")
    if meta["env"]:
        print("  env: " + " ".join(f"{k}={v}" for k, v in sorted(meta["env"].items()))
              + "   (left as set; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may slow NumPy)")
    print(f"  torch: {torch_desc}")
    print(f"  jax: {jax_desc}")
    meta["gemm_peak_flops"] = gemm_peak(backend, torch_device, seconds=0.2 if args.quick else 1.0)
    for lib, flops in meta["gemm_peak_flops"].items():
        print(f"  fp32 GEMM peak, 2048x2048 squares: {flops / 1e9:.1f} GFLOP/s ({lib})")
    if meta["loadavg_start"] is not None:
        print("  load average at start: " + ", ".join(f"{x:.2f}" for x in meta["loadavg_start"]))
        if meta["loadavg_start"][0] > 0.5 * (meta["cpus_usable"] or meta["cpu_count"] or 1):
            print("  WARNING: the machine is busy. Interleaving spreads the noise over all implementations, but "
                  "multi-threaded\n  code (BLAS at mnist, torch's OpenMP pool at every size) can slow down far more "
                  "than the rest when cores are\n  oversubscribed: treat these figures, torch's above all, as rough.")
    if backend == "cupy":
        print(f"  cupy {meta['cupy']}, GPU: {meta['gpu']}")

    # -- per size ---------------------------------------------------------------------------------------------------
    results = {}
    failed = []
    for name in sizes:
        cfg, params, X, Y = make_problem(name)
        t_start = time.perf_counter()

        try:
            impls, _ = build_impls(cfg, params, X, Y, backend, torch_device, use_jax)
            losses, problems = check_agreement(name, impls)
        except Exception:
            print(f"\nerror: {name}: an implementation crashed while being built or checked:", file=sys.stderr)
            traceback.print_exc()
            failed.append(name)
            continue
        if problems:
            print(f"\nerror: {name}: the implementations disagree after {CHECK_STEPS} steps "
                  f"(tolerance {RTOL:g} relative):", file=sys.stderr)
            for p in problems:
                print("  " + p, file=sys.stderr)
            print("  losses: " + "; ".join(f"{k}={v}" for k, v in losses.items()), file=sys.stderr)
            failed.append(name)
            continue
        print(f"  {name}: agreement check ok ({CHECK_STEPS} steps, losses "
              + ", ".join(f"{x:.6g}" for x in next(iter(losses.values()))) + ")", flush=True)

        impls, first = build_impls(cfg, params, X, Y, backend, torch_device, use_jax)  # fresh, from the same start
        budget = (QUICK_BUDGET if args.quick else BUDGET[name]) * args.scale
        n, samples = time_size(name, impls, sync, budget, rounds, warmup_s)
        med = {}
        res = {"config": {**cfg, "params": int(sum(p.size for p in params.values()))},
               "steps_per_block": n, "rounds": len(samples["bpmagic"]), "median_s": {}, "p25_s": {}, "p75_s": {},
               "min_s": {}, "samples_s": {}, "first_call_s": first}
        for k, xs in samples.items():
            lo, m, hi = quantiles(xs)
            med[k] = m
            res["median_s"][k], res["p25_s"][k], res["p75_s"][k], res["min_s"][k] = m, lo, hi, min(xs)
            res["samples_s"][k] = xs
        res["unavailable"] = {**({} if torch_device else {"torch": torch_desc}),
                              **({} if use_jax else {"jax": jax_desc})}
        peers = {k: med[k] for k in PEERS if k in med}
        fastest = min(peers, key=peers.get)
        res["fastest_peer"] = fastest
        res["ratio_over_fastest"], res["ratio_over_fastest_ci"] = paired_ratio(samples, "bpmagic", fastest)
        if "rnn_steps" not in cfg:
            res["target_over_fastest_max"] = TARGET_OVER_FASTEST
            res["pass_over_fastest"] = res["ratio_over_fastest"] <= TARGET_OVER_FASTEST
            res["sure_over_fastest"] = sure(res["ratio_over_fastest_ci"], TARGET_OVER_FASTEST)
        if "jax" in med:
            res["ratio_over_jax"], res["ratio_over_jax_ci"] = paired_ratio(samples, "bpmagic", "jax")
            res["first_call_over_jax"] = first["bpmagic"] / first["jax"]
            res["ratio_over_jax_guarded"] = paired_ratio(samples, "bpmagic", "jax_guarded")[0]
            if name in RNN_TARGET_SIZES:
                res["pass_over_jax"] = res["ratio_over_jax"] <= TARGET_OVER_JAX_RNN
                res["sure_over_jax"] = sure(res["ratio_over_jax_ci"], TARGET_OVER_JAX_RNN)
                res["pass_first_call_over_jax"] = res["first_call_over_jax"] <= TARGET_FIRST_OVER_JAX
        if FLOOR in med:  # how far above the floor of its own matrix products each step runs
            res["ratio_over_products"] = {k: paired_ratio(samples, k, FLOOR) for k in ("bpmagic", *PEERS) if k in med}
        if name == "mnist" and meta["gemm_peak_flops"]:
            lib, peak = max(meta["gemm_peak_flops"].items(), key=lambda kv: kv[1])
            res["gemm_share"] = {k: step_flops(cfg) / med[k] / peak for k in med}
            res["gemm_peak"] = {"library": lib, "flops": peak}
            res["pass_gemm_share"] = res["gemm_share"]["bpmagic"] >= TARGET_GEMM_SHARE
        res["wall_s"] = time.perf_counter() - t_start
        results[name] = res
        if hasattr(os, "getloadavg"):
            res["loadavg_after"] = list(os.getloadavg())
        load = f", load average {res['loadavg_after'][0]:.2f}" if "loadavg_after" in res else ""
        print(f"  {name}: timed {res['rounds']} rounds x {n} steps per implementation in {res['wall_s']:.1f} s{load}",
              flush=True)
        del impls
        gc.collect()

    # -- table ---------------------------------------------------------------------------------------------------------
    if results:
        print_table(results, labels, backend, {**({} if torch_device else {'torch': torch_desc}),
                                               **({} if use_jax else {'jax': jax_desc})})

    if hasattr(os, "getloadavg"):
        meta["loadavg_end"] = list(os.getloadavg())
        print("load average at end: " + ", ".join(f"{x:.2f}" for x in meta["loadavg_end"]))
    out = {"meta": meta, "labels": labels, "results": results, "failed": failed}
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2))
        print(f"\nwrote {path}")
    if failed:
        print(f"\nFAILED: the agreement check failed at {', '.join(failed)} (see the errors above); "
              "those sizes were not timed.", file=sys.stderr)
    return 1 if failed else 0


def print_table(results, labels, backend, missing):
    def spread(r, k):
        m = r["median_s"][k]
        return f"±{50 * (r['p75_s'][k] - r['p25_s'][k]) / m:.0f}%"

    def verdict(ok, how=None):
        return ("PASS" if ok else "MISS") + ("" if how in (None, "met", "missed") else f" ({how})")

    def between(iqr):
        return f" [{iqr[0]:.2f}–{iqr[1]:.2f}]"

    head = ["size", *(labels[k] for k in IMPLS), "bpmagic / fastest peer",
            "first step: bpmagic, JAX"]
    rows, notes = [], []
    for name, r in results.items():
        cell = {k: (f"{fmt_time(r['median_s'][k])} {spread(r, k)}" if k in r["median_s"]
                    else "–" if k == "hand" else "n/a") for k in IMPLS}
        ratio = f"{r['ratio_over_fastest']:.2f}x{between(r['ratio_over_fastest_ci'])} ({r['fastest_peer']})"
        if "pass_over_fastest" in r:
            ratio += f" ≤{TARGET_OVER_FASTEST:.1f} {verdict(r['pass_over_fastest'], r['sure_over_fastest'])}"
        if "pass_over_jax" in r:
            ratio += (f"; /JAX {r['ratio_over_jax']:.2f}x{between(r['ratio_over_jax_ci'])} "
                      f"≤{TARGET_OVER_JAX_RNN:.1f} {verdict(r['pass_over_jax'], r['sure_over_jax'])}")
        first = r["first_call_s"]
        first_s = fmt_time(first["bpmagic"]) + (f", {fmt_time(first['jax'])}" if "jax" in first else "")
        if "pass_first_call_over_jax" in r:
            first_s += (f" ({r['first_call_over_jax']:.2f}x ≤{TARGET_FIRST_OVER_JAX} "
                        f"{verdict(r['pass_first_call_over_jax'])})")
        rows.append([name, *(cell[k] for k in IMPLS), ratio, first_s])
        if "ratio_over_products" in r:
            over = ", ".join(f"{labels[k]} {m:.2f}x{between(ci)}" for k, (m, ci) in r["ratio_over_products"].items())
            notes.append(f"{name}: over the step's matrix products alone ({fmt_time(r['median_s'][FLOOR])}, NumPy): "
                         f"{over}")
        if "gemm_share" in r:
            shares = ", ".join(f"{labels[k]} {100 * v:.0f}%" for k, v in r["gemm_share"].items())
            notes.append(f"{name}: share of the fp32 GEMM peak ({r['gemm_peak']['flops'] / 1e9:.1f} GFLOP/s, "
                         f"{r['gemm_peak']['library']}): {shares}; target bpmagic ≥ {100 * TARGET_GEMM_SHARE:.0f}% "
                         f"{verdict(r['pass_gemm_share'])}")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    sep = "  "
    print()
    print(sep.join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    print(sep.join("-" * w for w in widths))
    for row in rows:
        print(sep.join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    for line in notes:
        print(line)
    print("\nmedian time per training step (± half the interquartile range over rounds); a ratio is the median of "
          "the rounds' own ratios\n[its 95 % confidence interval]; below 1 means bpmagic is faster. \"within noise\": "
          "the target lies inside that interval,\nso this run cannot say whether it is met.")
    print("JAX jit+guard: the jitted step keeping its params on a non-finite gradient, as bpmagic's does (not a peer: "
          "the least a guard costs under XLA).")
    if any("ratio_over_products" in r for r in results.values()):
        print("the step's matrix products alone: only its GEMMs, NumPy into arrays made once (not a step, not a peer): "
              "the floor a NumPy step\nstands on; a step at 1.00x of it spends nothing beyond its products.")
    print(f"targets (#32): bpmagic ≤ {TARGET_OVER_FASTEST:.1f}x the fastest peer at every MLP size; the RNN at "
          f"{' and '.join(RNN_TARGET_SIZES)} ≤ {TARGET_OVER_JAX_RNN:.1f}x JAX jit, with a first step ≤ "
          f"{TARGET_FIRST_OVER_JAX}x JAX's; ≥ {100 * TARGET_GEMM_SHARE:.0f}% of the GEMM peak at mnist.")
    if backend == "cupy":
        print("(the targets are stated for the CPU run; on the GPU they are shown for reference only)")
    for lib, why in missing.items():
        print(f"{lib}: {why}")


if __name__ == "__main__":
    sys.exit(main())
