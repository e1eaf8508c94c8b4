"""One MLP training step on the GPU (fp32): bpmagic replayed as CUDA graphs, bpmagic eager, PyTorch eager and
PyTorch CUDA-graph replay, in one run on one machine, with the issue's targets as ratios.

    python bench/gpu.py [--sizes xor,digits,mnist,wide] [--json PATH] [--seconds 4]

Sizes: xor, digits and mnist as in bench/run.py, and wide (batch 4096, layers 4096-4096-4096-4096, relu, MSE),
whose floor is the time of its nine fp32 GEMMs (3 forward, 6 backward) measured here with cuBLAS through CuPy.
Before timing, bpmagic's graph replay and its eager step run 3 steps from the same parameters and must agree to
float32 rounding. Targets: ≤ 0.7× torch's graph replay at xor and digits, ≤ 0.9× at mnist, ≤ 1.05× the floor at
wide. Needs CuPy and a CUDA GPU (PyTorch with CUDA for the torch columns).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import run as cpu_bench  # noqa: E402  (sizes, problems, the bpmagic and torch implementations)

cpu_bench.SIZES.setdefault("wide", {"batch": 4096, "layers": [4096, 4096, 4096, 4096], "act": "relu",
                                    "loss": "mse"})
TARGETS = {"xor": 0.7, "digits": 0.7, "mnist": 0.9}
WIDE_TARGET = 1.05


class TorchGraph(cpu_bench.TorchImpl):
    """PyTorch's documented whole-step capture: warm up on a side stream, capture forward, backward and SGD once,
    replay; the parameters are restored after the warm-up so that all implementations start equal."""

    def __init__(self, cfg, params, X, Y):
        import torch

        super().__init__(cfg, params, X, Y, "cuda")
        saved = [q.detach().clone() for q in self.plist]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._body()
        with torch.no_grad():
            for q, s in zip(self.plist, saved):
                q.copy_(s)

    def _body(self):
        torch = self.torch
        loss = self.forward_loss()
        grads = torch.autograd.grad(loss, self.plist)
        with torch.no_grad():
            for q, g in zip(self.plist, grads):
                q.add_(g, alpha=-cpu_bench.LR)
        return loss.detach()

    def __call__(self):
        self.graph.replay()
        return self.static_loss.item()


def gemm_floor(cfg, seconds):
    """Time of the step's nine fp32 GEMMs alone (forward x@W, backward d@Wᵀ and hᵀ@d), same shapes."""
    import cupy

    b, (n0, n1, n2, n3) = cfg["batch"], cfg["layers"]
    rng = cupy.random.default_rng(0)
    shapes = [((b, n0), (n0, n1)), ((b, n1), (n1, n2)), ((b, n2), (n2, n3)),      # forward
              ((b, n3), (n3, n2)), ((b, n2), (n2, n1)),                             # d @ Wᵀ (the first is not needed)
              ((n2, b), (b, n3)), ((n1, b), (b, n2)), ((n0, b), (b, n1)), ((b, n1), (n1, n0))]
    ops = [(rng.standard_normal(a, dtype=cupy.float32), rng.standard_normal(c, dtype=cupy.float32)) for a, c in shapes]
    outs = [cupy.empty((a[0], c[1]), cupy.float32) for a, c in shapes]

    def run():
        for (x, y), o in zip(ops, outs):
            cupy.matmul(x, y, out=o)
    return time_it(run, seconds, cupy.cuda.get_current_stream().synchronize)


def time_it(fn, seconds, sync):
    for _ in range(3):
        fn()
    sync()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.2:
        fn()
        n += 1
    sync()
    block = max(1, int(n * 0.05 / max(time.perf_counter() - t0, 1e-9) * 4))
    samples, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t = time.perf_counter()
        for _ in range(block):
            fn()
        sync()
        samples.append((time.perf_counter() - t) / block)
    return statistics.median(samples)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="xor,digits,mnist,wide")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--seconds", type=float, default=4.0, help="timing budget per implementation and size")
    args = ap.parse_args(argv)
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("CuPy sees no GPU")
    except Exception as e:
        print(f"bench/gpu.py needs CuPy and a CUDA GPU: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    import torch

    sync_all = lambda: (cupy.cuda.get_current_stream().synchronize(), torch.cuda.synchronize())  # noqa: E731
    results, failed = {}, False
    print(f"GPU: {cupy.cuda.runtime.getDeviceProperties(0)['name']}, CuPy {cupy.__version__}, torch {torch.__version__}")
    for name in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        cfg, params, X, Y = cpu_bench.make_problem(name)
        impls = {"bpmagic graph": cpu_bench.BpmagicImpl(cfg, params, X, Y, "cupy", cuda_graph=True),
                 "bpmagic eager": cpu_bench.BpmagicImpl(cfg, params, X, Y, "cupy", cuda_graph=False),
                 "torch eager": cpu_bench.TorchImpl(cfg, params, X, Y, "cuda"),
                 "torch graph": TorchGraph(cfg, params, X, Y)}
        for _ in range(cpu_bench.CHECK_STEPS):  # the replayed step equals the eager one
            losses = {k: f() for k, f in impls.items()}
        graph_p, eager_p = impls["bpmagic graph"].get_params(), impls["bpmagic eager"].get_params()
        same = all(np.allclose(graph_p[k], eager_p[k], rtol=1e-5, atol=1e-6) for k in graph_p)
        res = {"losses": losses, "graph_equals_eager": same}
        for k, f in impls.items():
            res[k] = time_it(f, args.seconds, sync_all)
        res["ratio_graph_over_torch_graph"] = res["bpmagic graph"] / res["torch graph"]
        if name == "wide":
            res["gemm_floor"] = gemm_floor(cfg, args.seconds)
            res["ratio_graph_over_floor"] = res["bpmagic graph"] / res["gemm_floor"]
            res["pass"] = res["ratio_graph_over_floor"] <= WIDE_TARGET and same
        else:
            res["pass"] = res["ratio_graph_over_torch_graph"] <= TARGETS.get(name, 1.0) and same
        failed |= not same
        results[name] = res
        cols = "  ".join(f"{k} {res[k] * 1e6:9.1f} µs" for k in impls)
        extra = (f"  floor {res['gemm_floor'] * 1e6:.1f} µs, bpmagic/floor {res['ratio_graph_over_floor']:.2f}"
                 if name == "wide" else "")
        print(f"{name:7s} {cols}  bpmagic/torch-graph {res['ratio_graph_over_torch_graph']:.2f}{extra}  "
              f"graph==eager {same}  target {'PASS' if res['pass'] else 'MISS'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
