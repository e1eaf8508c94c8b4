"""%%backprop --workers 2 end to end in a real kernel (jupyter_client): the kernel starts its cluster of 2 MPI
engines once and reuses it; the dashboard's controls, sent as a browser sends them, reach every worker at the
same step; the status line names the workers and the global batch; a NaN on one shard names the cell line."""
import json
import time
from pathlib import Path

import pytest
from kernel_client import CELL, SETUP, Kernel

pytest.importorskip("ipyparallel")
pytest.importorskip("mpi4py")


@pytest.fixture(scope="module")
def kernel():
    k = Kernel("backprop")
    k.run(SETUP)
    yield k
    engines = json.loads(k.run("import json\nprint(json.dumps([i['pid'] for i in _bp.info]))").strip())
    k.close()  # kills the kernel (no exit handler runs): its cluster's watchdog stops the engines
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in engines):
        assert time.monotonic() < deadline, f"the killed kernel's engines {engines} are still running"
        time.sleep(0.2)


def worker_lrs(k):
    """Per worker: (steps, the first step that ran with the new learning rate)."""
    out = k.run("import json\nhs = _bp.worker_histories()\nprint(json.dumps([[len(h['step']), next((s for s, a, b in "
                "zip(h['step'][1:], h['lr'], h['lr'][1:]) if a != b), None)] for h in hs]))")
    return json.loads(out.strip().splitlines()[-1])


def test_magic_on_two_workers_with_a_slider_change_and_stop(kernel):
    k = kernel
    k.comms.clear()
    assert k.run("import bpmagic, os; print(os.path.dirname(bpmagic.__file__))").strip().endswith("bpmagic")
    msg_id = k.kc.execute(f"%%backprop --workers 2 --steps 100000000 --lr 0.1 --batch-size 64\n{CELL}")
    k.wait_until(lambda: "bpmagic-lr" in k.comms, 240, "the dashboard never appeared")
    k.wait_until(lambda: k.step() >= 30, 240, "training on the workers did not reach step 30")
    assert "2 workers · global batch 64" in k.status()
    k.wait_handled(k.set_value("bpmagic-lr", 0.01))
    # the status line shows the rate of the last step the workers took (relayed, on a busy machine late): wait for
    # the new one there, then for more steps, so that the change lands mid-run however slow the relay is
    k.wait_until(lambda: "lr 0.01" in k.status(), 240, "the new rate never reached the workers' steps")
    k.wait_steps(30)
    k.click("bpmagic-stop")
    k.wait_reply(msg_id)
    h = k.history("lr", "step")
    assert h["status"] == "stopped"
    lrs = h["lr"]
    changed = next(i for i, v in enumerate(lrs) if v == pytest.approx(0.01)) + 1
    assert lrs[0] == pytest.approx(0.1) and 10 < changed < len(lrs) - 10
    per_worker = worker_lrs(k)
    assert per_worker == [[len(lrs), changed], [len(lrs), changed]]  # the same step on every worker
    printed = k.run("print(_bp.step)")
    assert "_workers.allreduce(" in printed and "the 2 workers meet" in printed
    # the namespace's Params are the workers' last step's: one evaluation of the cell's loss on them agrees
    assert k.run("print(float(np.abs(W1).sum()) > 0, _bp.params['W1'] is W1)").split() == ["True", "True"]


def test_the_cluster_is_reused_and_pause_step_resume_act_on_every_worker(kernel):
    k = kernel
    k.comms.clear()  # this cell's dashboard and status, not the last one's
    k.iopub.clear()
    started = time.monotonic()
    # --background: the cell returns, so the test can ask the workers between the dashboard's clicks
    k.run(f"%%backprop --workers 2 --steps 100000000 --lr 0.1 --batch-size 64 --reset --background\n{CELL}")
    k.wait_until(lambda: "bpmagic-pause" in k.comms, 240, "the dashboard never appeared")
    k.wait_until(lambda: k.step() >= 20 and "2 workers" in k.status(), 240, "no steps on the workers")
    assert time.monotonic() - started < 10  # no new cluster: starting one takes ~15 s
    k.click("bpmagic-pause")
    k.wait_until(lambda: k.status().startswith("paused at step"), why="Pause was not shown")
    k.run("import time\nt = time.time()\nwhile len({h['step'][-1] for h in _bp.worker_histories()}) != 1 "
          "and time.time() - t < 60: time.sleep(0.05)", timeout=120)
    at = json.loads(k.run("print(json.dumps([h['step'][-1] for h in _bp.worker_histories()]))").strip())
    time.sleep(0.5)
    assert json.loads(k.run("print(json.dumps([h['step'][-1] for h in _bp.worker_histories()]))").strip()) == at
    k.click("bpmagic-step")
    k.wait_until(lambda: k.step() >= at[0] + 1, why="Step did not run")
    k.run("import time\nt = time.time()\nwhile [h['step'][-1] for h in _bp.worker_histories()] != "
          f"[{at[0] + 1}] * 2 and time.time() - t < 60: time.sleep(0.05)", timeout=120)
    assert json.loads(k.run("print(json.dumps([h['step'][-1] for h in _bp.worker_histories()]))").strip()) == \
        [at[0] + 1] * 2
    k.click("bpmagic-pause")  # the same button resumes
    k.wait_steps(20)
    k.click("bpmagic-stop")
    k.run("_bp.wait()")
    assert k.history("step")["status"] == "stopped"


def test_a_nan_on_one_shard_names_the_cell_line(kernel):
    k = kernel
    # one example's feature below -50: sqrt is nan on the shard that holds it (a NaN in the data itself is refused
    # before any step)
    k.run("X[200, 3] = -100.0")
    cell = CELL.replace("+ b2, y)", "+ b2, y) + mean(sqrt(x[:, 3] + 50))")
    msg_id = k.kc.execute(f"%%backprop --workers 2 --epochs 3 --batch-size 64 --reset --no-dashboard\n{cell}")
    k.wait_reply(msg_id, 240)
    k.wait_handled(msg_id)
    errors = "".join(m["content"].get("text", "") for _, m in k.iopub
                     if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream")
    assert "shard of the batch: line 8: sqrt of (32,) produced nan" in errors, errors
    assert "mean(sqrt(x[:, 3] + 50))" in errors, errors[-600:]
    status = json.loads(k.run("import json\nprint(json.dumps([_bp.status, _bp.ended_because, _bp.steps_done, "
                              "[len(h.get('step', [])) for h in _bp.worker_histories()]]))").strip())
    assert status[:2] == ["failed", "non-finite"]
    assert status[3] == [status[2]] * 2  # every worker stopped at the same step
    k.run("X[200, 3] = 0.0")


def test_the_kernels_interrupt_stops_every_worker_at_one_step(kernel):
    k = kernel
    k.comms.clear()
    k.iopub.clear()
    msg_id = k.kc.execute(f"%%backprop --workers 2 --steps 100000000 --batch-size 64 --reset\n{CELL}")
    k.wait_until(lambda: "bpmagic-pause" in k.comms, 240, "the dashboard never appeared")
    k.wait_until(lambda: k.step() >= 20, 240, "no steps on the workers")
    k.km.interrupt_kernel()  # the notebook's Interrupt button
    k.wait_reply(msg_id)
    status = json.loads(k.run("import json\nprint(json.dumps([_bp.status, _bp.steps_done, "
                              "[len(h['step']) for h in _bp.worker_histories()]]))").strip())
    assert status[0] == "interrupted" and status[2] == [status[1]] * 2 and status[1] >= 20


def test_the_dashboards_reset_starts_every_worker_over(kernel):
    k = kernel
    k.comms.clear()
    k.iopub.clear()
    k.run(f"%%backprop --workers 2 --steps 100000000 --batch-size 64 --reset --background\n{CELL}")
    k.wait_until(lambda: "bpmagic-reset" in k.comms, 240, "the dashboard never appeared")
    k.wait_until(lambda: k.step() >= 40, 240, "no steps on the workers")
    k.click("bpmagic-reset")
    k.run("import time\nt = time.time()\nwhile not _bp.previous_attempts and time.time() - t < 60: time.sleep(0.05)",
          timeout=120)
    k.click("bpmagic-stop")
    out = k.run("_bp.wait(60)\nimport json\nprint(json.dumps([_bp.status, len(_bp.previous_attempts), "
                "len(_bp.previous_attempts[0]['step']), _bp.history['loss'][:3] == _bp.previous_attempts[0]['loss'][:3], "
                "[len(h['step']) for h in _bp.worker_histories()], _bp.steps_done]))", timeout=120)
    status, attempts, first_steps, same_start, per_worker, steps = json.loads(out.strip().splitlines()[-1])
    assert status == "stopped" and attempts == 1 and first_steps >= 40 and same_start
    assert per_worker == [steps, steps]


def test_a_run_on_workers_resumes_after_its_kernel_was_killed(kernel, tmp_path):
    """Another kernel trains on its own 2 workers with --checkpoint and is killed mid-run (its engines go with it);
    this one resumes the run on its workers from the file."""
    import os
    import signal

    import bpmagic as bp

    def engines():
        found = set()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"ipyparallel.engine" in command or b"ipengine" in command:
                    found.add(pid)
            except OSError:
                pass
        return found

    path = tmp_path / "run.npz"
    others = engines()
    doomed = Kernel("backprop")
    try:
        doomed.run(SETUP)
        doomed.kc.execute(f"%%backprop --workers 2 --steps 400 --batch-size 64 --pace 50 --background "
                          f"--no-dashboard --checkpoint {path} --every 0.2s\n{CELL}")
        deadline = time.monotonic() + 240
        while not path.exists():
            assert time.monotonic() < deadline, "the workers wrote no checkpoint"
            time.sleep(0.1)
        time.sleep(1.0)
        its_engines = engines() - others
        assert its_engines, "the doomed kernel's engines were not found"
        os.kill(doomed.km.provisioner.process.pid, signal.SIGKILL)
        doomed.km.provisioner.process.wait()
    finally:
        doomed.kc.stop_channels()
    deadline = time.monotonic() + 60  # its engines outlive it until the cluster's watchdog stops them (~1-4 s)
    while its_engines & engines():
        assert time.monotonic() < deadline, "the killed kernel's engines are still running"
        time.sleep(0.2)
    saved = bp.Run.load(path).total_steps
    assert 0 < saved < 400
    out = kernel.run(f"%%backprop --workers 2 --steps 400 --batch-size 64 --no-dashboard --resume {path}\n{CELL}",
                     timeout=300)
    assert f"resumes from {path} at step {saved} of 400" in out, out
    done = kernel.run("print(_bp.status, _bp.steps_done, _bp.history['step'][:2], _bp.history['step'][-1])")
    assert done.split() == ["finished", "400", "[1,", "2]", "400"], done
