"""Dashboard controls on a real kernel (jupyter_client), while a %%backprop cell is training.

The comm messages are built exactly as a browser sends them: plain (VS Code, Notebook 7, JupyterLab with comms
over subshells off) on the backprop kernel, subshell-tagged (JupyterLab >= 4.4) on the stock kernel, and plain
on the stock kernel with --background.
"""
import time

import pytest
from kernel_client import CELL, SETUP, Kernel



@pytest.fixture
def backprop_kernel():
    k = Kernel("backprop")
    k.run(SETUP)
    yield k
    k.close()


@pytest.fixture
def stock_kernel():
    k = Kernel("python3")
    k.run("%load_ext bpmagic\n" + SETUP)
    yield k
    k.close()


def start_training(k, options="--steps 100000000 --lr 0.1", steps=50):
    """Run the training cell (not waited for) until the dashboard reports `steps` steps done."""
    msg_id = k.kc.execute(f"%%backprop {options}\n{CELL}")
    k.wait_until(lambda: "bpmagic-lr" in k.comms, 180, "the dashboard never appeared")
    k.wait_until(lambda: k.step() >= steps, 180, f"training did not reach step {steps}")
    return msg_id


def wait_steps(k, msg_id, steps=50):
    """Until the kernel has handled message `msg_id` and then reported `steps` more steps: that many ran after it."""
    k.wait_handled(msg_id)
    k.wait_steps(steps)


def assert_lr_changed_mid_training(k, subshell_id=None, background=False):
    msg_id = start_training(k, "--steps 100000000 --lr 0.1" + (" --background" if background else ""))
    wait_steps(k, k.set_value("bpmagic-lr", 0.01, subshell_id))
    k.click("bpmagic-stop", subshell_id)
    if not background:
        k.wait_reply(msg_id)  # Stop ended the blocking cell
    else:
        k.run("_bp.wait()")
    h = k.history("lr")
    lrs = h["lr"]
    assert h["status"] == "stopped"
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)
    k_new = next(i for i, v in enumerate(lrs) if v == pytest.approx(0.01))
    assert 10 < k_new < len(lrs) - 10  # applied mid-training, well before the end
    return h


def test_backprop_kernel_plain_comm_messages(backprop_kernel):
    assert_lr_changed_mid_training(backprop_kernel)


def hold(k, seconds):
    """Keep reading IOPub for `seconds`: while paused, time passing is the test (no step may run meanwhile)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        k.drain(0.05)


def test_backprop_kernel_pause_step_resume(backprop_kernel):
    k = backprop_kernel
    msg_id = start_training(k)
    k.click("bpmagic-pause")
    k.wait_until(lambda: k.status().startswith("paused at step"), why="Pause was not shown")
    first_shown = k.step()
    hold(k, 0.5)
    paused_at = k.step()
    assert paused_at - first_shown in (0, 1)  # at most the step that was running when Pause came
    for i in range(1, 4):
        k.click("bpmagic-step")
        k.wait_until(lambda: k.step() >= paused_at + i, why=f"Step {i} did not run")
        hold(k, 0.3)
        assert k.status().startswith(f"paused at step {paused_at + i} "), k.status()  # exactly one step a click
    k.click("bpmagic-pause")  # the same button resumes
    k.wait_steps(50)
    k.click("bpmagic-stop")
    k.wait_reply(msg_id)
    h = k.history("step", "time")
    times = h["time"]
    # while paused, exactly three steps ran, each after a click, with long gaps in between
    gaps = [b - a for a, b in zip(times[paused_at - 1:paused_at + 3], times[paused_at:paused_at + 4])]
    assert len(gaps) == 4 and all(g > 0.2 for g in gaps), gaps  # pause | step | step | step | resume
    assert len(times) > paused_at + 3 + 10  # it resumed and trained on


def test_stock_kernel_subshell_messages(stock_kernel):
    sid = stock_kernel.create_subshell()
    assert_lr_changed_mid_training(stock_kernel, subshell_id=sid)


def test_stock_kernel_background(stock_kernel):
    assert_lr_changed_mid_training(stock_kernel, background=True)


def test_bad_values_are_rejected_and_snap_back(backprop_kernel):
    k = backprop_kernel
    msg_id = start_training(k)
    sent_at = time.time()
    k.set_value("bpmagic-lr", float("nan"))
    wait_steps(k, k.set_value("bpmagic-lr", 1e9))
    lr_comm = k.comms["bpmagic-lr"]
    snaps = [m for t, m in k.iopub if t >= sent_at and m["msg_type"] == "comm_msg"
             and m["content"]["comm_id"] == lr_comm and m["content"]["data"].get("method") == "update"
             and "value" in m["content"]["data"].get("state", {})]
    assert snaps and snaps[-1]["content"]["data"]["state"]["value"] == pytest.approx(0.1)  # snapped back
    k.click("bpmagic-stop")
    k.wait_reply(msg_id)
    h = k.history("lr")
    assert h["lr"] == [pytest.approx(0.1)] * len(h["lr"]) and len(h["lr"]) > 100  # went on, unchanged


def test_a_flood_of_control_messages(backprop_kernel):
    k = backprop_kernel
    msg_id = start_training(k)
    first = len(k.iopub)
    values = [0.001 + 0.0001 * (i % 50) for i in range(9999)] + [0.0042]
    for v in values:
        last = k.set_value("bpmagic-lr", v)
    # how fast is bench/controls.py's business; here only a generous deadline for a busy machine
    k.wait_handled(last, timeout=900)
    k.wait_steps(50)  # some steps with the last value before Stop
    k.click("bpmagic-stop")
    k.wait_reply(msg_id, timeout=300)
    h = k.history("lr")
    assert h["lr"][-1] == pytest.approx(0.0042)  # no state lost: the last value sent is the one in use
    # the kernel's IOPub output stays under Jupyter Server's limit (1000 messages/s over a 3 s window), counted as
    # the server counts (jupyter_server's _limit_rate: status, comm_open and execute_input are not counted)
    window = [t for t, m in k.iopub[first:] if m["msg_type"] not in ("status", "comm_open", "execute_input")]
    worst = max((sum(1 for u in window if t <= u < t + 3.0) for t in window), default=0) / 3.0
    assert worst < 1000, f"{worst:.0f} IOPub messages/s"
