"""One BLAS thread for a NumPy step whose matrix products are too small to gain from more.

OpenBLAS's threads spin while they wait for work, so a step whose GEMMs are split over every core becomes many times
slower as soon as another process is busy on the machine: the product waits for a thread that is not running (a
classroom server, a second notebook, a neighbour's tests). Measured on a 2-core machine (bench/threads.py, and per
GEMM): 128x128x128 gains at best 1.4x from a second thread alone, and is 51x slower with it beside a one-thread busy
neighbour (median 195 µs -> 10 ms); lab 07's 690 steps took 0.8 s alone and 58 s beside a busy matmul loop. Products
large enough for threads to pay when the cores are free keep the library's count (bench's mnist step, 512x784x1024
products: 1.8x faster with two threads alone, 3.5x slower with them beside the neighbour): that trade-off is the
user's (OPENBLAS_NUM_THREADS=1, or threadpoolctl, choose one thread).

So: a step whose largest matrix product is between what OpenBLAS already runs on one thread by itself and
THREADS_PAY runs with one BLAS thread, and gets the count back after it. A count the user chose is never changed: not
when a thread-count variable is set in the environment, nor when the count is not what it was when bpmagic first
looked (threadpoolctl or the library's own set_num_threads called since).
"""
from __future__ import annotations

import os
import threading

# a user who sets one of these has chosen: bpmagic leaves every BLAS's thread count alone
USER_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS")
# OpenBLAS runs a GEMM of up to 65536 x GEMM_MULTITHREAD_THRESHOLD (4) multiply-adds on one thread by itself
# (interface/gemm.c): a step of such products (xor, the small RNNs) needs nothing, and pays nothing (~3 µs a step)
BLAS_ALONE = 65536 * 4
# from here up (~0.2 ms of one core's work per product) a second free core measured 1.75-1.85x faster
THREADS_PAY = 1 << 23


def largest_product(graph) -> int:
    """The multiply-adds m*k*n of the graph's largest single matrix product (per matrix of a stack), 0 if none."""
    largest = 0
    for e in graph.eqns:
        if e.primitive.name == "matmul":
            a, b = (tuple(v.shape) for v in e.inputs)
            if len(a) >= 2 and len(b) >= 2:
                largest = max(largest, a[-2] * a[-1] * b[-1])
    return largest


def wants_one_thread(graph) -> bool:
    """Whether a step of `graph` should run with one BLAS thread (the module's doc says why)."""
    return BLAS_ALONE < largest_product(graph) < THREADS_PAY


class _OneThread:
    """Sets every BLAS's thread count to 1 around the calls of steps that want it, and back after the last of
    them ends (steps may run on several threads of a kernel at once)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._libraries = None  # threadpoolctl's controllers of the BLAS libraries loaded, found at the first step
        self._first = None  # their thread counts then: what bpmagic may restore, and change only while still so
        self._running = 0
        self._saved = None

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

    def enter(self):
        with self._lock:
            self._running += 1
            if self._running == 1:
                libraries = self._find()
                counts = [lib.get_num_threads() for lib in libraries]
                self._saved = counts if counts == self._first and max(counts, default=1) > 1 else None
                if self._saved is not None:
                    for lib in libraries:
                        lib.set_num_threads(1)

    def exit(self):
        with self._lock:
            self._running -= 1
            if self._running == 0 and self._saved is not None:
                for lib, count in zip(self._libraries, self._saved):
                    lib.set_num_threads(count)
                self._saved = None


_one_thread = _OneThread()


def user_chose() -> bool:
    return any(os.environ.get(v) for v in USER_VARIABLES)


def with_one_thread(run):
    """`run` (a generated step), called with one BLAS thread."""

    def run_with_one_blas_thread(*inputs):
        _one_thread.enter()
        try:
            return run(*inputs)
        finally:
            _one_thread.exit()

    return run_with_one_blas_thread


def runner(graph, run):
    """The function that runs a step of `graph` on the NumPy backend: `run` itself, or `run` with one BLAS thread."""
    if user_chose() or not wants_one_thread(graph):
        return run
    return with_one_thread(run)


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
    threadpool_limits(limits=max(1, (os.cpu_count() or 1) // max(1, processes)), user_api="blas")
