"""A NumPy step whose matrix products BLAS would split over threads times itself with one thread and with the
library's count, keeps the faster, and tries again when its calls slow down (backends/blas.py); the count comes back
after every call, and a count the user chose is left alone. In a fresh process without the thread-count variables
(tests/conftest.py sets them for the suite), so that BLAS starts with its own count, one thread per core."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits
    import bpmagic as bp
    from bpmagic.backends import blas

    def blas_threads():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    def mlp(sizes, batch):
        rng = np.random.default_rng(0)
        params = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
            params[f"W{i}"] = (rng.standard_normal((a, b)) / a ** 0.5).astype(np.float32)
            params[f"b{i}"] = np.zeros(b, np.float32)
        def loss_fn(p, x, y):
            h = bp.relu(x @ p["W1"] + p["b1"])
            return bp.cross_entropy(h @ p["W2"] + p["b2"], y)
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], batch)
        return bp.compile_step(loss_fn, params, x, y, optimizer=bp.optim.SGD(lr=0.1), backend="numpy"), x, y

    out = {"start": blas_threads()}
    small, x, y = mlp([64, 128, 10], 64)  # digits: 64x64x128 products, which OpenBLAS would split over the cores
    tiny, *_ = mlp([2, 8, 2], 4)          # OpenBLAS runs these on one thread by itself: nothing to do
    large, *_ = mlp([784, 1024, 10], 512)
    out["choosing"] = [isinstance(s.plan.executable.run, blas.ThreadChoice) for s in (small, tiny, large)]
    seen = []
    probe = blas.ThreadChoice(lambda: seen.append(blas_threads()))  # what a step sees, inside the same wrapper
    [probe() for _ in range(12)]  # a trial: 6 calls with one thread, then 6 with the library's count
    out["inside"], out["after"] = [seen[0], seen[-1]], blas_threads()
    losses = [small(x, y) for _ in range(12)]
    out["after_steps"], out["losses_fall"] = blas_threads(), losses[-1] < losses[0]
    with threadpool_limits(limits=2, user_api="blas") if out["start"][0] != 2 else threadpool_limits(limits=3):
        chosen = blas_threads()
        [probe() for _ in range(12)]
        out["user_chose"], out["inside_user"] = chosen, [seen[-12], seen[-1]]
    print(json.dumps(out))
""")

# a step whose time depends on the thread count it runs with, as a step's does beside a busy neighbour (threads
# slow) or with the cores free (threads fast): the choice follows the machine, call by call
CHOICE = textwrap.dedent("""
    import json, time
    from threadpoolctl import threadpool_info
    from bpmagic.backends import blas

    machine = {"busy": True}
    def step():
        threads = max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")
        # as measured (bench/threads.py, mnist128): one thread takes as long either way; threads are faster with the
        # cores free, and much slower beside a busy neighbour
        time.sleep(0.02 if threads == 1 else 0.08 if machine["busy"] else 0.004)
        return threads

    choice = blas.ThreadChoice(step)
    def calls(n):
        return [choice() for _ in range(n)]

    out = {"trial": calls(12), "chose": choice.one_thread}
    out["held"] = calls(10)
    machine["busy"] = False  # the neighbour stops: one thread is no slower than before, so only the next trial sees it
    out["until_switch"] = calls(28)
    out["chose_free"] = choice.one_thread
    machine["busy"] = True  # the neighbour is back: the held choice's calls slow down, and it is tried again at once
    out["after_busy"] = calls(16)
    out["chose_busy"] = choice.one_thread
    print(json.dumps(out))
""")


def _run(env_extra=None, script=SCRIPT):
    """The JSON the script prints last, run without the suite's thread-count variables (plus `env_extra`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_step_of_products_blas_would_split_chooses_its_thread_count_and_gives_it_back():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: BLAS starts with one thread, there is nothing to limit")
    out = _run()
    start = out["start"]
    assert start and max(start) > 1
    assert out["choosing"] == [True, False, True]
    assert out["inside"] == [[1] * len(start), start] and out["after"] == start
    assert out["after_steps"] == start and out["losses_fall"]
    # the user's own count (threadpoolctl) is left as it is, inside the step too
    assert out["inside_user"] == [out["user_chose"]] * 2 and out["user_chose"] != start


def test_the_choice_follows_the_machine_busy_or_free():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: BLAS starts with one thread, there is nothing to choose")
    out = _run(script=CHOICE)
    one, many = 1, max(out["trial"])
    assert out["trial"] == [one] * 6 + [many] * 6 and out["chose"] is True  # busy: one thread won
    assert set(out["held"]) == {one}
    # free: after the hold (16 calls at first), a trial, and the library's count wins and holds
    switch = out["until_switch"]
    assert switch[:6] == [one] * 6 and switch[6:18] == [one] * 6 + [many] * 6 and switch[18:] == [many] * 10
    assert out["chose_free"] is False
    # busy again: 3 slow calls in a row, a trial at once (not after the hold), one thread again
    again = out["after_busy"]
    assert again[:3] == [many] * 3 and again[3:15] == [one] * 6 + [many] * 6 and out["chose_busy"] is True


def test_a_thread_count_set_in_the_environment_is_left_alone():
    out = _run({"OPENBLAS_NUM_THREADS": "2"})
    assert out["choosing"] == [False, False, False]


SHARE = ("import json\nimport numpy\nfrom threadpoolctl import threadpool_info\nfrom bpmagic.backends import blas\n"
         "blas.share_cores(2)\nprint(json.dumps([d['num_threads'] for d in threadpool_info() "
         "if d['user_api'] == 'blas']))")


def test_workers_on_one_machine_share_its_cores(tmp_path):
    """What each of 2 workers on one node does at its start (train/workers/engine.py): half the cores' threads each,
    not a thread per core each; unless the user set a count."""
    cores = os.cpu_count() or 1
    assert set(_run(script=SHARE)) == {max(1, cores // 2)}
    assert set(_run({"OPENBLAS_NUM_THREADS": "2"}, script=SHARE)) == {2}
