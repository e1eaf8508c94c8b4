"""Primitives and composites. Each primitive lives in one place with its implementation, shape rule and VJP.

This namespace collects every op under its NumPy-like name (bp.tanh, bp.sum, ...), built-ins and plugins alike:
both are found through the entry-point group ``bpmagic.ops``.
"""
from __future__ import annotations

from .activations import *  # noqa: F401,F403
from .composite import *  # noqa: F401,F403
from .core import PRIMITIVES, Primitive
from .decompositions import *  # noqa: F401,F403
from .elementary import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .special import *  # noqa: F401,F403


def registry() -> dict:
    """name -> op (function or Primitive) for everything the `bpmagic.ops` entry points provide."""
    from ..plugins import load_group

    ops = {}
    for entry in load_group("bpmagic.ops").values():
        if isinstance(entry, Primitive):
            ops[entry.name] = entry
        elif isinstance(entry, type(registry)) or callable(entry) and not hasattr(entry, "__path__"):
            ops[getattr(entry, "__name__", str(entry))] = entry
        else:  # a module: its public names
            for name in getattr(entry, "__all__", ()):
                ops[name] = getattr(entry, name)
    return ops
