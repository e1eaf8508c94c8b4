#!/usr/bin/env python3
"""Data-parallel step time: one process against 2 MPI workers, and the allreduce's share of a worker's step.

    .venv/bin/python bench/workers.py [--size mnist] [--steps 50] [--workers 2] [--json PATH]

mnist size: a relu MLP [784, 1024, 1024, 10] with cross-entropy, float32, global batch 512 (bench/run.py's), so
each of 2 workers steps on 256 rows. Reported:
  one process   ms per step at the global batch (bpmagic's compiled step, no workers)
  workers       ms per step of each worker (the global batch split), measured on rank 0 under mpiexec
  allreduce     ms per step inside the step's allreduce equation (the workers' meeting, waiting for the slower one
                included); the equation's own code alone, the workers together; a raw mpi4py Allreduce of the same
                bytes (target: equation alone <= 1.2 x raw)
  predicted     a ring allreduce of those bytes on N workers from the measured bandwidth (2 (N-1)/N x bytes / bw)
On one machine the workers share its cores (this one has 2): the speed-up shows only with a core per worker.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = {"digits": (64, [64, 128, 10]), "mnist": (512, [784, 1024, 1024, 10])}


def model(size, rows, seed=0):
    import bpmagic as bp

    _, layers = SIZES[size]
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(zip(layers, layers[1:]), 1):
        params[f"W{i}"] = (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
        params[f"b{i}"] = np.zeros(b, np.float32)
    X = rng.standard_normal((rows, layers[0])).astype(np.float32)
    Y = rng.integers(0, layers[-1], rows)
    n = len(layers) - 1

    def loss_fn(p, x, y):
        h = x
        for i in range(1, n):
            h = bp.relu(h @ p[f"W{i}"] + p[f"b{i}"])
        return bp.cross_entropy(h @ p[f"W{n}"] + p[f"b{n}"], y)

    return loss_fn, params, X, Y


def time_steps(step, batch, steps):
    step(*batch)  # compiles; the first call also warms the caches
    step(*batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*batch)
    return (time.perf_counter() - t0) / steps


def one_process(size, steps):
    import bpmagic as bp
    from bpmagic.train.step import CompiledStep

    batch_size, _ = SIZES[size]
    loss_fn, params, X, Y = model(size, batch_size)
    step = CompiledStep(loss_fn, params, (X, Y), bp.optim.SGD(lr=0.01), "numpy", stats=True)
    return time_steps(step, (X, Y), steps)


def worker(size, steps):
    """On each rank under mpiexec: its part of the global batch through the step compiled for workers."""
    from mpi4py import MPI

    import bpmagic as bp
    from bpmagic.backends.collective import Workers
    from bpmagic.train.step import CompiledStep

    comm = MPI.COMM_WORLD
    rank, n = comm.Get_rank(), comm.Get_size()
    batch_size, _ = SIZES[size]
    loss_fn, params, X, Y = model(size, batch_size)
    part = slice(rank * batch_size // n, (rank + 1) * batch_size // n)
    workers = Workers(comm)
    spent = [0.0]
    meet = workers.allreduce

    def timed(x, out=None):  # the equation's time: packing aside, the meeting itself
        t = time.perf_counter()
        result = meet(x, out)
        spent[0] += time.perf_counter() - t
        return result

    workers.allreduce = timed
    step = CompiledStep(loss_fn, params, (X[part], Y[part]), bp.optim.SGD(lr=0.01), "numpy", stats=True,
                        workers=workers)
    step(X[part], Y[part])
    step(X[part], Y[part])
    comm.Barrier()
    spent[0] = 0.0
    per_step = time_steps(step, (X[part], Y[part]), steps)
    meeting = spent[0] / (steps + 2)  # time_steps runs two more before its clock
    packed = next(e for e in step.plan.graph.eqns if e.primitive.name == "allreduce").inputs[0]
    nbytes = int(np.prod(packed.shape)) * np.dtype(packed.dtype).itemsize
    buf, out = np.ones(nbytes // 4, np.float32), np.empty(nbytes // 4, np.float32)
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        comm.Allreduce(buf, out)
    raw = (time.perf_counter() - t0) / steps
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(steps):  # the equation's own code (with the settings it carries), the workers already together
        meet(buf, out)
    alone = (time.perf_counter() - t0) / steps
    return {"rank": rank, "workers": n, "step_ms": per_step * 1e3, "allreduce_ms": meeting * 1e3,
            "allreduce_alone_ms": alone * 1e3,
            "raw_allreduce_ms": raw * 1e3, "bytes": nbytes}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="mnist", choices=sorted(SIZES))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.as_worker:
        result = worker(args.size, args.steps)
        if result["rank"] == 0:
            print(json.dumps(result))
        return
    single = one_process(args.size, args.steps) * 1e3
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    done = subprocess.run([mpiexec, "--oversubscribe", "-n", str(args.workers), sys.executable, __file__,
                           "--as-worker", "--size", args.size, "--steps", str(args.steps)],
                          capture_output=True, text=True, env=env, check=True)
    w = json.loads(done.stdout.strip().splitlines()[-1])
    bandwidth = w["bytes"] / (w["raw_allreduce_ms"] / 1e3)  # bytes/s, as a 2-process allreduce moves them
    predicted = {n: 2 * (n - 1) / n * w["bytes"] / bandwidth * 1e3 for n in (2, 4, 8, 16)}
    report = {"size": args.size, "global_batch": SIZES[args.size][0], "one_process_ms": single, **w,
              "allreduce_over_raw": w["allreduce_alone_ms"] / w["raw_allreduce_ms"],
              "allreduce_share": w["allreduce_ms"] / w["step_ms"], "predicted_allreduce_ms": predicted}
    print(f"{args.size}, global batch {report['global_batch']}, gradients {w['bytes'] / 1e6:.2f} MB:")
    print(f"  one process          {single:8.2f} ms/step")
    print(f"  {w['workers']} workers            {w['step_ms']:8.2f} ms/step (each on {report['global_batch'] // w['workers']} rows)")
    print(f"  allreduce in a step  {w['allreduce_ms']:8.2f} ms/step ({report['allreduce_share']:.0%} of the step, "
          "waiting for the slower worker included)")
    print(f"  allreduce equation   {w['allreduce_alone_ms']:8.2f} ms alone, the workers together")
    print(f"  raw mpi4py Allreduce {w['raw_allreduce_ms']:8.2f} ms of the same bytes "
          f"(equation / raw = {report['allreduce_over_raw']:.2f})")
    print("  predicted allreduce  " + ", ".join(f"{n} workers {ms:.2f} ms" for n, ms in predicted.items())
          + f" (bandwidth {bandwidth / 1e9:.2f} GB/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
