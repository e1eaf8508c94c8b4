"""The user's code: which frames are theirs, the line they wrote, and an error put in front of that line.

The bottom of the house: everything that names the user's line (a traced equation, an error, IPython's short
traceback) finds it here, so this module imports nothing of bpmagic. A frame is the user's when its file is neither
bpmagic's, the standard library's, nor an installed library's (NumPy's, say).
"""
from __future__ import annotations

import ast
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

    @property
    def assignment(self) -> tuple | None:
        """(its first line, the name) of the statement on this line if it assigns one name (`h = tanh(z)`,
        `loss: Loss = ...`, also written over several lines)."""
        return assignment_at(self.filename, self.lineno)


# filename -> (the source lines it was read from, {lineno: (statement's first line, name it assigns)}): each source is parsed once, by
# the cell parser for a %%backprop cell, else here on first use; a changed file (other lines) is read again
_ASSIGNED: dict = {}


def record_assignments(filename: str, tree: ast.AST) -> None:
    """What the cell parser knows: the name each statement of the cell's parsed `tree` assigns, by line. The cell's
    lines must be in linecache already (as IPython's and the cell parser's are)."""
    _ASSIGNED[filename] = (linecache.getlines(filename), _assignments(tree))


def assignment_at(filename: str, lineno: int) -> tuple | None:
    lines = linecache.getlines(filename)
    known = _ASSIGNED.get(filename)
    if known is None or known[0] is not lines:
        try:
            names = _assignments(ast.parse("".join(lines), filename))
        except (SyntaxError, ValueError):
            names = {}
        if len(_ASSIGNED) > 1024:  # every notebook cell is a file of its own: forget the old ones
            _ASSIGNED.clear()
        known = _ASSIGNED[filename] = (lines, names)
    return known[1].get(lineno)


def _assignments(tree) -> dict:
    """{lineno: (first line, name)} for every statement assigning one name, on each line it spans."""
    names = {}
    for node in ast.walk(tree):
        target = (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                  else node.target if isinstance(node, ast.AnnAssign) else None)
        # a lambda's values are not the statement's (`g = bp.trace(lambda x: tanh(x), X)` assigns the trace)
        if (isinstance(target, ast.Name) and node.value is not None
                and not any(isinstance(n, ast.Lambda) for n in ast.walk(node.value))):
            for lineno in range(node.lineno, node.end_lineno + 1):
                names.setdefault(lineno, (node.lineno, target.id))
    return names


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


def where(source) -> str:
    """"line 8" in the cell being run; in an earlier notebook cell "cell In[3], line 2", as IPython's tracebacks
    name it (a kernel runs each cell from a file named by its hash); in a file of the user's "helpers.py, line 3"."""
    filename = source.filename
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    cells = getattr(getattr(shell, "compile", None), "_filename_map", None) or {}
    count = cells.get(filename)
    # the cell being run is the one IPython cached last (its count is not execution_count on every IPython)
    if count is not None and filename != next(reversed(cells)):
        return f"cell In[{count}], line {source.lineno}"
    if count is not None:
        return f"line {source.lineno}"
    if not filename or filename.startswith("<"):  # the %%backprop cell itself ("<backprop cell 3>")
        return f"line {source.lineno}"
    return f"{os.path.basename(filename)}, line {source.lineno}"


def at_source(source, error: Exception) -> Exception:
    """`error` with the user's line in front of its message (once), and that line as its `source`."""
    msg = str(error)
    if getattr(error, "source", None) is not None:  # located already (by the equation that raised it)
        return error
    if source is not None and not msg.startswith("line "):
        msg = f"{where(source)}: {msg}" + (f"\n    {source.line}" if source.line else "")
    new = type(error)(msg)
    new.source, new.said = source, str(error)  # said: the message without its place
    return new
