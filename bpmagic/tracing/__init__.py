"""Tracing: running the user's Python code on traced values records a Graph, with the user's source lines.

Its modules, bottom up: numpy_dispatch (NumPy's functions, ufuncs and ndarray methods run bpmagic's ops), tracer
(Trace, the recording, and Tracer, the traced value with operator overloads and NumPy's dispatch protocols). The
stack of open traces sits below, in ops.core, where primitives bind into a trace.
"""
from ..ops.core import current_trace
from .tracer import Trace, Tracer, new_trace

__all__ = ["Trace", "Tracer", "new_trace", "current_trace"]
