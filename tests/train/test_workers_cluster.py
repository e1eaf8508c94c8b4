"""bp.fit(..., workers=) on a real ipyparallel cluster of 2 MPI engines (started once for the module): the same
parameters as one process on the global batch, live controls landing at the same step on every worker, pause /
step / stop / interrupt, a NaN on one worker's shard, a worker that raises, a worker killed with SIGKILL."""
import os
import signal
import time

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.train import workers as W
from bpmagic.train.workers import cluster  # noqa: F401  (W.cluster)

pytest.importorskip("ipyparallel")
pytest.importorskip("mpi4py")


@pytest.fixture(scope="module")
def client():
    c = W.connect(2)  # the cluster a kernel would own: started here once (~15 s), shared by every test below
    yield c
    W.shutdown()


def model(rows=96, seed=1):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(rows, 5)), rng.normal(size=(rows, 2))
    params = {"W1": rng.normal(size=(5, 8)) * 0.5, "b1": np.zeros(8), "W2": rng.normal(size=(8, 2)) * 0.5,
              "b2": np.zeros(2)}

    def loss_fn(p, x, y):
        h = bp.tanh(x @ p["W1"] + p["b1"])
        return ((h @ p["W2"] + p["b2"] - y) ** 2).mean()

    return loss_fn, params, X, Y


def first_change(history, column="lr"):
    values = history[column]
    return next(s for s, a, b in zip(history["step"][1:], values, values[1:]) if a != b)


@pytest.mark.parametrize("make", [lambda: bp.optim.SGD(lr=0.1), lambda: bp.optim.SGD(lr=0.05, momentum=0.9),
                                  lambda: bp.optim.Adam(lr=0.01)], ids=["sgd", "momentum", "adam"])
def test_two_workers_train_as_one_process_on_the_global_batch(client, make):
    loss_fn, params, X, Y = model()
    alone = {k: v.copy() for k, v in params.items()}
    run = bp.fit(loss_fn, params, (X, Y), steps=20, batch_size=32, optimizer=make(), backend="numpy", seed=3,
                 workers=client)
    one = bp.fit(loss_fn, alone, (X, Y), steps=20, batch_size=32, optimizer=make(), backend="numpy", seed=3)
    assert run.status == "finished" and run.steps_done == 20
    assert run.describe_workers() == "2 workers · global batch 32"
    np.testing.assert_allclose(run.history["loss"], one.history["loss"], rtol=0, atol=1e-12)
    for name in params:  # the notebook's own arrays hold the result
        np.testing.assert_allclose(params[name], alone[name], rtol=0, atol=1e-12)
    # per-worker gradient norms beside the averaged one; the average is not larger than the larger of the two
    h = run.history
    assert len(h["worker0/grad_norm/1"]) == len(h["worker1/grad_norm/1"]) == len(h["grad_norm/1"]) == 20
    assert all(g <= max(a, b) + 1e-12 for g, a, b in zip(h["grad_norm/1"], h["worker0/grad_norm/1"],
                                                            h["worker1/grad_norm/1"]))
    assert h["worker0/grad_norm/1"] != h["worker1/grad_norm/1"]  # each its own shard
    assert "_workers.allreduce(" in str(run.step)
    # the optimizer's state came back too (momentum, Adam's moments): the run can be saved and trained on
    for name, slots in one.step.state.items():
        for slot, value in slots.items():
            np.testing.assert_allclose(run.step.state[name][slot], value, rtol=0, atol=1e-12)
    assert run.step.step_count == 20


def test_controls_reach_every_worker_at_the_same_step(client):
    loss_fn, params, X, Y = model()
    run = bp.fit(loss_fn, params, (X, Y), steps=10**7, batch_size=32, optimizer=bp.optim.SGD(lr=0.05),
                 backend="numpy", seed=3, workers=client, background=True)
    run.controls.offer_range("lr", 1e-4, 1.0)  # as the dashboard declares its slider's range
    run.wait(until_step=30, timeout=120)
    run.controls.offer("lr", 0.02)  # as a slider's message from the browser is applied
    run.wait(until_step=run.steps_done + 30, timeout=120)
    run.pause()
    deadline = time.monotonic() + 60
    while run.worker_histories()[0]["step"][-1:] != run.worker_histories()[1]["step"][-1:] or not run.steps_done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    paused = [h["step"][-1] for h in run.worker_histories()]
    time.sleep(0.5)
    assert [h["step"][-1] for h in run.worker_histories()] == paused  # no step while paused
    run.step_once()
    run.step_once()
    deadline = time.monotonic() + 60
    while [h["step"][-1] for h in run.worker_histories()] != [paused[0] + 2] * 2:
        assert time.monotonic() < deadline, "two Step clicks did not take two steps on every worker"
        time.sleep(0.05)
    time.sleep(0.3)
    assert [h["step"][-1] for h in run.worker_histories()] == [paused[0] + 2] * 2
    assert run.status == "paused"
    run.resume()
    run.wait(until_step=paused[0] + 20, timeout=120)
    run.stop()
    run.wait(60)
    assert run.status == "stopped"
    histories = run._final_histories
    assert len(histories[0]["step"]) == len(histories[1]["step"]) == run.steps_done > paused[0] + 2
    changed = [first_change(h) for h in histories]
    assert changed[0] == changed[1] and 30 < changed[0] < paused[0]
    assert [h["lr"][changed[0] - 1] for h in histories] == [0.02, 0.02]
    assert [(c.step, c.name, c.new) for c in run.changes()] == [(changed[0], "lr", 0.02)]


def test_reset_starts_every_worker_over_from_the_same_parameters(client):
    loss_fn, params, X, Y = model()
    run = bp.fit(loss_fn, params, (X, Y), steps=10**7, batch_size=32, optimizer=bp.optim.SGD(lr=0.05),
                 backend="numpy", seed=3, workers=client, background=True)
    run.wait(until_step=40, timeout=120)
    run.reset()  # as the dashboard's Reset button does
    deadline = time.monotonic() + 60
    while not run.previous_attempts or run.steps_done < 10:
        assert time.monotonic() < deadline, "the workers did not start over"
        time.sleep(0.05)
    run.stop()
    run.wait(60)
    first, again = run.previous_attempts[0], run.history
    assert len(first["step"]) >= 40 and again["step"][:3] == [1, 2, 3]
    # the same parameters, data order and steps: the new attempt retraces the first one
    n = min(len(first["loss"]), len(again["loss"]))
    np.testing.assert_allclose(again["loss"][:n], first["loss"][:n], rtol=0, atol=1e-12)
    assert [len(h["step"]) for h in run._final_histories] == [run.steps_done] * 2
    with pytest.raises(bp.BackpropError, match="has ended"):
        run.reset()


def test_interrupt_stops_every_worker(client):
    loss_fn, params, X, Y = model()
    run = bp.fit(loss_fn, params, (X, Y), steps=10**7, batch_size=32, backend="numpy", workers=client,
                 background=True)
    run.wait(until_step=10, timeout=120)
    run.interrupt()
    assert run.done and run.status == "interrupted"
    assert len(run._final_histories[0]["step"]) == len(run._final_histories[1]["step"]) == run.steps_done


def test_a_nan_on_one_shard_makes_every_worker_skip_the_same_step(client):
    plain, params, X, Y = model()
    X[77, 2] = -100.0  # in one worker's part of some batch of the first epoch: its sqrt is nan (a NaN in the data
    before = {k: v.copy() for k, v in params.items()}  # itself is refused before any step)

    def loss_fn(p, x, y):
        return plain(p, x, y) + bp.mean(bp.sqrt(x[:, 2] + 50))

    run = bp.fit(loss_fn, params, (X, Y), steps=100, batch_size=32, backend="numpy", seed=3, workers=client)
    assert run.status == "failed" and run.ended_because == "non-finite"
    message = str(run.error)
    assert message.startswith(f"worker {run.error.worker}'s shard of the batch: line ")
    assert "sqrt of (16,) produced nan" in message
    assert len(run._final_histories[0].get("step", [])) == len(run._final_histories[1].get("step", []))
    assert run.steps_done < 3  # the poisoned row comes up within the first epoch's three batches
    assert all(np.isfinite(v).all() for v in params.values())
    if run.steps_done == 0:
        assert all(np.array_equal(params[k], before[k]) for k in params)


def test_a_worker_that_raises_ends_the_run_with_its_message(client):
    loss_fn, params, X, Y = model()
    run = bp.fit(loss_fn, params, (X, Y), steps=10**7, batch_size=32, backend="numpy", workers=client,
                 background=True)
    run.wait(until_step=10, timeout=120)
    client[run.engines[1]].execute(  # worker 1's step fails on its own from its next step on
        f"from bpmagic.train.workers.engine import _WORKERS\nw = _WORKERS[{run.run_id!r}]\n"
        "def broken(*args): raise ZeroDivisionError('worker 1 broke on purpose')\n"
        "w.run.step.measurements.write = broken", block=True)
    run.wait(60)
    assert run.status == "failed" and run.ended_because == "error"
    assert str(run.error) == "worker 1 failed: ZeroDivisionError: worker 1 broke on purpose"
    assert all(np.isfinite(v).all() for v in params.values())


def test_no_mpi_is_one_message_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(W.cluster, "_mpiexec", lambda: "")  # as where no mpiexec is installed
    loss_fn, params, X, Y = model()
    with pytest.raises(W.WorkersError) as e:
        bp.fit(loss_fn, params, (X, Y), steps=1, workers=3)
    assert "there is no MPI here" in str(e.value) and "pip install 'bpmagic[mpi]'" in str(e.value)


def test_in_a_browser_workers_say_they_cannot_start_there(monkeypatch):
    monkeypatch.setattr("sys.platform", "emscripten")  # as Pyodide reports itself
    loss_fn, params, X, Y = model()
    with pytest.raises(W.WorkersError, match="a Python in the browser .JupyterLite, Pyodide. cannot start processes"):
        bp.fit(loss_fn, params, (X, Y), steps=1, workers=2)


def test_a_run_on_workers_checkpoints_and_resumes_as_if_never_stopped(client, tmp_path):
    loss_fn, params, X, Y = model()
    start = {k: v.copy() for k, v in params.items()}
    whole = bp.fit(loss_fn, {k: v.copy() for k, v in start.items()}, (X, Y), steps=20, batch_size=32,
                   optimizer=bp.optim.Adam(lr=0.01), seed=3, workers=client)
    path = tmp_path / "run.npz"
    cut = bp.fit(loss_fn, {k: v.copy() for k, v in start.items()}, (X, Y), steps=20, batch_size=32,
                 optimizer=bp.optim.Adam(lr=0.01), seed=3, workers=client, checkpoint=path,
                 checkpoint_every="4 steps", background=True, pace=5)  # slow: stops mid-run however late the relay
    cut.wait(until_step=7).stop().join()
    saved = bp.Run.load(path)
    assert 7 <= saved.total_steps < 20 and saved.total_steps == cut.steps_done  # the end saved the last step
    resumed = bp.fit(loss_fn, {k: v.copy() for k, v in start.items()}, (X, Y), steps=20, batch_size=32,
                     optimizer=bp.optim.Adam(lr=0.01), seed=3, workers=client, resume=path)
    assert resumed.status == "finished" and resumed.steps_done == 20
    for name in start:
        np.testing.assert_array_equal(resumed.params[name], whole.params[name])
    assert resumed.history["loss"] == whole.history["loss"]
    assert resumed.history["worker1/grad_norm/1"] == whole.history["worker1/grad_norm/1"]


def test_a_schedule_and_early_stopping_on_workers_act_as_in_one_process(client):
    """The workers follow the same cosine schedule step by step and decide to stop at the same epoch as one process
    on the global batch (the loss they watch is the global batch's; validation runs alike on every worker)."""
    loss_fn, params, X, Y = model()
    alone = {k: v.copy() for k, v in params.items()}
    options = dict(epochs=40, batch_size=32, seed=3, schedule="cosine", early_stop=2, monitor="val_loss",
                   restore_best=True, validation=(X[:24], Y[:24] + 1.0))  # a shifted target: it soon stops improving
    run = bp.fit(loss_fn, params, (X, Y), optimizer=bp.optim.SGD(lr=0.3), workers=client, **options)
    one = bp.fit(loss_fn, alone, (X, Y), optimizer=bp.optim.SGD(lr=0.3), **options)
    assert one.ended_because == "early-stopped" and one.steps_done < 40 * 3  # the test's premise
    assert run.ended_because == "early-stopped" and run.steps_done == one.steps_done
    np.testing.assert_allclose(run.history["lr"], one.history["lr"], rtol=1e-12)  # the schedule, step by step
    for name in params:  # the best epoch's parameters, restored on every worker
        np.testing.assert_allclose(params[name], alone[name], rtol=0, atol=1e-12)


def test_a_class_number_out_of_range_is_refused_before_the_workers_start(client):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    y[45] = 7
    params = {"W": np.zeros((4, 3))}
    with pytest.raises(bp.BackpropError, match=r"y holds class 7 in row 45, but cross_entropy's logits have 3 classes"):
        bp.fit(lambda p, x, y: bp.cross_entropy(x @ p["W"], y), params, (X, y), epochs=1, batch_size=10,
               backend="numpy", workers=client)
    assert not params["W"].any()


def test_a_worker_killed_with_sigkill(client):  # last: the cluster's MPI job cannot be mended afterwards
    loss_fn, params, X, Y = model()
    run = bp.fit(loss_fn, params, (X, Y), steps=10**7, batch_size=32, backend="numpy", workers=client,
                 background=True)
    run.wait(until_step=20, timeout=120)
    os.kill(run.info[1]["pid"], signal.SIGKILL)
    run.wait(120)
    assert run.status == "failed"
    message = str(run.error)
    assert message.startswith(f"worker 1 (engine {run.engines[1]}, pid {run.info[1]['pid']} on ")
    assert "died at step" in message and "SIGKILL" in message
    assert f"the last completed step, step {run.steps_done} (rank 0's copy)" in message
    assert len(run._final_histories[0]["step"]) == run.steps_done >= 20
    assert all(np.isfinite(v).all() for v in params.values())
    # the notebook holds rank 0's parameters of that step: one more step from them on one process moves on
    run2 = bp.fit(loss_fn, params, (X, Y), steps=3, batch_size=32, backend="numpy", workers=2)  # a new cluster
    assert run2.status == "finished"
