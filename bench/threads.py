#!/usr/bin/env python3
"""What the BLAS thread count does to one bpmagic training step, alone and beside a busy neighbour.

    python bench/threads.py                    # every size of bench/run.py, threads 1 and 2
    python bench/threads.py --sizes xor,mnist --seconds 2

For each size and thread count (threadpoolctl.threadpool_limits around the step, so nothing else changes), the median
per-step time over interleaved rounds, first with nothing of ours running beside it, then beside a neighbour: another
process running a 512x512 fp32 matmul loop on one thread (another notebook, another test). OpenBLAS's idle threads
spin-wait for work, so a step with more threads than free cores waits on a thread that is not running. The column
"chosen" is bpmagic's own step, which times both counts and keeps the faster (backends/blas.py): it should be about
the better of the two in each setting.
Run it without OPENBLAS_NUM_THREADS set. The steps of the fixed counts are made with GOTO_NUM_THREADS (OpenBLAS's
older name for it) set to the number of CPUs, the count OpenBLAS starts with anyway: bpmagic then sees a count the
user chose and leaves the counts set here as they are.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import run as bench  # noqa: E402  bench/run.py: the sizes and bpmagic's step on them

NEIGHBOUR = ("import numpy as np\na = np.random.rand(512, 512).astype(np.float32)\n"
             "while True:\n    a @ a\n")


def time_steps(step, threads, seconds, rounds=7):
    """Median seconds per step over `rounds` blocks of about seconds/rounds each, with `threads` BLAS threads (None:
    as the step chooses)."""
    with threadpool_limits(limits=threads, user_api="blas") if threads else contextlib.nullcontext():
        step()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.2 or n < 3:
            step()
            n += 1
        per = (time.perf_counter() - t0) / n
        block = max(1, int(seconds / rounds / per))
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(block):
                step()
            samples.append((time.perf_counter() - t0) / block)
    return statistics.median(samples)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(bench.SIZES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per size, thread count and setting")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    blas = [d for d in threadpool_info() if d["user_api"] == "blas"]
    libs = ", ".join(f"{d['internal_api']} {d['version']} ({d['num_threads']} threads)" for d in blas)
    print(f"BLAS: {libs}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; load {os.getloadavg()[0]:.2f}")
    steps, chosen = {}, {}
    for name in args.sizes.split(","):
        cfg, params, X, Y = bench.make_problem(name)
        chosen[name] = bench.BpmagicImpl(cfg, params, X, Y, "numpy")
        os.environ["GOTO_NUM_THREADS"] = str(os.cpu_count())  # a count "the user chose": the step leaves it alone
        try:
            steps[name] = bench.BpmagicImpl(cfg, params, X, Y, "numpy")
        finally:
            del os.environ["GOTO_NUM_THREADS"]
    results = {}
    for setting in ("alone", "neighbour"):
        neighbour = None
        if setting == "neighbour":
            env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env)
            time.sleep(1.0)
        try:
            for name, step in steps.items():
                for t in counts:
                    results[name, setting, t] = time_steps(step, t, args.seconds)
                results[name, setting, None] = time_steps(chosen[name], None, args.seconds)
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
    print(f"load after: {os.getloadavg()[0]:.2f}\n")
    columns = [*counts, None]
    head = " | ".join(f"{s} {f'{t}t' if t else 'chosen'}" for s in ("alone", "neighbour") for t in columns)
    print(f"| size | {head} |\n|---|{'---|' * (2 * len(columns))}")
    for name in steps:
        cells = " | ".join(bench.fmt_time(results[name, s, t]) for s in ("alone", "neighbour") for t in columns)
        print(f"| {name} | {cells} |")
    return results


if __name__ == "__main__":
    main()
