"""What this Python can run beside the code that calls it: threads (CPython), or only tasks on its event loop.

Pyodide (the Python of JupyterLite) is CPython compiled to WebAssembly without threads: `threading` imports and
its locks work, but starting a thread raises RuntimeError("can't start new thread"). So bpmagic asks, by trying,
instead of by platform name, and work that would run in a thread (a run's steps, a dashboard following a paused run,
a delayed message) runs as a task on the event loop there. Pyodide's event loop (WebLoop) runs its tasks from the
browser's own loop whenever Python is idle, so it is there even when no coroutine is running.
"""
from __future__ import annotations

import asyncio
import sys
import threading


def available() -> bool:
    """True when this Python can start a thread (tried each time: a few tens of microseconds)."""
    try:
        probe = threading.Thread(target=lambda: None, name="bpmagic-thread-probe", daemon=True)
        probe.start()
    except RuntimeError:
        return False
    probe.join()
    return True


def event_loop():
    """The event loop that takes tasks now: the running one, or Pyodide's WebLoop; None when there is none."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if sys.platform == "emscripten":
        return asyncio.get_event_loop()
    return None


def every(interval: float, fn, stop: threading.Event, name: str) -> bool:
    """Call `fn()` every `interval` seconds until `stop` is set: in a daemon thread, else as a task on the event
    loop. False when neither can be had (then nothing is called)."""
    if available():
        def follow():
            while not stop.wait(interval):
                fn()

        threading.Thread(target=follow, name=name, daemon=True).start()
        return True
    loop = event_loop()
    if loop is None:
        return False

    async def follow_async():
        while not stop.is_set():
            await asyncio.sleep(interval)
            if not stop.is_set():
                fn()

    loop.create_task(follow_async(), name=name)
    return True


def later(delay: float, fn) -> None:
    """Call `fn()` once, `delay` seconds from now: on a timer thread, else on the event loop, else at once."""
    if available():
        timer = threading.Timer(delay, fn)
        timer.daemon = True
        timer.start()
        return
    loop = event_loop()
    if loop is None:
        fn()
    else:
        loop.call_later(delay, fn)
