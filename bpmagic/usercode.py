"""The user's code: which frames are theirs, the line they wrote, and an error put in front of that line.

The bottom of the house: everything that names the user's line (a traced equation, an error, IPython's short
traceback) finds it here, so this module imports nothing of bpmagic. A frame is the user's when its file is neither
bpmagic's, the standard library's, nor an installed library's (NumPy's, say).
"""
from __future__ import annotations

import linecache
import os
import sys
import sysconfig
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIBRARY_DIRS = tuple({os.path.join(sysconfig.get_paths()[k], "") for k in ("stdlib", "purelib", "platlib")})


@dataclass(frozen=True)
class Source:
    """Where the user wrote the operation."""

    filename: str
    lineno: int
    line: str = ""

    def __str__(self):
        return f"line {self.lineno}"


def is_users(filename) -> bool:
    return not filename.startswith((_PACKAGE_DIR,) + _LIBRARY_DIRS) and not filename.startswith("<frozen")


def user_source() -> Source | None:
    """The innermost frame of the user's own code (not bpmagic's, NumPy's or another library's): where the user
    wrote the current operation. A NumPy function handed a list of traced values runs inside NumPy first."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if is_users(filename):
            return source_of(frame, frame.f_lineno)
        frame = frame.f_back
    return None


def source_of(frame, lineno) -> Source:
    filename = frame.f_code.co_filename
    return Source(filename, lineno, linecache.getline(filename, lineno, frame.f_globals).strip())


def innermost_frame(e):
    """The frame in which exception `e` was raised."""
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame


def user_frames(e):
    """(frame, line) of each frame of the user's code in `e`'s traceback, outermost first."""
    frames = []
    tb = e.__traceback__
    while tb is not None:
        if is_users(tb.tb_frame.f_code.co_filename):
            frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def calling_line(e) -> Source | None:
    """The outermost frame of the user's code in `e`'s traceback: the line they ran."""
    frames = user_frames(e)
    return source_of(*frames[0]) if frames else None


def at_source(source, error: Exception) -> Exception:
    """`error` with the user's line in front of its message (once), and that line as its `source`."""
    msg = str(error)
    if getattr(error, "source", None) is not None:  # located already (by the equation that raised it)
        return error
    if source is not None and not msg.startswith("line "):
        where = f"line {source.lineno}"
        if source.filename and not source.filename.startswith("<"):
            where = f"{os.path.basename(source.filename)}, {where}"
        msg = f"{where}: {msg}" + (f"\n    {source.line}" if source.line else "")
    new = type(error)(msg)
    new.source = source
    return new
