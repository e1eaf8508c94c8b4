#!/usr/bin/env python3
"""How fast the dashboard's controls act while a %%backprop cell trains, on the backprop kernel (jupyter_client).

    .venv/bin/python bench/controls.py [--sizes xor digits mnist] [--flood 10000] [--singles 50] [--json PATH]

For each of bench/run.py's sizes (as a relu MLP with cross-entropy, written as a cell) a blocking training cell
runs, and:
  flood    N learning-rate messages sent back to back, as fast as the client can, built as a browser builds them;
           reported: seconds until the kernel reported idle for the last one (target: N = 10,000 in <= 30 s)
  single   one message every 100 ms; its effect is the first step trained with the new value (the step's time in
           run.history); reported: p50 / p99 of (effect - send) in ms (target p99 <= 100 ms)
Both sides run on this machine, so the client's own work (sending, draining IOPub) shares the cores.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from kernel_client import Kernel  # noqa: E402

SIZES = {  # batch, layers (see bench/run.py)
    "xor": (4, [2, 8, 2]),  # two logits: every size uses cross-entropy
    "digits": (64, [64, 128, 10]),
    "mnist": (512, [784, 1024, 1024, 10]),
}


def cell(layers):
    lines = []
    for i, (a, b) in enumerate(zip(layers, layers[1:]), 1):
        lines += [f"W{i}: Param = randn({a}, {b}) * {(2.0 / a) ** 0.5:.4f}", f"b{i}: Param = zeros({b})"]
    lines += ["x: Input = X", "y: Target = Y", "h = x"]
    for i in range(1, len(layers) - 1):
        lines.append(f"h = relu(h @ W{i} + b{i})")
    n = len(layers) - 1
    lines.append(f"loss: Loss = cross_entropy(h @ W{n} + b{n}, y)")
    return "\n".join(lines) + "\n"


def start(k, batch, layers):
    k.run("import numpy as np\nrng = np.random.default_rng(0)\n"
          f"X = rng.standard_normal(({batch * 8}, {layers[0]})).astype(np.float32)\n"
          f"Y = rng.integers(0, {layers[-1]}, {batch * 8})")
    msg_id = k.kc.execute(f"%%backprop --steps 100000000 --lr 0.1 --batch-size {batch}\n{cell(layers)}")
    deadline = time.time() + 120
    while "bpmagic-lr" not in k.comms:
        assert time.time() < deadline, "the dashboard never appeared"
        k.drain(0.05)
    return msg_id


def stop(k, msg_id):
    k.click("bpmagic-stop")
    k.wait_reply(msg_id, timeout=600)


def flood(k, n):
    values = [0.001 + 0.0001 * (i % 50) for i in range(n - 1)] + [0.0042]
    t0 = time.perf_counter()
    for v in values:
        last = k.set_value("bpmagic-lr", v)
    k.wait_handled(last, timeout=1200)
    return time.perf_counter() - t0


def singles(k, n):
    sent = []
    for i in range(n):
        value = 0.01 + 0.001 * i
        sent.append((time.time(), value))
        k.set_value("bpmagic-lr", value)
        end = time.time() + 0.1
        while time.time() < end:
            k.drain(0.01)
    return sent


def effect_latencies(k, sent):
    out = k.run("import json\nprint(json.dumps({'lr': _bp.history['lr'], 'time': _bp.history['time'], "
                "'t0': _bp.started_at}))")
    h = json.loads(out.strip().splitlines()[-1])
    lat = []
    for t_sent, value in sent:
        k_first = next((i for i, lr in enumerate(h["lr"]) if abs(lr - value) < 1e-12), None)
        if k_first is not None:
            lat.append((h["t0"] + h["time"][k_first] - t_sent) * 1000)
    return lat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--flood", type=int, default=10000)
    ap.add_argument("--singles", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {}
    print(f"{'size':8} {'flood':>7} {'seconds':>8} {'ms/msg':>7} {'single p50':>11} {'p99':>7} {'seen':>5}")
    for name in args.sizes:
        batch, layers = SIZES[name]
        k = Kernel("backprop")
        try:
            msg_id = start(k, batch, layers)
            seconds = flood(k, args.flood)
            sent = singles(k, args.singles)
            stop(k, msg_id)
            lat = effect_latencies(k, sent)
        finally:
            k.close()
        p50 = statistics.median(lat) if lat else float("nan")
        p99 = sorted(lat)[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
        results[name] = {"flood_messages": args.flood, "flood_seconds": seconds, "single_p50_ms": p50,
                         "single_p99_ms": p99, "singles_seen": len(lat), "singles_sent": len(sent)}
        print(f"{name:8} {args.flood:7d} {seconds:8.1f} {seconds / args.flood * 1000:7.2f} {p50:11.1f} {p99:7.1f} "
              f"{len(lat):2d}/{len(sent)}", flush=True)
    ok = all(r["flood_seconds"] <= 30 * r["flood_messages"] / 10000 and r["single_p99_ms"] <= 100
             for r in results.values())
    print("targets (10,000 in <= 30 s, p99 <= 100 ms):", "PASS" if ok else "MISS")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
