#!/usr/bin/env python3
"""Time ONE training step of three small MLPs, fp32, three ways: bpmagic, hand-written NumPy, PyTorch eager.

    ./dev bench                          # all sizes, ~1-2 minutes on 2 CPU cores
    ./dev bench --quick --sizes xor      # a smoke test (a few seconds)
    ./dev bench --json bench/results/cpu.json
    python bench/run.py --backend cupy   # on a GPU machine: bpmagic on CuPy, hand-written CuPy, torch on cuda

The sizes (plain SGD, random data from a fixed seed):
    xor     batch 4,   layers 2-8-1,          tanh hidden, MSE loss
    digits  batch 64,  layers 64-128-10,      relu hidden, softmax cross-entropy with integer labels
    mnist   batch 512, layers 784-1024-1024-10, relu hidden, cross-entropy

The implementations:
    bpmagic  bp.compile_step(loss_fn, params, X, Y, optimizer=bp.optim.SGD(lr), backend=...); we time step(X, Y)
    hand     the same step written by hand in NumPy (or CuPy): forward, manual backward, W -= lr * gW,
             returns float(loss); written plainly, without buffer reuse or other tricks
    torch    PyTorch eager: plain tensors with requires_grad (no nn.Module), loss.backward(), SGD under
             torch.no_grad(), grads reset with `.grad = None`, returns loss.item(); default thread count

Before timing, all three are run for 3 steps from identical parameters and must agree on every loss and every
final parameter to fp32 tolerance (1e-4 relative); otherwise the script prints what differs and exits 1.

Timing: warm-up, then rounds; each round runs a block of n steps of every implementation (the order rotates from
round to round), so machine noise hits all of them alike. A round's per-step time is its block time / n; we report
the median over rounds. The garbage collector is off inside blocks (as timeit does), for every implementation.

Note: this machine may set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (for older OpenBLAS builds). They are left as they
are on purpose; they may slow NumPy (and so both bpmagic and the hand-written baseline) somewhat. The header of
the output prints them when set.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

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
    "mnist": {"batch": 512, "layers": [784, 1024, 1024, 10], "act": "relu", "loss": "cross_entropy"},
}
# seconds of timed work per size in a full run (rounds x n steps x all implementations), and rounds
BUDGET = {"xor": 15.0, "digits": 15.0, "mnist": 45.0}
ROUNDS = 30
MIN_ROUNDS = 10   # when a size runs past twice its budget, stop after this many rounds
QUICK_BUDGET, QUICK_ROUNDS = 0.4, 5

# targets stated in the issue, checked against the CPU run (NumPy backend)
TARGET_BP_OVER_HAND = 1.0     # bpmagic time / hand-written time <= 1.0 at every size
TARGET_TORCH_OVER_BP = 5.0    # torch eager time / bpmagic time >= 5 at xor and digits
TORCH_TARGET_SIZES = ("xor", "digits")

IMPLS = ("bpmagic", "hand", "torch")


# ---------------------------------------------------------------------------------------------------------------------
# problem set-up (always in NumPy on the host; each implementation copies onto its own device)

def make_problem(name):
    cfg = SIZES[name]
    rng = np.random.default_rng(SEED)
    sizes = cfg["layers"]
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

def mlp_loss_fn(cfg):
    """The size's loss as bpmagic code: loss_fn(params, x, y)."""
    import bpmagic as bp

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

        loss_fn = mlp_loss_fn(cfg)
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


# ---------------------------------------------------------------------------------------------------------------------
# (c) PyTorch eager

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

    def forward_loss(self):
        p, L = self.p, self.n_layers
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


def build_impls(cfg, params, X, Y, backend, torch_device):
    """The implementations, each with its own copy of the same initial parameters."""
    impls = {"bpmagic": BpmagicImpl(cfg, params, X, Y, backend), "hand": HandImpl(cfg, params, X, Y, backend)}
    if torch_device:
        impls["torch"] = TorchImpl(cfg, params, X, Y, torch_device)
    return impls


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
    ref = "hand"
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
    hand_label = "hand-written CuPy" if backend == "cupy" else "hand-written NumPy"
    labels = {"bpmagic": f"bpmagic ({backend})", "hand": hand_label,
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
            impls = build_impls(cfg, params, X, Y, backend, torch_device)
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
              + ", ".join(f"{x:.6g}" for x in losses["hand"]) + ")", flush=True)

        impls = build_impls(cfg, params, X, Y, backend, torch_device)  # fresh, from the same start
        budget = (QUICK_BUDGET if args.quick else BUDGET[name]) * args.scale
        n, samples = time_size(name, impls, sync, budget, rounds, warmup_s)
        med = {}
        res = {"config": {**cfg, "params": int(sum(p.size for p in params.values()))},
               "steps_per_block": n, "rounds": len(samples["hand"]), "median_s": {}, "p25_s": {}, "p75_s": {},
               "min_s": {}, "samples_s": {}}
        for k, xs in samples.items():
            lo, m, hi = quantiles(xs)
            med[k] = m
            res["median_s"][k], res["p25_s"][k], res["p75_s"][k], res["min_s"][k] = m, lo, hi, min(xs)
            res["samples_s"][k] = xs
        res["unavailable"] = {} if torch_device else {"torch": torch_desc}
        bp_hand = med["bpmagic"] / med["hand"]
        res["ratio_bpmagic_over_hand"] = bp_hand
        res["target_bpmagic_over_hand_max"] = TARGET_BP_OVER_HAND
        res["pass_bpmagic_over_hand"] = bp_hand <= TARGET_BP_OVER_HAND
        if "torch" in med:
            tb = med["torch"] / med["bpmagic"]
            res["ratio_torch_over_bpmagic"] = tb
            if name in TORCH_TARGET_SIZES:
                res["target_torch_over_bpmagic_min"] = TARGET_TORCH_OVER_BP
                res["pass_torch_over_bpmagic"] = tb >= TARGET_TORCH_OVER_BP
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
        print_table(results, labels, backend, torch_desc if not torch_device else None)

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


def print_table(results, labels, backend, torch_missing):
    def spread(r, k):
        m = r["median_s"][k]
        return f"±{50 * (r['p75_s'][k] - r['p25_s'][k]) / m:.0f}%"

    head = ["size", "batch", "layers", labels["bpmagic"], labels["hand"], labels["torch"],
            "bpmagic/hand", "torch/bpmagic"]
    rows = []
    for name, r in results.items():
        c = r["config"]
        cell = {k: (f"{fmt_time(r['median_s'][k])} {spread(r, k)}" if k in r["median_s"] else "not installed")
                for k in IMPLS}
        bh = r["ratio_bpmagic_over_hand"]
        bh_s = f"{bh:.2f}x (≤{TARGET_BP_OVER_HAND:.1f} {'PASS' if r['pass_bpmagic_over_hand'] else 'MISS'})"
        if "ratio_torch_over_bpmagic" in r:
            tb = r["ratio_torch_over_bpmagic"]
            tb_s = f"{tb:.2f}x faster"
            if "pass_torch_over_bpmagic" in r:
                tb_s += f" (≥{TARGET_TORCH_OVER_BP:.0f} {'PASS' if r['pass_torch_over_bpmagic'] else 'MISS'})"
            else:
                tb_s += " (no target)"
        else:
            tb_s = "n/a"
        rows.append([name, str(c["batch"]), "-".join(map(str, c["layers"])), cell["bpmagic"], cell["hand"],
                     cell["torch"], bh_s, tb_s])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    sep = "  "
    print()
    print(sep.join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    print(sep.join("-" * w for w in widths))
    for row in rows:
        print(sep.join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print("\nmedian time per training step (± half the interquartile range over rounds). "
          "bpmagic/hand < 1 means bpmagic is faster;\ntorch/bpmagic = how many times faster bpmagic is than "
          "torch eager.")
    print(f"targets (from the issue): bpmagic ≤ {TARGET_BP_OVER_HAND:.1f}x hand-written NumPy at every size; "
          f"≥ {TARGET_TORCH_OVER_BP:.0f}x faster than torch eager at {' and '.join(TORCH_TARGET_SIZES)}.")
    if backend == "cupy":
        print("(the targets are stated for the CPU run; on the GPU they are shown for reference only)")
    if torch_missing:
        print(f"torch: {torch_missing}")


if __name__ == "__main__":
    sys.exit(main())
