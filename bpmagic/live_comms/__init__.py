"""Live comms: dashboard controls that act while a blocking %%backprop cell runs, on any ipykernel.

While a cell runs, the kernel's main shell thread is busy, so a widget's ``comm_msg`` (a slider move) would be
applied only after the cell. How to get round that depends on the kernel, so it is decided per kernel at run time
by checking what the kernel has, not its version number:

``"subshell"``  the kernel reads its shell on a thread of its own (ipykernel 7): the dashboard's control comms are
                routed to a private subshell (subshell_route.py; private internals, verified on 7.0-7.4), for
                plain and subshell-tagged messages alike. ipykernel 7 offers no public way to do this.
``"ui-poll"``   the kernel reads its shell on the main thread and has ``do_one_iteration`` (ipykernel 6): the waiting
                cell handles the waiting widget messages with jupyter-ui-poll (ui_poll.py), a maintained package
                over that public kernel method.
``"none"``      neither: the controls apply when the cell ends, and the blocking cell says so in one line.
                ``--background`` keeps them live anywhere (the shell is then free).

``BPMAGIC_LIVE_CONTROLS=subshell|ui-poll|off`` forces a choice (``off``: neither), e.g. to compare them, or to
turn the private routing off should a future ipykernel misbehave under it.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any

from . import subshell_route, ui_poll

__all__ = ["choose", "mechanism", "enable", "make_live", "waiting", "status", "MECHANISMS"]

MECHANISMS = ("subshell", "ui-poll")
_CHECKS = {"subshell": subshell_route.missing, "ui-poll": ui_poll.missing}
_ENV = "BPMAGIC_LIVE_CONTROLS"
_NOTICE_SHOWN = "_bpmagic_live_controls_notice_shown"


def _current_kernel():
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None)
    except Exception:
        return None


def choose(kernel=None) -> tuple[str, str | None]:
    """(mechanism, why): the mechanism that keeps `kernel`'s controls live, or ("none", why neither can)."""
    kernel = kernel or _current_kernel()
    if kernel is None:
        return "none", "not in a Jupyter kernel"
    if sys.platform == "emscripten":
        return "none", "in JupyterLite, widget messages reach Python only between cells"
    forced = os.environ.get(_ENV, "").strip().lower()
    if forced == "off":
        return "none", f"{_ENV}=off"
    candidates = [forced] if forced in _CHECKS else list(MECHANISMS)
    reasons = []
    for name in candidates:
        why = _CHECKS[name](kernel)
        if why is None:
            return name, None
        reasons.append(why)
    # the reason that matters: the router's on a kernel with a shell-channel thread, else ui-poll's
    threaded = getattr(kernel, "shell_channel_thread", None) is not None
    return "none", reasons[0] if threaded or len(reasons) == 1 else reasons[-1]


def mechanism(kernel=None) -> str:
    return choose(kernel)[0]


def enable(kernel=None) -> bool:
    """Prepare `kernel` (the backprop kernel does this at start). True when its controls will be live."""
    kernel = kernel or _current_kernel()
    try:
        name, _ = choose(kernel)
        if name == "subshell":
            subshell_route.install(kernel)
        return name != "none"
    except Exception as e:  # never break the kernel or the user's cell
        print(f"bpmagic: live controls: could not enable ({type(e).__name__}: {e})", file=sys.stderr)
        return False


def make_live(obj: Any, live: bool = True, kernel=None) -> bool:
    """Let `obj`'s browser messages apply while a cell runs (an ipywidgets Widget, a Comm or a comm id).

    True when they will; False when this kernel has no way (the blocking cell says so when it starts waiting).
    """
    comm_id = obj if isinstance(obj, str) else getattr(getattr(obj, "comm", obj), "comm_id", None)
    if not comm_id:
        print(f"bpmagic: live controls: {obj!r} has no comm (widget not created in a kernel?)", file=sys.stderr)
        return False
    kernel = kernel or _current_kernel()
    if not enable(kernel):
        return False
    router = subshell_route.router_of(kernel)
    if router is not None:
        router.add(comm_id, live)
    return True  # ui-poll handles every comm while the cell waits


class Waiting:
    """What a blocking cell calls while it waits: ``poll()`` every ``interval`` seconds."""

    def __init__(self, interval: float, poll=None):
        self.interval = interval
        self._poll = poll

    def poll(self) -> None:
        if self._poll is not None:
            self._poll()


@contextmanager
def waiting(controls_shown: bool = True):
    """Around a blocking cell's wait: a :class:`Waiting` that keeps the controls live on this kernel.

    If neither mechanism can, and there are controls on show, one line says so (once per kernel).
    """
    kernel = _current_kernel()
    name, why = choose(kernel)
    if name == "ui-poll":
        with ui_poll.polling() as poll:
            yield Waiting(ui_poll.INTERVAL, poll)
        return
    if name == "none" and controls_shown and kernel is not None and not getattr(kernel, _NOTICE_SHOWN, False):
        setattr(kernel, _NOTICE_SHOWN, True)
        print(f"bpmagic: the controls apply when this cell ends on this kernel ({_kernel_name()}: {why}); "
              "%%backprop --background keeps them live.")
    yield Waiting(0.1)


def _kernel_name() -> str:
    if sys.platform == "emscripten":
        return "Pyodide"
    try:
        import ipykernel

        return f"ipykernel {ipykernel.__version__}"
    except Exception:
        return "not ipykernel"


def status(kernel=None) -> dict:
    """The mechanism in use on `kernel` and, for the subshell router, what it has routed."""
    kernel = kernel or _current_kernel()
    name, why = choose(kernel)
    out: dict = {"mechanism": name, "why_none": why}
    router = subshell_route.router_of(kernel)
    if router is not None:
        out.update(enabled=router.installed.is_set(), subshell_id=router.subshell_id,
                   live_comms=len(router.comm_ids), routed=router.routed)
    return out
