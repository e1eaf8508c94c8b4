#!/usr/bin/env python3
"""How soon a slider's message takes effect during a blocking cell, per ipykernel and live-controls mechanism.

    .venv/bin/python bench/live_controls_kernels.py [--versions 6.29.5 7.4.0] [--singles 50] [--json PATH]

For each ipykernel version, a second environment is built or reused (tests/support/ipykernel_envs.py), and
tests/support/live_controls_probe.py runs there on its stock `python3` and its `backprop` kernel, with plain messages and,
where the kernel supports subshells, subshell-tagged ones (as JupyterLab >= 4.4 sends them): one learning-rate
message every 100 ms while the small MLP of tests/frontends/test_live_controls.py trains. Reported: the mechanism bpmagic chose
there, and p50 / p99 / max of (end of the first step trained with the value - send) in ms.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests" / "support"
sys.path.insert(0, str(TESTS))
from ipykernel_envs import IPYKERNEL_629, IPYKERNEL_NEWEST, ensure_env, python_of  # noqa: E402


def probe(env, *args):
    environ = dict(os.environ, JUPYTER_PATH=str(env / "share" / "jupyter"))
    environ.pop("PYTHONPATH", None)
    done = subprocess.run([str(python_of(env)), str(TESTS / "live_controls_probe.py"), *args],
                          capture_output=True, text=True, env=environ, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"probe {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--versions", nargs="+", default=[IPYKERNEL_629, IPYKERNEL_NEWEST])
    ap.add_argument("--singles", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    print(f"{'ipykernel':9} {'kernel':8} {'messages':8} {'mechanism':9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'seen':>6}")
    for version in args.versions:
        env = ensure_env(version)
        for kernel in ("python3", "backprop"):
            for tagged in (False, True):
                if tagged and not rows[-1]["supports_subshells"]:
                    continue  # no browser tags messages for a kernel without subshells
                r = probe(env, kernel, "--singles", str(args.singles), *(["--tagged"] if tagged else []))
                lat = sorted(r["effect_ms"])
                p50 = statistics.median(lat) if lat else float("nan")
                p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
                mx = lat[-1] if lat else float("nan")
                rows.append(dict(r, p50_ms=p50, p99_ms=p99, max_ms=mx))
                print(f"{version:9} {kernel:8} {'tagged' if tagged else 'plain':8} {r['mechanism']:9} {p50:7.1f} "
                      f"{p99:7.1f} {mx:7.1f} {len(lat):3d}/{args.singles}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
