"""Live comms: a widget's messages handled off the busy main shell thread, so controls work during a cell.

While a cell runs, ipykernel's main shell thread is busy, so a widget's ``comm_msg`` (a slider move) would be
applied only after the cell. ipykernel 7 has a shell-channel thread that receives every shell message and forwards
it to the main shell or to a subshell thread. This module wraps that forwarding step: a ``comm_msg`` /
``comm_close`` whose ``comm_id`` was registered with :func:`make_live` goes to one private subshell, whatever
``header.subshell_id`` the frontend sent (none: VS Code, Notebook 7, JupyterLab with comms over subshells off; or
JupyterLab's own subshell, which ipykernel 7.4 would route back to the busy main shell). Everything else goes
through ipykernel's own routing, unchanged. The subshell runs ipykernel's normal ``dispatch_shell``, so busy/idle
and the widget's echo are published with the comm_msg as parent (the ipywidgets frontend waits for that idle).

Private ipykernel API, verified in 7.0 to 7.4: kernel.shell_channel_thread (.io_loop, .manager),
kernel.shell_stream, kernel.shell_channel_thread_main, SubshellManager._create_subshell and
SubshellManager.get_shell_channel_to_subshell_socket. Any other version gets a one-line message and nothing is
patched: updates then apply when the cell ends (or at once with --background).
"""
from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["enable", "make_live", "is_enabled", "status", "SUPPORTED"]

#: ipykernel (major, minor) range whose internals were read and verified.
SUPPORTED = ((7, 0), (7, 4))
_COMM_TYPES = frozenset({"comm_msg", "comm_close"})
_ATTR = "_bpmagic_live_comms"
DELIM = b"<IDS|MSG>"  # jupyter_client.session.DELIM


def _warn(msg: str) -> None:
    print(f"bpmagic: live controls: {msg}", file=sys.stderr)


def _version_ok() -> tuple[bool, str]:
    try:
        import ipykernel

        v = tuple(int(p) for p in ipykernel.__version__.split(".")[:2])
    except Exception as e:  # pragma: no cover - exotic installs
        return False, f"cannot read ipykernel version ({e})"
    if SUPPORTED[0] <= v <= SUPPORTED[1]:
        return True, ipykernel.__version__
    return False, (
        f"ipykernel {ipykernel.__version__} is not one of the verified versions "
        f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]}-{SUPPORTED[1][0]}.{SUPPORTED[1][1]}; "
        "widget updates will apply when the cell ends"
    )


def _current_kernel():
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return getattr(ip, "kernel", None)
    except Exception:
        return None


class _Router:
    """Lives on the kernel as ``kernel._bpmagic_live_comms``."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.comm_ids: frozenset[str] = frozenset()  # copy-on-write; read on shell-channel thread
        self.subshell_id: str | None = None
        self.routed = 0
        self.installed = threading.Event()
        self._original = kernel.shell_channel_thread_main  # bound method ipykernel registers

    # -- runs on the shell-channel thread ------------------------------------------
    def _route(self, msg: list) -> bool:
        """Forward ``msg`` to the private subshell if it is a live comm's message."""
        session = self.kernel.session
        idents, frames = session.feed_identities(msg, copy=False)
        if b'"comm_' not in _raw(frames[1]):  # cheap pre-filter on the packed header
            return False
        # Verifies the HMAC; content=False does not record the signature, so the
        # handler's own deserialize later does not see a "duplicate signature".
        peek = session.deserialize(frames, content=False, copy=False)
        if peek["header"].get("msg_type") not in _COMM_TYPES:
            return False
        if session.unpack(peek["content"]).get("comm_id") not in self.comm_ids:
            return False
        manager = self.kernel.shell_channel_thread.manager
        try:
            sid = self.subshell_id or manager._create_subshell()
            socket = manager.get_shell_channel_to_subshell_socket(sid)
        except KeyError:  # our subshell was deleted by a client: make a new one
            sid = manager._create_subshell()
            socket = manager.get_shell_channel_to_subshell_socket(sid)
        self.subshell_id = sid
        header = session.unpack(_raw(frames[1]))
        if header.get("subshell_id") != sid:
            # dispatch_shell asserts header.subshell_id == the subshell it runs on
            # (for comm messages too before 7.4): re-tag and re-sign the message.
            header["subshell_id"] = sid
            parts = [session.pack(header), _raw(frames[2]), _raw(frames[3]), _raw(frames[4])]
            msg = [*idents, DELIM, session.sign(parts), *parts, *frames[5:]]
        socket.send_multipart(msg, copy=False)
        self.routed += 1
        return True

    async def shell_channel_thread_main(self, msg):
        try:
            if self._route(msg):
                return
        except Exception:
            self.kernel.log.debug("bpmagic live comms: routing failed; using ipykernel's", exc_info=True)
        await self._original(msg)

    def _install(self) -> None:
        # ZMQStream.on_recv replaces the single recv callback; done on the stream's thread.
        self.kernel.shell_stream.on_recv(self.shell_channel_thread_main, copy=False)
        self.installed.set()


def _raw(frame) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)


def enable(kernel=None, *, wait: float = 5.0) -> bool:
    """Install the router on ``kernel`` (default: the running IPython kernel).

    Returns True when installed (or scheduled, if the kernel has not started yet),
    False with a one-line message otherwise.  Idempotent; never raises.
    """
    try:
        kernel = kernel or _current_kernel()
        if kernel is None:
            _warn("no ipykernel kernel here; nothing to do")
            return False
        router = getattr(kernel, _ATTR, None)
        if router is not None:
            return True
        ok, why = _version_ok()
        if not ok:
            _warn(why)
            return False
        sct = getattr(kernel, "shell_channel_thread", None)
        if (
            sct is None
            or getattr(kernel, "shell_stream", None) is None
            or not hasattr(kernel, "shell_channel_thread_main")
            or not hasattr(type(sct), "manager")
        ):
            _warn("this kernel has no shell-channel thread; widget updates apply when the cell ends")
            return False
        from ipykernel.subshell_manager import SubshellManager

        if not all(
            hasattr(SubshellManager, a)
            for a in ("_create_subshell", "get_shell_channel_to_subshell_socket")
        ):
            _warn("unexpected ipykernel internals; widget updates apply when the cell ends")
            return False

        router = _Router(kernel)
        setattr(kernel, _ATTR, router)
        if getattr(kernel, "io_loop", None) is None:
            # Not started yet (extension loaded at start-up): Kernel.start() registers
            # its own callback on the shell stream, so install once the main loop runs.
            from tornado.ioloop import IOLoop

            IOLoop.current().add_callback(lambda: sct.io_loop.add_callback(router._install))
            return True
        sct.io_loop.add_callback(router._install)
        if threading.current_thread() is not sct and wait:
            router.installed.wait(wait)
        return True
    except Exception as e:  # never break the user's cell
        _warn(f"could not enable ({type(e).__name__}: {e}); widget updates apply when the cell ends")
        return False


def make_live(obj: Any, live: bool = True, kernel=None) -> bool:
    """Handle ``obj``'s incoming comm messages off the main shell.

    ``obj``: an ipywidgets Widget, a Comm, or a comm id string.  Returns True if the
    comm will be handled off the main shell, False if that is unavailable here.
    """
    comm_id = obj if isinstance(obj, str) else getattr(getattr(obj, "comm", obj), "comm_id", None)
    if not comm_id:
        _warn(f"{obj!r} has no comm (widget not created in a kernel?)")
        return False
    kernel = kernel or _current_kernel()
    if not enable(kernel):
        return False
    router = getattr(kernel, _ATTR)
    router.comm_ids = (router.comm_ids | {comm_id}) if live else (router.comm_ids - {comm_id})
    return True


def is_enabled(kernel=None) -> bool:
    router = getattr(kernel or _current_kernel(), _ATTR, None)
    return bool(router and router.installed.is_set())


def status(kernel=None) -> dict:
    router = getattr(kernel or _current_kernel(), _ATTR, None)
    if router is None:
        return {"enabled": False}
    return {
        "enabled": router.installed.is_set(),
        "subshell_id": router.subshell_id,
        "live_comms": len(router.comm_ids),
        "routed": router.routed,
    }
