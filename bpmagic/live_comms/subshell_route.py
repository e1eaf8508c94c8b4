"""Subshell routing: chosen comms' messages handled on a private subshell, off the busy main shell (ipykernel 7).

ipykernel 7 has a shell-channel thread that receives every shell message and forwards it to the main shell or to a
subshell thread. This module wraps that forwarding step: a ``comm_msg`` / ``comm_close`` whose ``comm_id`` was
registered with :meth:`Router.add` goes to one private subshell, whatever ``header.subshell_id`` the frontend sent
(none: VS Code, Notebook 7, JupyterLab with comms over subshells off; or JupyterLab's own subshell, which
ipykernel 7.4 routes back to the shell that created the comm, the busy main one). Everything else goes through
ipykernel's own routing, unchanged. The subshell runs ipykernel's normal ``dispatch_shell``, so busy/idle and the
widget's echo are published with the comm_msg as parent (the ipywidgets frontend waits for that idle).

ipykernel has no public API for this: the router uses private internals, read and verified in 7.0 to 7.4, and is
chosen by checking that each of them is there (:func:`missing`), not by version number:
kernel.shell_channel_thread (.io_loop, .manager), kernel.shell_stream, kernel.shell_channel_thread_main,
dispatch_shell(..., subshell_id), SubshellManager._create_subshell and .get_shell_channel_to_subshell_socket.
"""
from __future__ import annotations

import inspect
import threading

_COMM_TYPES = frozenset({"comm_msg", "comm_close"})
DELIM = b"<IDS|MSG>"  # jupyter_client.session.DELIM
#: ipykernel versions whose internals this module was read against and tested on.
VERIFIED = "7.0-7.4"


def missing(kernel) -> str | None:
    """Why the router cannot work on `kernel` (the first missing piece), or None when everything it uses is there."""
    sct = getattr(kernel, "shell_channel_thread", None)
    if sct is None:
        return "no shell-channel thread"
    if getattr(kernel, "shell_stream", None) is None or getattr(sct, "io_loop", None) is None:
        return "no shell stream on the shell-channel thread"
    if not inspect.iscoroutinefunction(getattr(kernel, "shell_channel_thread_main", None)):
        return "no shell_channel_thread_main"
    try:
        if "subshell_id" not in inspect.signature(kernel.dispatch_shell).parameters:
            return "dispatch_shell takes no subshell_id"
    except (TypeError, ValueError, AttributeError):
        return "no dispatch_shell"
    try:
        manager = sct.manager  # created by the kernel's start; lazily here, on the main thread, otherwise
    except Exception:
        return "no subshell manager"
    for name in ("_create_subshell", "get_shell_channel_to_subshell_socket"):
        if not callable(getattr(manager, name, None)):
            return f"no SubshellManager.{name}"
    return None


class Router:
    """Lives on the kernel (see :func:`router_of`); install once, then :meth:`add` comms."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.comm_ids: frozenset[str] = frozenset()  # copy-on-write; read on the shell-channel thread
        self.subshell_id: str | None = None
        self.routed = 0
        self.installed = threading.Event()
        self._original = kernel.shell_channel_thread_main  # the bound method ipykernel registers

    def add(self, comm_id: str, live: bool = True) -> None:
        self.comm_ids = (self.comm_ids | {comm_id}) if live else (self.comm_ids - {comm_id})

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


_ATTR = "_bpmagic_subshell_router"


def router_of(kernel) -> Router | None:
    return getattr(kernel, _ATTR, None)


def install(kernel, *, wait: float = 5.0) -> Router:
    """The router of `kernel`, installed first if needed (call only when :func:`missing` says None).

    If the kernel has not started yet (the backprop kernel installs it from ``start``, an extension may load
    earlier), installation waits for the kernel's main loop, after ipykernel has registered its own callback.
    """
    router = router_of(kernel)
    if router is not None:
        return router
    router = Router(kernel)
    setattr(kernel, _ATTR, router)
    sct = kernel.shell_channel_thread
    if getattr(kernel, "io_loop", None) is None:
        from tornado.ioloop import IOLoop

        IOLoop.current().add_callback(lambda: sct.io_loop.add_callback(router._install))
        return router
    sct.io_loop.add_callback(router._install)
    if threading.current_thread() is not sct and wait:
        router.installed.wait(wait)
    return router
