"""How many BLAS threads a NumPy step's matrix products get.

OpenBLAS's threads spin while they wait for work, so a step whose GEMMs are split over every core becomes many times
slower as soon as another process is busy on the machine: the product waits for a thread that is not running (a
classroom server, a second notebook, a neighbour's tests). Measured on a 2-core machine (bench/threads.py, and per
GEMM): 128x128x128 gains at best 1.4x from a second thread alone, and is 51x slower with it beside a one-thread busy
neighbour (median 195 µs -> 10 ms); lab 07's 690 steps took 0.8 s alone and 58 s beside a busy matmul loop. Yet with
the cores free, threads pay: bench's mnist128 step (64x784x128 products) 433 µs on one thread, 311 on two; beside
the neighbour 401 on one, 1.00 ms on two. No fixed count is right for both, and which one a learner's machine is
in changes while a run trains (a classmate starts a run on the same server).

So a step whose products OpenBLAS would split (more than it runs on one thread by itself) but whose largest is below
THREADS_WIN times itself both ways and keeps the faster (ThreadChoice): a few calls each; then the faster for a while
— twice as long each time the same one wins again — or until its calls have taken twice as long as when it won for a
second (a neighbour started). One thread is set around a call and the count given back after it. Larger products keep
the library's count: threads win there by 1.6-2x on free cores (bench's mnist, 512x784x1024), and a trial's
one-thread calls cost more than the choice saves, more so where other libraries' threads (JAX's, PyTorch's) run in
the same process and blur what a trial measures (mnist in bench/run.py: 1.07x JAX with the library's count, 1.2-1.4x
choosing) — beside a busy neighbour that trade-off is the user's (OPENBLAS_NUM_THREADS=1 or threadpoolctl choose one
thread). A count the user chose is never changed: not when a thread-count variable is set in the environment, nor
when the count is not what it was when bpmagic first looked (threadpoolctl or the library's own set_num_threads
called since); a count above one set before that is taken as the library's (bpmagic only ever lowers it to one,
around its calls).
"""
from __future__ import annotations

import math
import os
import threading
import time

# a user who sets one of these has chosen: bpmagic leaves every BLAS's thread count alone
USER_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS")
# OpenBLAS runs a GEMM of up to 65536 x GEMM_MULTITHREAD_THRESHOLD (4) multiply-adds on one thread by itself
# (interface/gemm.c): a step of such products (xor, the small RNNs) needs nothing, and pays nothing (~3 µs a step)
BLAS_ALONE = 65536 * 4
# from here up (~0.2 ms of one core's work per product) a second free core measured 1.75-1.85x faster
THREADS_WIN = 1 << 23


def largest_product(graph) -> int:
    """The multiply-adds m*k*n of the graph's largest single matrix product (per matrix of a stack), 0 if none."""
    largest = 0
    for e in graph.eqns:
        if e.primitive.name == "matmul":
            a, b = (tuple(v.shape) for v in e.inputs)
            if len(a) >= 2 and len(b) >= 2:
                largest = max(largest, a[-2] * a[-1] * b[-1])
    return largest


def choosing(graph) -> bool:
    """Whether a step of `graph` chooses its BLAS thread count (the module's doc says why)."""
    return BLAS_ALONE < largest_product(graph) < THREADS_WIN


class _OneThread:
    """Sets every BLAS's thread count to 1 around the calls of steps that want it, and back after the last of
    them ends (steps may run on several threads of a kernel at once: %%backprop trains on a thread of its own)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._libraries = None  # threadpoolctl's controllers of the BLAS libraries loaded, found at the first step
        self._first = None  # their thread counts then: what bpmagic may restore, and change only while still so
        self._running = set()  # the threads with a call under way (a step's call never nests another's)
        self._saved = None  # the counts to give back, while set to 1

    def _find(self):
        if self._libraries is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # Pyodide has no threads to limit
                self._libraries = []
            else:  # ~0.3 ms: once per process
                self._libraries = ThreadpoolController().select(user_api="blas").lib_controllers
            self._first = [lib.get_num_threads() for lib in self._libraries]
        return self._libraries

    def can_limit(self) -> bool:
        """Whether any BLAS here runs more than one thread (none in Pyodide, nor on one core). A count above one
        set before bpmagic first looked is taken as the library's: bpmagic only ever lowers it to one, around its
        own calls."""
        with self._lock:
            self._find()
            return max(self._first, default=1) > 1

    @staticmethod
    def _set(libraries, counts):
        for lib, count in zip(libraries, counts):
            # threadpoolctl >= 3.8 lets only the first thread that set OpenBLAS's count set it again, silently: the
            # count is process-wide, bpmagic's changes are serialized by its lock, and its steps run on any thread
            clear = getattr(type(lib), "clear_controlling_thread", None)
            if clear is not None:
                clear(force=True)
            lib.set_num_threads(count)

    def enter(self):
        with self._lock:
            libraries = self._find()
            me = threading.get_ident()
            # a KeyboardInterrupt may have cut an exit short: this thread's own mark, or one of a thread that ended
            self._running.discard(me)
            if self._running:
                self._running &= {t.ident for t in threading.enumerate()}
            if not self._running:
                if self._saved is not None:  # ... and left the counts at one: give them back first
                    self._set(libraries, self._saved)
                    self._saved = None
                counts = [lib.get_num_threads() for lib in libraries]
                if counts == self._first and max(counts, default=1) > 1:
                    self._saved = counts  # first: set to one, the counts are known to be owed back
                    self._set(libraries, [1] * len(libraries))
            self._running.add(me)

    def exit(self):
        """After enter(), or where a KeyboardInterrupt stopped it before it was done: then nothing to undo."""
        with self._lock:
            self._running.discard(threading.get_ident())
            if not self._running and self._saved is not None:
                self._set(self._libraries, self._saved)
                self._saved = None


_one_thread = _OneThread()


def usable_cores() -> int:
    """The cores this process may run on (a container may be pinned to fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def user_chose() -> bool:
    return any(os.environ.get(v) for v in USER_VARIABLES)


class ThreadChoice:
    """A step (`run`) that times its calls with the library's thread count and with one thread, and keeps the faster.

    A trial: WAKE + TRIAL calls with the library's count (the first WAKE not counted: they wake the threads, and on
    a virtual machine the idle core), then calls with one thread, counted once SPIN seconds have passed since the
    last threaded call (OpenBLAS's idle threads spin that long, measured ~0.1 s: beside a busy neighbour they take
    the one thread's core), TRIAL of them; compared by their medians, the library's count wins only when faster by
    EDGE (a near tie keeps one thread, which a busy neighbour cannot slow down much). The winner then holds for
    `hold` seconds of the step's own calls (HOLD at first, doubled up to LONGEST_HOLD each time the same one wins
    again: counted in the step's time, not the clock's, so that a trial's cost stays the same share of the step's
    work however much else the process does between steps — loading batches, validating, other libraries' steps in
    a benchmark, where a clock's hold made trials three times as frequent per step), or IDLE x `hold` seconds of the
    clock (a run paused, or paced to a few steps a second, still sees a neighbour leave), or until its calls
    have taken RISE x its trial median, RISEN of them in a row and for RISE_FOR seconds (a neighbour makes threads
    2-50x slower for as long as it runs; not a moment's slowdown: a garbage collection, another library's threads
    spinning in the same process): then a trial again. A first hold is short: a trial may measure calls made among
    other work (a first step, a check beside other libraries' steps) that a run's loop will not repeat. A trial
    costs ~SPIN seconds of one-thread calls (mnist128: ~50 ms, 0.08% of the longest hold). Calls that raise (a
    refused step ends early) are not counted. Steps running on several threads at once may each see the other's
    choice of count for a call: a choice is only ever a speed."""

    WAKE, TRIAL, EDGE, SPIN = 2, 3, 0.9, 0.15
    HOLD, LONGEST_HOLD, IDLE = 0.5, 64.0, 4.0
    RISE, RISEN, RISE_FOR = 2.0, 3, 1.0

    def __init__(self, run):
        self.run = run
        self.one_thread = None  # the choice holding (True: one thread), None during a trial
        self.hold = self.HOLD
        self._won = None  # the last trial's winner and its median (None after a slowdown: the hold starts over)
        self._threaded_at = -math.inf  # when the last call with threads ended
        self._own = 0.0  # the time spent in this step's calls so far
        self._since = 0.0  # self._own when the choice was made
        self._chosen_at = 0.0  # ... and the clock's time then
        self._rising_since = 0.0  # when the calls began to take longer (the clock's time)
        self._risen = 0
        self._start_trial()

    def __call__(self, *inputs):
        one = self.one_thread if self.one_thread is not None else len(self._threaded) >= self.WAKE + self.TRIAL
        try:
            if one:
                _one_thread.enter()
            start = time.perf_counter()
            result = self.run(*inputs)
            self._count(one, start, time.perf_counter())
            return result
        finally:
            if one:
                _one_thread.exit()

    def _count(self, one, start, end):
        spinning = start - self._threaded_at < self.SPIN  # the threads of an earlier call may still hold a core
        self._own += end - start
        if not one:
            self._threaded_at = end
        if self.one_thread is None:
            if not one:
                self._threaded.append(end - start)
            elif not spinning:
                self._alone.append(end - start)
                # >=, and both runs checked: a call begun before this trial may end in it (steps on two threads)
                if len(self._alone) >= self.TRIAL and len(self._threaded) > self.WAKE:
                    self._decide(end)
            return
        won = self._won
        if (one and spinning) or won is None:  # None: another thread's call has just begun a trial
            return
        if end - start <= self.RISE * won[1]:
            self._risen = 0
        elif self._risen == 0:
            self._risen, self._rising_since = 1, start
        else:
            self._risen += 1
        if self._risen >= self.RISEN and end - self._rising_since >= self.RISE_FOR:  # something else runs now
            self._start_trial()
            self._won = None
        elif self._own - self._since >= self.hold or end - self._chosen_at >= self.IDLE * self.hold:
            self._start_trial()

    def _decide(self, now):
        def median(times):
            return sorted(times)[len(times) // 2]

        alone, threaded = self._alone, self._threaded[self.WAKE:]
        if not alone or not threaded:  # a trial begun anew by a call on another thread meanwhile
            return
        one, many = median(alone), median(threaded)
        winner = many >= self.EDGE * one
        self.hold = min(2 * self.hold, self.LONGEST_HOLD) if self._won and self._won[0] == winner else self.HOLD
        self._won = (winner, one if winner else many)
        self._since, self._chosen_at, self._risen = self._own, now, 0
        self.one_thread = winner  # last: another thread's call reads it without the lock

    def _start_trial(self):
        self._threaded, self._alone = [], []
        self.one_thread = None


def runner(graph, run):
    """The function that runs a step of `graph` on the NumPy backend: `run` choosing its thread count (ThreadChoice)
    where `choosing(graph)`, else `run` itself (or where the count is the user's)."""
    if user_chose() or not choosing(graph) or not _one_thread.can_limit():
        return run
    return ThreadChoice(run)


def share_cores(processes: int):
    """Give each of `processes` processes that multiply at once on one machine (data-parallel workers on one node)
    its share of the cores as BLAS threads: with every one of them starting a thread per core, N workers would run
    N x cores spinning threads (2 workers on 2 cores, mnist size: 160 ms a step, against 54 ms for one process).
    A count the user chose (a thread-count variable) is left alone."""
    if user_chose():
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=max(1, usable_cores() // max(1, processes)), user_api="blas")
