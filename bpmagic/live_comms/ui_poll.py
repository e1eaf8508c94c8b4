"""UI polling: the blocked cell itself handles the widget messages waiting on the shell (jupyter-ui-poll).

On a kernel that reads its shell socket on the main thread (ipykernel 6), a slider's message sent while a cell runs
waits in the socket until the cell ends. jupyter-ui-poll, a maintained package, lets the running cell handle the
waiting messages through the kernel's public ``do_one_iteration()``: widget messages are handled at once, execute
requests are held back and run, in order, after the cell. ipykernel 7 reads the shell on a thread of its own and
dropped ``do_one_iteration`` in 7.1, where jupyter-ui-poll silently does nothing; so this is chosen only for a
kernel that has ``do_one_iteration`` and no shell-channel thread (:func:`missing`).
"""
from __future__ import annotations

from contextlib import contextmanager

#: seconds between polls while a cell waits: the delay a control's message can sit unhandled
INTERVAL = 0.02
#: messages handled per poll at most: a burst of slider moves is handled in a few polls
EVENTS_PER_POLL = 50


def missing(kernel) -> str | None:
    """Why UI polling cannot work on `kernel`, or None when it can."""
    if getattr(kernel, "shell_channel_thread", None) is not None:
        return "the kernel reads its shell on a thread of its own, which jupyter-ui-poll cannot reach"
    if not callable(getattr(kernel, "do_one_iteration", None)):
        return "the kernel has no do_one_iteration"
    try:
        import jupyter_ui_poll  # noqa: F401
    except ImportError:
        return "jupyter-ui-poll is not installed (pip install jupyter-ui-poll)"
    return None


@contextmanager
def polling():
    """While the cell waits: a function that handles the widget messages waiting on the shell."""
    from jupyter_ui_poll import ui_events

    with ui_events() as poll:
        yield lambda: poll(EVENTS_PER_POLL)
