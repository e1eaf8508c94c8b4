"""A NumPy step whose matrix products BLAS would split over threads times itself with one thread and with the
library's count, keeps the faster, and tries again when its calls slow down (backends/blas.py); the count comes back
after every call, and a count the user chose is left alone. In a fresh process without the thread-count variables
(tests/conftest.py sets them for the suite), so that BLAS starts with its own count, one thread per core."""
import os
import subprocess
import sys
import textwrap

import pytest

# the cores this process may run on (a CI container may be pinned to fewer than the machine has): BLAS's own count
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

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
    large, *_ = mlp([784, 1024, 10], 512) # threads win by far with the cores free: the library's count
    out["choosing"] = [isinstance(s.plan.executable.run, blas.ThreadChoice) for s in (small, tiny, large)]
    seen = []
    probe = blas.ThreadChoice(lambda: seen.append(blas_threads()))  # what a step sees, inside the same wrapper
    [probe() for _ in range(6)]  # a trial: 5 calls with the library's count, then with one thread
    out["inside"], out["after"] = [seen[0], seen[-1]], blas_threads()
    losses = [small(x, y) for _ in range(12)]
    out["after_steps"], out["losses_fall"] = blas_threads(), losses[-1] < losses[0]
    with threadpool_limits(limits=2, user_api="blas") if out["start"][0] != 2 else threadpool_limits(limits=3):
        chosen = blas_threads()
        [probe() for _ in range(6)]
        out["user_chose"], out["inside_user"] = chosen, [seen[-6], seen[-1]]
    print(json.dumps(out))
""")

# a count set with threadpoolctl before bpmagic first looks is taken as the library's: bpmagic lowers it to one only
# around its own calls, and gives it back
CHOSEN_FIRST = SCRIPT.split('out = {"start"')[0] + textwrap.dedent("""
    chosen = len(os.sched_getaffinity(0)) + 1  # not BLAS's own count
    with threadpool_limits(limits=chosen, user_api="blas"):
        small, x, y = mlp([64, 128, 10], 64)
        seen = []
        probe = blas.ThreadChoice(lambda: seen.append(blas_threads()))
        [probe() for _ in range(6)]  # a trial: 5 calls with the count found, then one thread
        print(json.dumps([seen[0], seen[-1], blas_threads()]))
""")

# steps on other threads than the first to set a count (threadpoolctl >= 3.8 lets only that thread set it again,
# silently) set it and give it back too, calls overlapping or not
ON_THREADS = SCRIPT.split('out = {"start"')[0] + textwrap.dedent("""
    import threading, time
    start = blas_threads()
    main = blas.ThreadChoice(lambda: time.sleep(0.002))
    [main() for _ in range(6)]  # the main thread sets the count first (its one-thread calls)
    inside = []
    def on_a_thread(calls=30):
        step = blas.ThreadChoice(lambda: (inside.append(blas_threads()), time.sleep(0.01)))
        [step() for _ in range(calls)]
    workers = [threading.Thread(target=on_a_thread) for _ in range(2)]
    [w.start() for w in workers]
    [main() for _ in range(100)]  # overlapping: one thread while any of them is inside a one-thread call
    [w.join() for w in workers]
    alone = threading.Thread(target=on_a_thread, args=(8,))  # not overlapping: a trial's calls with the count
    alone.start()
    alone.join()
    print(json.dumps([start, sorted({tuple(c) for c in inside}), blas_threads()]))
""")


# a step whose time depends on the thread count it runs with, as a step's does beside a busy neighbour (threads
# slow) or with the cores free (threads fast): the choice follows the machine
CHOICE = textwrap.dedent("""
    import json, time
    from threadpoolctl import threadpool_info
    from bpmagic.backends import blas

    machine = {"busy": True, "threaded_at": -1.0}
    def step():
        threads = max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")
        # as measured (bench/threads.py, mnist128): one thread takes as long either way; threads are faster with the
        # cores free, and much slower beside a busy neighbour, where they also slow a one-thread call for the 0.1 s
        # they spin after their product (they take its core)
        if threads > 1:
            time.sleep(0.08 if machine["busy"] else 0.004)
            machine["threaded_at"] = time.perf_counter()
        else:
            spun = machine["busy"] and time.perf_counter() - machine["threaded_at"] < 0.1
            time.sleep(0.2 if spun else 0.02)
        return threads

    # a hold of 1 s (0.5 s in use, doubling to 64 s), a slowdown that lasts 0.3 s (1 s in use): a short test
    blas.ThreadChoice.HOLD, blas.ThreadChoice.RISE_FOR = 1.0, 0.3
    choice = blas.ThreadChoice(step)
    def until(chosen, limit=300):
        calls = []
        while choice.one_thread is not chosen and len(calls) < limit:
            calls.append(choice())
        return calls

    out = {"trial": until(True)}  # busy
    out["held"] = [choice() for _ in range(10)]  # 0.2 s of the first hold, 1 s
    machine["busy"] = False  # the neighbour stops: one thread is no slower than before: the next trial sees it
    t0 = time.perf_counter()
    out["free"], out["free_after"] = until(False), time.perf_counter() - t0
    machine["busy"] = True  # the neighbour is back: the held choice's calls slow down, and it is tried again at once
    t0 = time.perf_counter()
    out["slow"] = until(None, limit=20)
    out["tried_after"] = time.perf_counter() - t0
    out["busy"] = until(True)
    # paused longer than IDLE x the hold (2 x 1 s here) while the neighbour left: tried again at the first call after
    blas.ThreadChoice.IDLE = 2.0
    machine["busy"] = False
    time.sleep(2.2)
    out["resumed"] = until(False)
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
    if CORES < 2:
        pytest.skip(f"{CORES} core: BLAS starts with one thread, there is nothing to limit")
    out = _run()
    start = out["start"]
    assert start and max(start) > 1
    assert out["choosing"] == [True, False, False]  # the large: threads win by far on free cores, and keep them
    assert out["inside"] == [start, [1] * len(start)] and out["after"] == start
    assert out["after_steps"] == start and out["losses_fall"]
    # the user's own count (threadpoolctl) is left as it is, inside the step too
    assert out["inside_user"] == [out["user_chose"]] * 2 and out["user_chose"] != start


def test_the_choice_follows_the_machine_busy_or_free():
    if CORES < 2:
        pytest.skip(f"{CORES} core: BLAS starts with one thread, there is nothing to choose")
    out = _run(script=CHOICE)
    one, many = 1, max(out["trial"])

    def is_trial(calls):  # 5 calls with threads (the first 2 uncounted), then one thread: the calls while the threads
        k = calls.index(many)  # would still spin (0.15 s) uncounted, then 3 counted
        return calls[k:k + 5] == [many] * 5 and set(calls[k + 5:]) == {one} and len(calls[k + 5:]) >= 3

    assert many > one and is_trial(out["trial"])  # busy: one thread won
    assert set(out["held"]) == {one}
    # free: the hold runs out (1 s from the choice), a trial, and the library's count wins
    assert out["free"][0] == one and is_trial(out["free"]) and out["free_after"] >= 1.0 - 0.2 - 0.05
    # busy again: slow calls for longer than RISE_FOR (0.3 s here: 4 calls), then a trial before the hold (1 s)
    # has run out; one thread again
    assert set(out["slow"]) == {many} and 3 <= len(out["slow"]) <= 5 and 0.3 <= out["tried_after"] < 1.0
    assert is_trial(out["busy"])
    # resumed after a pause in which the neighbour left: its first call (one thread, held) ends the hold, a trial,
    # and the library's count wins (counted in the step's own time alone, the hold had 50 one-thread calls to go)
    assert out["resumed"][0] == one and out["resumed"].index(many) == 1 and is_trial(out["resumed"])


def test_a_count_set_before_bpmagic_first_looks_is_lowered_only_around_its_calls():
    if CORES < 2:
        pytest.skip(f"{CORES} core: BLAS starts with one thread, there is nothing to limit")
    assert _run(script=CHOSEN_FIRST) == [[CORES + 1], [1], [CORES + 1]]


def test_steps_on_other_threads_set_the_count_and_give_it_back():
    if CORES < 2:
        pytest.skip(f"{CORES} core: BLAS starts with one thread, there is nothing to limit")
    start, inside, after = _run(script=ON_THREADS)
    assert inside == [[1], start] and after == start


def test_a_thread_count_set_in_the_environment_is_left_alone():
    out = _run({"OPENBLAS_NUM_THREADS": "2"})
    assert out["choosing"] == [False, False, False]


SHARE = ("import json\nimport numpy\nfrom threadpoolctl import threadpool_info\nfrom bpmagic.backends import blas\n"
         "blas.share_cores(2)\nprint(json.dumps([d['num_threads'] for d in threadpool_info() "
         "if d['user_api'] == 'blas']))")


def test_workers_on_one_machine_share_its_cores(tmp_path):
    """What each of 2 workers on one node does at its start (train/workers/engine.py): half the cores' threads each,
    not a thread per core each; unless the user set a count."""
    assert set(_run(script=SHARE)) == {max(1, CORES // 2)}
    assert set(_run({"OPENBLAS_NUM_THREADS": "2"}, script=SHARE)) == {2}
