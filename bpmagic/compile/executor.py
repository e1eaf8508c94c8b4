"""Run a graph on a backend: a straight-line Python function generated once, over buffers reused between calls.

Code generation removes the interpreter loop; buffer planning removes allocation: every primitive that can write
into an `out=` array (ufuncs, matmul, sum) gets a buffer from a pool keyed by shape and dtype, taken back as soon as
the last reader of its value has run. Donated inputs (the parameters and optimizer state of a training step) are
written in place. Outputs are valid until the next call. The plan is data (compile/plan.py); compile/emit.py writes
it as code.
"""
from __future__ import annotations

import itertools
import linecache
import math
import re
import warnings

import numpy as np

from ..ir import Graph
from .emit import BUFFER, emit
from .plan import plan_step

_serial = itertools.count(1)

# A guarded step reports every non-finite loss or gradient itself, once, naming the learner's line (train/step.py);
# NumPy's RuntimeWarning for the same value names our generated code instead ("overflow encountered in dot", the
# guard's own sum of squares), and JAX and PyTorch say nothing there either. A step without guards keeps NumPy's
# warnings, and so does one with values narrower than float32: the guard sums float16 squares in float32, so its
# gradients may pass it and still overflow in the update (Adam's g * g from |g| ~ 256), which only NumPy's warning
# tells.
GUARDED_MODULE = "bpmagic.guarded_step"
_QUIET = ("ignore", None, RuntimeWarning, re.compile(re.escape(GUARDED_MODULE) + r"\Z"), 0)


_quieted = (None, 0)  # the list of filters the guarded steps' filter was last seen in, and its length then


def quiet_guarded_steps():
    """Keep NumPy's RuntimeWarnings from the guarded steps' generated lines quiet (the guard says it better).

    Checked at every compile and every step (~0.1 µs when nothing changed), not once at import: a
    warnings.catch_warnings block (pytest's, a user's own) puts back the list of filters it found when it ends, so a
    step compiled inside one and stepped after it had lost its filter (and resetwarnings() empties the list); a
    filter added in front of it since (simplefilter("error")) would match first. Moved to the front only when the
    list changed: adding a filter resets every module's once-only warning registry."""
    global _quieted
    filters = warnings.filters
    if filters is _quieted[0] and len(filters) == _quieted[1]:
        return
    if not filters or filters[0] != _QUIET:  # first, before a filter added since ("error", "always") that would match
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=_QUIET[3].pattern)  # (moved, if there)
    _quieted = (warnings.filters, len(warnings.filters))


class GuardFailed(Exception):
    """A guard value was not finite: nothing donated has been written."""


class Lowering:
    """What a primitive's lowering rule (Primitive.lowering) may know about the code being generated."""

    def __init__(self, backend, namespace, cuda_graph, matmul_precision):
        self.backend, self.xp = backend, backend.xp
        self.cuda_graph, self.matmul_precision = cuda_graph, matmul_precision
        self._ns = namespace
        self.inputs = ()  # the equation's operands (Vars and Literals: .shape, .dtype)

    def is_pool_buffer(self, name: str) -> bool:
        """Whether `name` is one of the step's pool buffers (C-contiguous, in its value's dtype), not a donated
        input that may be laid out otherwise."""
        return bool(BUFFER.match(name))

    def bind(self, key: str, make):
        """The name under which the generated code sees `make()`, made once per step and shared by all rules."""
        if key not in self._ns:
            self._ns[key] = make()
        return key


class Executable:
    """`graph` compiled for `backend`. Call with the graph's inputs; returns its outputs (a list).

    donate: {output index: input index} — write that output into that input's array, in place.
    guards: output indices that must be finite before any donated array is touched (else GuardFailed).
    On a backend that compiles kernels, runs of elementwise equations are fused (compile/fusion.py);
    cuda_graph: replay the step as CUDA graphs where the backend can capture; matmul_precision: "fp32", "tf32" or
    "bf16" for float32 matmuls on such a backend.
    .plan: the plan as data (compile/plan.py); .source: the code generated from it.
    """

    def __init__(self, graph: Graph, backend, donate=None, guards=(), cuda_graph=False, matmul_precision="fp32"):
        self.graph = graph
        self.backend = backend
        self.donate = dict(donate or {})
        self.guards = list(guards)
        self.matmul_precision = matmul_precision
        # CUDA-graph replay needs a backend that captures, and a matmul it can capture (see the CuPy backend)
        self.cuda_graph = bool(cuda_graph and getattr(backend, "graph_replay", None) and self.guards)
        # on a backend that compiles kernels (CuPy), runs of elementwise equations become one generated kernel
        fuse = fuses(backend)
        self.plan = plan_step(graph, self.donate, self.guards, fuse)
        namespace = {"xp": backend.xp, "GuardFailed": GuardFailed, "_isfinite": _isfinite}
        # a guarded step's NumPy warnings are quiet (float16's are not: its update can overflow past the guard)
        self.quiet = bool(self.guards) and all(np.dtype(v.dtype).itemsize >= 4 for v in graph.inputs
                                               if np.dtype(v.dtype).kind == "f")
        if self.quiet:
            namespace["__name__"] = GUARDED_MODULE  # the module NumPy's warnings from its lines are attributed to
            quiet_guarded_steps()
        lowering = Lowering(backend, namespace, self.cuda_graph, matmul_precision)
        self.source = emit(self.plan, backend, namespace, lowering, split=self.cuda_graph)
        # registered with linecache, so that a traceback through the step shows its generated lines
        filename = f"<bpmagic {graph.name} {next(_serial)}>"
        linecache.cache[filename] = (len(self.source), None, self.source.splitlines(True), filename)
        exec(compile(self.source, filename, "exec"), namespace)
        # the generated function itself (calling it skips a Python frame), unless the backend wraps it
        runner = getattr(backend, "runner", None)
        self.run = namespace["run"] if runner is None else runner(graph, namespace["run"])
        if self.cuda_graph:
            self.run = _Replayed(self, namespace)

    def __call__(self, *inputs):
        return self.run(*inputs)


class _Replayed:
    """The step as two CUDA graphs around the host-side guard. The first call captures; if capture fails (an
    operation CUDA cannot capture), the step says so once and runs eagerly from then on."""

    def __init__(self, executable, ns):
        self.executable, self.ns = executable, ns
        self.eager = ns["run"]
        self.replay = None
        self.donated = set(executable.donate.values())

    def __call__(self, *inputs):
        if self.replay is False:
            return self.eager(*inputs)
        try:
            if self.replay is None:
                static = [x if i in self.donated else x.copy() for i, x in enumerate(inputs)]
                self.replay = self.executable.backend.graph_replay([self.ns["_part_a"], self.ns["_part_b"]], static)
            self.replay.load(inputs)
            self.replay.launch(0)
            self.replay.synchronize()
            if self.ns["_checks"]():
                outputs = self.replay.launch(1)
                self.replay.synchronize()  # the caller reads the outputs on its own stream
                return outputs
        except Exception as e:  # noqa: BLE001  capture is an optimisation: never lose a step to it
            # nothing donated is written before the guard, and a capture records without running: safe to redo
            import warnings

            warnings.warn(f"bpmagic: CUDA-graph capture failed ({type(e).__name__}: {e}); running eagerly")
            self.replay = False
            return self.eager(*inputs)
        raise GuardFailed()


def fuses(backend) -> bool:
    """Whether a step on `backend` fuses runs of elementwise equations into generated kernels (CuPy). Such a plan
    gives each kernel's results buffers of their own: it does not write a concatenation's parts in place."""
    return getattr(backend, "elementwise_kernel", None) is not None


def _isfinite(x) -> bool:
    return math.isfinite(x)  # 0-d arrays (a loss, a sum of gradients) convert directly
