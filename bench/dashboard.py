"""Cost of the live dashboard: the digits MLP trained by bp.fit with the dashboard subscribed vs without, in one run.

    .venv/bin/python bench/dashboard.py [--steps 3000] [--rounds 5] [--json PATH]

Steady-state cost per step (the first fifth of the steps, when the widgets are built once, is left out).
Both sides compute the per-layer statistics (the Run's history needs them); "on" adds the dashboard's panels,
updated from the trainer thread at most ~10 times a second. Outside a kernel the widgets' comms are inert, so
this measures the Python side of each update (building buffers, hold_sync), which is what the trainer pays.
Target: on <= 1.05 x off.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import bpmagic as bp
from bpmagic.dashboard import Dashboard


def digits_problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((1797, 64)).astype(np.float32)
    y = rng.integers(0, 10, 1797)
    params = {"W1": (rng.standard_normal((64, 128)) * 0.1).astype(np.float32), "b1": np.zeros(128, np.float32),
              "W2": (rng.standard_normal((128, 10)) * 0.1).astype(np.float32), "b2": np.zeros(10, np.float32)}
    return X, y, params


def loss_fn(p, x, y):
    h = bp.relu(x @ p["W1"] + p["b1"])
    return bp.cross_entropy(h @ p["W2"] + p["b2"], y)


def timed(steps, dashboard):
    X, y, params = digits_problem()
    run = bp.fit(loss_fn, params, (X, y), steps=steps, batch_size=64, optimizer=bp.optim.SGD(lr=0.01),
                 backend="numpy", background=True)
    view = Dashboard(run) if dashboard else None
    run.wait()
    assert run.status == "finished", run
    if view is not None:
        view.close()
    h = run.history["time"]
    # steady state: skip the first fifth, where compiling and building the widgets (once) also take the GIL
    first = len(h) // 5
    return (h[-1] - h[first]) / (len(h) - 1 - first)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    timed(200, False), timed(200, True)  # warm up
    off, on = [], []
    for r in range(args.rounds):
        for with_dash in ((False, True) if r % 2 == 0 else (True, False)):  # alternate, so drift hits both
            (on if with_dash else off).append(timed(args.steps, with_dash))
    m_off, m_on = statistics.median(off), statistics.median(on)
    ratio = m_on / m_off
    print(f"digits MLP 64-128-10, batch 64, {args.steps} steps x {args.rounds} rounds (numpy)")
    print(f"  dashboard off: {m_off * 1e6:8.1f} us/step")
    print(f"  dashboard on : {m_on * 1e6:8.1f} us/step")
    print(f"  on / off     : {ratio:.3f}  (target <= 1.05: {'PASS' if ratio <= 1.05 else 'MISS'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"off_s": off, "on_s": on, "ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
