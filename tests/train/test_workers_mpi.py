"""Data-parallel steps without ipyparallel: the allreduce equation in the step graph, the split of a global batch,
and 2 MPI ranks started by mpiexec training exactly as one process does on the global batch (float64, 1e-12)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.backends.collective import Workers
from bpmagic.train.loop import Job
from bpmagic.train.step import CompiledStep

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).parent / "mpiexec"

MODEL = """
import numpy as np
import bpmagic as bp

rng = np.random.default_rng(1)
X = rng.normal(size=(96, 5))
Y = rng.normal(size=(96, 2))
PARAMS = {"W1": rng.normal(size=(5, 8)) * 0.5, "b1": np.zeros(8), "W2": rng.normal(size=(8, 2)) * 0.5,
          "b2": np.zeros(2)}


def loss_fn(p, x, y):
    h = bp.tanh(x @ p["W1"] + p["b1"])
    return ((h @ p["W2"] + p["b2"] - y) ** 2).mean()


def optimizer(kind):
    return {"sgd": bp.optim.SGD(lr=0.1), "momentum": bp.optim.SGD(lr=0.05, momentum=0.9),
            "adam": bp.optim.Adam(lr=0.01)}[kind]
"""

# every rank: its worker of the run (train/workers/engine.py, without ipyparallel); rank 0 saves the result
RANK = MODEL + """
import sys
from bpmagic.train.workers import engine as W
from bpmagic.train.workers.settings import settings_of
from bpmagic.train.workers.spec import worker_spec
from bpmagic.train.controls import Controls

kind, out = sys.argv[1], sys.argv[2]
opt = optimizer(kind)
spec = worker_spec(loss_fn, PARAMS, None, opt, {"W1": "1", "b1": "1", "W2": "2", "b2": "2"}, 32, 20, 3, (), "eq",
                   settings_of(Controls(opt), 0, 0))
info = W.engine_start("eq", spec, (X, Y), None)
run = W._WORKERS["eq"].run
run.wait()
run.join()
assert run.status == "finished", (run.status, run.error)
if info["rank"] == 0:
    np.savez(out, loss=np.array(run.history["loss"]), source=np.array(info["source"]), **run.params)
"""


def _mpi_env():
    return {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _model():
    scope = {}
    exec(MODEL, scope)
    return scope


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_two_ranks_at_batch_b_equal_one_process_at_batch_2b(kind, tmp_path):
    program, out = tmp_path / "rank.py", tmp_path / "rank0.npz"
    program.write_text(RANK)
    done = subprocess.run([str(MPIEXEC), "--oversubscribe", "-n", "2", sys.executable, str(program), kind, str(out)],
                          env=_mpi_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    m = _model()
    params = {k: v.copy() for k, v in m["PARAMS"].items()}
    run = bp.fit(m["loss_fn"], params, (m["X"], m["Y"]), steps=20, batch_size=32, optimizer=m["optimizer"](kind),
                 backend="numpy", seed=3)
    got = np.load(out)
    assert len(got["loss"]) == 20 == run.steps_done
    np.testing.assert_allclose(got["loss"], run.history["loss"], rtol=0, atol=1e-12)
    for name, value in params.items():
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-12)
        assert not np.allclose(value, m["PARAMS"][name])  # it trained
    assert "_workers.allreduce(" in str(got["source"])


def _step(workers):
    m = _model()
    return CompiledStep(m["loss_fn"], {k: v.copy() for k, v in m["PARAMS"].items()}, (m["X"][:16], m["Y"][:16]),
                        bp.optim.SGD(lr=0.1), "numpy", stats=True, workers=workers)


def test_print_step_shows_where_the_workers_meet_before_the_guard():
    source = str(_step(Workers(None, size=2)))
    lines = source.splitlines()
    meet = next(i for i, line in enumerate(lines) if "_workers.allreduce(" in line)
    guard = next(i for i, line in enumerate(lines) if line.strip().startswith("if not (_isfinite("))
    assert any("the 2 workers meet" in line for line in lines[:meet])
    assert meet < guard  # a NaN on one worker's shard reaches every worker's guard through the sum
    assert "shard_weight" in lines[0]
    single = str(_step(None))
    assert "allreduce" not in single and "shard_weight" not in single and "workers" not in single


def test_per_worker_gradient_norms_sit_beside_the_averaged_ones():
    step = _step(Workers(None, size=2))
    m = _model()
    step(m["X"][:16], m["Y"][:16])  # unconnected: this worker's own half of the sum
    stats = step.last.stats
    assert set(stats) >= {"grad_norm/1", "grad_norm/2", "worker0/grad_norm/1", "worker1/grad_norm/2"}
    assert stats["worker1/grad_norm/1"] == 0  # nobody else contributed a row
    # the averaged gradient is this worker's × its share 1/2, and its own norm is its full gradient's
    assert stats["grad_norm/1"] == pytest.approx(stats["worker0/grad_norm/1"] / 2, rel=1e-12)


@pytest.mark.parametrize("rows, workers", [(7, 3), (8, 2), (2, 3), (1, 2)])
def test_a_global_batch_splits_into_consecutive_parts_that_add_up(rows, workers):
    data = [np.arange(20)[:, None] * 1.0]
    order = np.random.default_rng(0).permutation(20)
    job = Job(data, batch_size=rows, total_steps=None, seed=0)
    parts = [Job(data, rows, None, 0, shard=(r, workers)).part(order, 1) for r in range(workers)]
    weights = [w for _, w in parts]
    assert sum(weights) == pytest.approx(1.0)
    taken = np.concatenate([p[0][0] for p, w in zip(parts, weights) if w > 0])
    np.testing.assert_array_equal(taken[:, 0], data[0][order[rows:2 * rows], 0])
    assert job.per_epoch == -(-20 // rows)
    for (batch, _), w in zip(parts, weights):
        assert len(batch[0]) == max(1, round(w * rows))  # an empty share still takes one example, weighted 0


def test_the_workers_option_takes_a_number_or_a_profile():
    from IPython.core.error import UsageError

    from bpmagic.magic import _workers

    assert _workers("2") == 2 and _workers("profile:slurm") == "profile:slurm" and _workers(None) is None
    for bad in ("two", "0", "-1"):
        with pytest.raises(UsageError, match="give a number of workers"):
            _workers(bad)
