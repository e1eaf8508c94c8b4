"""Does a slider moved during a blocking %%backprop cell take effect mid-training on this environment's kernels?

    python tests/support/live_controls_probe.py KERNEL [--tagged] [--singles N] [--expect-not-live]

Run with the Python of the environment under test (tests/support/ipykernel_envs.py builds them): jupyter_client finds that
environment's kernelspecs (`python3`, `backprop`) and starts its kernel, as a Jupyter server there would. A blocking
cell trains; once the dashboard publishes updates, learning-rate messages built as a browser builds them
(``comm_msg`` ``{method: update, state, buffer_paths}``, with a subshell id in the header when --tagged, as
JupyterLab >= 4.4 sends them to a kernel that supports subshells) are sent every 100 ms, an execute request is
queued behind the cell (Run All), and Stop is clicked: Stop must end the cell (or, with --expect-not-live, training
must go on after it until an Interrupt ends it); then the queued cell must run. Prints one JSON line: the kernel's mechanism, where the first new value took effect, and each
message's effect latency (send -> end of the first step trained with it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_client import CELL, SETUP, Kernel  # noqa: E402

DEADLINE = 300  # seconds, for each thing awaited: a busy 2-core machine is slow, never this slow


def probe(kernel_name, tagged=False, singles=10, expect_live=True):
    k = Kernel(kernel_name)
    try:
        k.run(("%load_ext bpmagic\n" if kernel_name != "backprop" else "") + SETUP)
        info = json.loads(k.run("import json, bpmagic.live_comms as lc, ipykernel\n"
                                "print(json.dumps(dict(lc.status(), ipykernel=ipykernel.__version__)))")
                          .strip().splitlines()[-1])
        subshells = k.supports_subshells(DEADLINE)
        if tagged and not subshells:
            raise SystemExit(f"{kernel_name} does not support subshells, so no browser tags its messages")
        sid = k.create_subshell() if tagged else None
        first = len(k.iopub)
        cell_id = k.kc.execute(f"%%backprop --steps 100000000 --lr 0.1\n{CELL}")
        k.wait_until(lambda: "bpmagic-lr" in k.comms, DEADLINE, "the dashboard never appeared")
        k.wait_until(lambda: k.updates_since(first) >= 5, DEADLINE, "the dashboard never updated: not training?")
        sent = []
        for i in range(singles):
            value = 0.01 + 0.001 * i
            sent.append((time.time(), value))
            last = k.set_value("bpmagic-lr", value, sid)
            end = time.time() + 0.1
            while time.time() < end:
                k.drain(0.01)
        if expect_live:  # Stop only once the last value was trained with (Stop first would leave it no step)
            k.wait_handled(last, DEADLINE)  # the kernel took it: it applies from the coming step
            k.wait_steps(1, DEADLINE)  # a report published after that, counting at least the steps done then ...
            k.wait_steps(1, DEADLINE)  # ... and one counting more: a step trained with the last value
        queued_id = k.kc.execute("print('queued cell ran')")  # Run All: the next cell waits behind this one
        clicked = len(k.iopub)
        k.click("bpmagic-stop", sid)
        if not expect_live:  # training goes on after Stop (for ~1 s of dashboard updates); Interrupt ends it
            k.wait_until(lambda: k.updates_since(clicked) >= 10, DEADLINE, "training ended after Stop")
            k.km.interrupt_kernel()
        cell_reply = k.wait_reply(cell_id, DEADLINE)
        replies = {cell_id: time.time()}
        queued_reply = k.wait_reply(queued_id, DEADLINE)
        replies[queued_id] = time.time()
        k.drain(0.2)
        cell_out = "".join(m["content"].get("text", "") for _, m in k.iopub
                           if m["parent_header"].get("msg_id") == cell_id and m["msg_type"] == "stream")
        queued_out = "".join(m["content"].get("text", "") for _, m in k.iopub
                             if m["parent_header"].get("msg_id") == queued_id and m["msg_type"] == "stream")
        h = json.loads(k.run("import json\nprint(json.dumps({'lr': _bp.history['lr'], 'time': _bp.history['time'], "
                             "'finished_at': _bp.finished_at, 'status': _bp.status}))").strip().splitlines()[-1])
    finally:
        k.close()
    latencies, first_steps = [], []
    for t_sent, value in sent:
        k_first = next((i for i, lr in enumerate(h["lr"]) if abs(lr - value) < 1e-12), None)
        first_steps.append(k_first)
        if k_first is not None:
            # history times count from the worker's start; the wall clock is anchored at the end of training
            # (finished_at is taken just after the last step, so an effect reads at most that gap late)
            effect_at = h["finished_at"] - (h["time"][-1] - h["time"][k_first])
            latencies.append(round((effect_at - t_sent) * 1000, 1))
    return {
        "ipykernel": info["ipykernel"], "kernel": kernel_name, "mechanism": info["mechanism"],
        "why_none": info["why_none"], "supports_subshells": subshells, "tagged": tagged,
        "status": h["status"], "steps": len(h["lr"]), "lr_first": h["lr"][0], "lr_last": h["lr"][-1],
        "last_sent": sent[-1][1], "effect_ms": latencies,
        # the first value trained with (a busy machine may merge the first values: only the newest is applied)
        "first_new_step": next((k for k in first_steps if k is not None), None),
        "cell_status": cell_reply["content"]["status"], "cell_output": cell_out,
        "queued_status": queued_reply["content"]["status"], "queued_output": queued_out,
        "queued_after_cell": replies[queued_id] >= replies[cell_id],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kernel")
    ap.add_argument("--tagged", action="store_true", help="tag messages with a subshell id, as JupyterLab >= 4.4")
    ap.add_argument("--singles", type=int, default=10)
    ap.add_argument("--expect-not-live", dest="expect_live", action="store_false",
                    help="the messages are not expected to apply during the cell: Interrupt ends it")
    args = ap.parse_args()
    print(json.dumps(probe(args.kernel, args.tagged, args.singles, args.expect_live)), flush=True)


if __name__ == "__main__":
    main()
