"""Drivers: where a run's training loop (train/loop.py) takes its steps.

- "thread" (the default): a worker thread. The notebook's shell stays free, so widget messages (the dashboard's
  controls) are handled while a cell waits for the run; works on every CPython kernel and frontend.
- "inline": the thread that waits for the run (Run.wait, join, a blocking fit) takes the steps itself: what a Python
  without threads (Pyodide) needs. Nothing trains while nobody waits.
- "asyncio": a task on the running event loop that takes steps for a few tens of milliseconds, then gives the loop
  a turn, so messages handled by that loop (widget messages in JupyterLite) act mid-run. Waiting for the run from
  the loop's own thread takes the steps there, as inline.
- "auto" (fit's default): "thread" where a thread can be started; where not (Pyodide), "asyncio" on the event loop
  (Pyodide's is always there): a blocking cell, waiting in the loop's thread, takes the steps itself as inline does,
  and a run that goes on after the cell (--background, a Resume or Reset from the dashboard) is the loop's task;
  "inline" where there is no event loop either.

Where no other thread exists, nobody can change a control while the waiting thread takes the steps: a paused run
then makes wait() return (it would wait for ever), and a pace is waited out with time.sleep.

Every driver waits out a pause or a pace through the run's Controls, so Pause, Step, Stop, Reset and a new pace act
at once under each; NumPy's floating-point warnings are silenced while steps run (the step's guard reports a NaN
once, clearly).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import signal
import threading
import time

import numpy as np

from .. import threads
from ..errors import BackpropError

#: an asyncio driver gives the event loop a turn at least this often
SLICE = 0.03
#: how often an asyncio driver looks at the controls while it waits out a pause or a pace
POLL = 0.01

_END = object()


def advance(loop, seconds=math.inf):
    """Take steps for up to `seconds`: returns 0 when time is up, what the loop asked to wait for (None: a control
    change; a number: that many seconds), or _END when the loop has ended."""
    until = time.perf_counter() + seconds
    with np.errstate(all="ignore"):
        while True:
            try:
                signal_ = next(loop)
            except StopIteration:
                return _END
            if signal_ != 0:
                return signal_
            if time.perf_counter() >= until:
                return 0


def drive_here(run, loop, finished, deadline=None):
    """Take the loop's steps in this thread until `finished()`, the loop's end, or `deadline` (time.monotonic()).
    In the main thread, Ctrl-C / the kernel's Interrupt ends the run at a step boundary instead of in mid-step.
    Without threads, a pause returns at once: nothing could resume the run while this thread waits."""
    alone = not threads.available()
    with _interrupt_stops(run.controls):
        while not finished():
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return
            wanted = advance(loop, min(left, SLICE))
            if wanted is _END:
                return
            if wanted is None and alone:
                return
            if wanted != 0 and alone:
                time.sleep(min(left, wanted))
            elif wanted != 0:
                run.controls.wait_for_change(min(left, wanted if wanted is not None else math.inf, 0.1))


@contextlib.contextmanager
def _interrupt_stops(controls):
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, lambda *_: controls.stop("interrupted"))
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ThreadDriver:
    name = "thread"

    def __init__(self):
        self._thread: threading.Thread | None = None

    def start(self, run, loop):
        # run in a copy of the caller's context: the worker's output stays with the cell that started it, even
        # after widget messages handled on other threads have changed the kernel's current parent
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._drive, loop, run.controls),
                                        name=f"bpmagic-{run.name}", daemon=True)
        self._thread.start()

    @staticmethod
    def _drive(loop, controls):
        while (wanted := advance(loop)) is not _END:
            if wanted == 0:
                continue
            controls.wait_for_change(wanted)

    def steps_in(self, thread_id) -> bool:
        """True when the thread `thread_id` must take the steps itself while it waits."""
        return False

    def join(self, run, timeout=None):
        if self._thread is not None:
            self._thread.join(timeout)


class InlineDriver:
    name = "inline"

    def __init__(self):
        self.loop = None

    def start(self, run, loop):
        self.loop = loop

    def steps_in(self, thread_id) -> bool:
        return True

    def join(self, run, timeout=None):
        run.wait(timeout)


class AsyncioDriver:
    name = "asyncio"

    def __init__(self, event_loop=None):
        self.loop = None
        self.task = None
        self._thread_id = None
        self._event_loop = event_loop  # None: the one running when the run starts

    def start(self, run, loop):
        event_loop = self._event_loop or threads.event_loop()
        if event_loop is None:
            raise BackpropError("driver='asyncio' needs a running event loop: start the run from a coroutine (or a "
                                "notebook cell, whose kernel runs one), or use driver='thread'")
        self.loop, self._thread_id = loop, threading.get_ident()
        self.task = event_loop.create_task(self._drive(run.controls))

    async def _drive(self, controls):
        while (wanted := advance(self.loop, SLICE)) is not _END:
            if wanted == 0:
                await asyncio.sleep(0)  # the event loop's turn: widget messages are handled now
                continue
            seen, until = controls.writes, time.monotonic() + (math.inf if wanted is None else wanted)
            while controls.writes == seen and time.monotonic() < until:
                await asyncio.sleep(min(POLL, max(until - time.monotonic(), 0)))

    def steps_in(self, thread_id) -> bool:
        return thread_id == self._thread_id  # blocking the loop's own thread: nothing else would take them

    def join(self, run, timeout=None):
        run.wait(timeout)


DRIVERS = {d.name: d for d in (ThreadDriver, InlineDriver, AsyncioDriver)}


def make_driver(name: str):
    if name == "auto":
        return auto_driver()
    if name not in DRIVERS:
        raise BackpropError(f"driver={name!r}: choose one of {', '.join(DRIVERS)}, auto")
    return DRIVERS[name]()


def auto_driver():
    """A worker thread where one can be started; else a task on the event loop; else inline."""
    if threads.available():
        return ThreadDriver()
    event_loop = threads.event_loop()
    return AsyncioDriver(event_loop) if event_loop is not None else InlineDriver()
