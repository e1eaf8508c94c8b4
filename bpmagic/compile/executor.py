"""Run a graph on a backend: a straight-line Python function generated once, over buffers reused between calls.

Code generation removes the interpreter loop; buffer planning removes allocation: every primitive that can write
into an `out=` array (ufuncs, matmul, sum) gets a buffer from a pool keyed by shape and dtype, taken back as soon as
the last reader of its value has run. Donated inputs (the parameters and optimizer state of a training step) are
written in place. Outputs are valid until the next call.
"""
from __future__ import annotations

import functools
import itertools
import linecache
import math
import re

import numpy as np

from ..ir import Graph, Literal, Var, assigned_names
from ..ir.printer import Namer, source_comment, source_label
from .fusion import PREAMBLE, find_groups

_INTERNAL = re.compile(r"_[bckfg]\d+$|xp$|GuardFailed$|_isfinite$|_mm$|_checks$|_part_[ab]$|run$")
_serial = itertools.count(1)


class GuardFailed(Exception):
    """A guard value was not finite: nothing donated has been written."""


class Lowering:
    """What a primitive's lowering rule (Primitive.lowering) may know about the code being generated."""

    def __init__(self, backend, namespace, cuda_graph, matmul_precision):
        self.backend, self.xp = backend, backend.xp
        self.cuda_graph, self.matmul_precision = cuda_graph, matmul_precision
        self._ns = namespace
        self.inputs = ()  # the equation's operands (Vars and Literals: .shape, .dtype)

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
    """

    def __init__(self, graph: Graph, backend, donate=None, guards=(), cuda_graph=False, matmul_precision="fp32"):
        self.graph = graph
        self.backend = backend
        self.donate = dict(donate or {})
        self.guards = list(guards)
        self.matmul_precision = matmul_precision
        # CUDA-graph replay needs a backend that captures, and a matmul it can capture (see the CuPy backend)
        self.cuda_graph = bool(cuda_graph and getattr(backend, "graph_replay", None) and self.guards)
        self.source, namespace = self._generate()
        # registered with linecache, so that a traceback through the step shows its generated lines
        filename = f"<bpmagic {graph.name} {next(_serial)}>"
        linecache.cache[filename] = (len(self.source), None, self.source.splitlines(True), filename)
        exec(compile(self.source, filename, "exec"), namespace)
        self.run = namespace["run"]  # the generated function itself: calling it skips a Python frame
        if self.cuda_graph:
            self.run = _Replayed(self, namespace)

    def __call__(self, *inputs):
        return self.run(*inputs)

    # -- planning ----------------------------------------------------------------------------------------------------
    def _schedule(self):
        """Equations in an order where everything the guards need comes first."""
        g = self.graph
        if not self.guards:
            return list(g.eqns)
        needed = {g.outputs[i] for i in self.guards}
        first = set()
        for e in reversed(g.eqns):
            if any(v in needed for v in e.outputs):
                first.add(id(e))
                needed.update(v for v in e.inputs if isinstance(v, Var))
        return [e for e in g.eqns if id(e) in first] + [e for e in g.eqns if id(e) not in first]

    def _generate(self):
        g, xp = self.graph, self.backend.xp
        eqns = self._schedule()
        guard_vars = {g.outputs[i] for i in self.guards}
        n_guard = max((k + 1 for k, e in enumerate(eqns) if any(v in guard_vars for v in e.outputs)), default=0)
        last_use = {}
        for k, e in enumerate(eqns):
            for v in e.inputs:
                if isinstance(v, Var):
                    last_use[v] = k
        for v in g.outputs:
            last_use[v] = len(eqns)
        donated_out = {g.outputs[o]: g.inputs[i] for o, i in self.donate.items()}

        ns = {"xp": xp, "GuardFailed": GuardFailed, "_isfinite": _isfinite}
        # values are named as the IR's printer names them (W1, dW1, h, t7); the code's own names start with _
        namer = Namer(assigned_names(g), reserved=_INTERNAL.match)
        names = {v: namer(v) for v in g.inputs}
        for v, value in g.consts.items():
            names[v] = namer(v)
            ns[names[v]] = self.backend.asarray(value)

        # storage: root[var] = set of buffer names the var may alias; refcount per buffer name
        roots = {v: {names[v]} for v in list(g.inputs) + list(g.consts)}
        live = {r: 1 for rs in roots.values() for r in rs}
        free: dict = {}
        shapes = {}
        lines = [f"def run({', '.join(names[v] for v in g.inputs)}):"]
        counter = [0]
        views = set()  # names of values that are views (no buffer of their own)
        last_label = [None]

        def statement(code, e, value=None):
            """One line of the step, commented with the user's line it comes from (a header comment with the
            code when that line changes) and, for a value written into a pool buffer, the value's name."""
            label = source_label(e)
            if (label, e.source and e.source.filename) != last_label[0]:
                last_label[0] = (label, e.source and e.source.filename)
                lines.append(f"    # {source_comment(e)}")
            note = f" -> {namer(value)}" if value is not None and value in hinted else ""
            lines.append(f"    {code:<60}  # {label}{note}")

        hinted = {v for e in g.eqns for v in e.outputs if v.name} | set(assigned_names(g))

        def alloc(shape, dtype):
            key = (shape, np.dtype(dtype).str)
            pool = free.get(key)
            if pool:
                return pool.pop()
            counter[0] += 1
            name = f"_b{counter[0]}"
            ns[name] = xp.empty(shape, dtype)
            shapes[name] = key
            return name

        def retire(var):
            for r in roots.pop(var, ()):
                live[r] = live.get(r, 1) - 1
                if live[r] == 0 and r in shapes:
                    free.setdefault(shapes[r], []).append(r)

        def atom(v, e):
            if isinstance(v, Literal):
                lit = f"_k{len(ns)}"
                # a 0-d array in the dtype the literal computes in: NumPy takes it about twice as fast as a float
                ns[lit] = self.backend.asarray(np.asarray(v.value, v.dtype_in(e)))
                return lit
            return names[v]

        split = []  # where the guard sits in `lines`: the two halves become two CUDA graphs

        def emit_guard():
            checks = " and ".join(f"_isfinite({names[g.outputs[i]]})" for i in self.guards)
            split.append((len(lines), checks))
            lines.append(f"    if not ({checks}):")
            lines.append("        raise GuardFailed()")

        lowering = Lowering(self.backend, ns, self.cuda_graph, self.matmul_precision)
        # on a backend that compiles kernels (CuPy), runs of elementwise equations become one generated kernel
        group_at, grouped = {}, set()
        if getattr(self.backend, "elementwise_kernel", None) is not None:
            outputs = set(g.outputs)
            for group in find_groups(eqns, lambda v, k: v in outputs or last_use.get(v, -1) > k,
                                     stops={n_guard} if self.guards else ()):
                group_at[group.start] = group
                grouped.update(range(group.start, group.start + len(group.eqns)))

        for k, e in enumerate(eqns):
            if k == n_guard and self.guards:
                emit_guard()
            if k in group_at:
                group = group_at[k]
                fname = f"_g{k}"
                ns[fname] = self.backend.elementwise_kernel(*group.params(), group.body, group.name, PREAMBLE)
                targets = [alloc(v.shape, v.dtype) for v in group.outputs]
                ins = [names[v] for v in group.inputs]
                statement(f"{fname}({', '.join(ins + targets)})", group.eqns[0],
                          next((v for v in group.outputs if v in hinted), None))
                for v, target in zip(group.outputs, targets):
                    names[v] = target
                    roots[v] = {target}
                    live[target] = live.get(target, 0) + 1
                end = k + len(group.eqns) - 1
                for v in group.inputs:
                    if last_use.get(v, -1) <= end:
                        retire(v)
                continue
            if k in grouped:
                continue
            out = e.outputs[0]
            args = [atom(v, e) for v in e.inputs]
            prim = e.primitive
            target = None
            lowering.inputs = e.inputs
            if prim.writes_out:
                donor = donated_out.get(out)
                if donor is not None and self._can_write(donor, k, last_use, roots, eqns, e):
                    target = names[donor]
                else:
                    target = self._reuse_input(e, k, last_use, roots, names, shapes) or alloc(out.shape, out.dtype)
                    live.setdefault(target, 0)
                statement(self._call(prim, args, e.params, ns, k, lowering, target), e, out)
                names[out] = target
                roots[out] = {target}
                live[target] = live.get(target, 0) + 1
            else:
                name = namer(out)
                views.add(name)
                statement(f"{name} = {self._call(prim, args, e.params, ns, k, lowering)}", e)
                names[out] = name
                # the result may be a view of any input: keep their buffers alive while it lives
                roots[out] = set().union(*(roots.get(v, set()) for v in e.inputs if isinstance(v, Var)))
                for r in roots[out]:
                    live[r] = live.get(r, 0) + 1
            for v in set(x for x in e.inputs if isinstance(x, Var)):
                if last_use.get(v) == k:
                    retire(v)
        if n_guard == len(eqns) and self.guards:
            emit_guard()
        for out, donor in donated_out.items():
            if names[out] != names[donor]:
                lines.append(f"    xp.copyto({names[donor]}, {names[out]})")
        lines.append(f"    return [{', '.join(names[v] for v in g.outputs)}]")
        if self.cuda_graph:
            lines += _split_at_guard(lines, *split[0], views)
        return "\n".join(lines) + "\n", ns

    @staticmethod
    def _call(prim, args, params, ns, k, lowering, out=None):
        """The expression that computes a primitive: its own lowering rule's, else a ufunc with `out=` or a call
        of its implementation."""
        if prim.lowering is not None:
            text = prim.lowering(lowering, *args, out=out, **params)
            if text is not None:
                return text
        if out is not None and prim.ufunc:
            return f"xp.{prim.ufunc}({', '.join(args)}, out={out})"
        fname = f"_f{k}"
        ns[fname] = functools.partial(prim.impl, ns["xp"], **params)
        return f"{fname}({', '.join(args + ([f'out={out}'] if out is not None else []))})"

    @staticmethod
    def _can_write(donor, k, last_use, roots, eqns, e):
        """May equation k write into the donated input `donor`? Only if nothing reads donor (or a view of it) later."""
        if last_use.get(donor, -1) > k:
            return False
        donor_roots = roots.get(donor, set())
        for v, rs in roots.items():
            if v is not donor and rs & donor_roots and last_use.get(v, -1) > k:
                return False
        # elementwise in-place is safe; matmul or a reduction reading the donor while writing it is not
        return e.primitive.elementwise or donor not in e.inputs

    @staticmethod
    def _reuse_input(e, k, last_use, roots, names, shapes):
        """An input buffer that dies here and has the output's shape: write the elementwise result over it."""
        if not (e.primitive.ufunc and e.primitive.elementwise):
            return None
        out = e.outputs[0]
        for v in e.inputs:
            if (isinstance(v, Var) and last_use.get(v) == k and v.shape == out.shape and v.dtype == out.dtype
                    and names.get(v) in shapes and roots.get(v) == {names[v]}
                    and sum(1 for w, rs in roots.items() if names[v] in rs) == 1):
                return names[v]
        return None


def _split_at_guard(lines, at, checks, view_names):
    """`_part_a` (everything before the guard) and `_part_b` (the rest), for capture as two CUDA graphs. Views
    made in the first half and read in the second are taken again there (a view costs nothing)."""
    header, before, after = lines[0], lines[1:at], lines[at + 2:]
    later = "\n".join(ln.split("#")[0] for ln in after)
    views = [ln for ln in before if ln.split()[0] in view_names and re.search(rf"\b{ln.split()[0]}\b", later)]
    args = header[len("def run("):]
    return ([f"def _part_a({args}"] + (before or ["    pass"]) + [f"def _part_b({args}"] + views + after
            + [f"_checks = lambda: ({checks})"])


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


def _isfinite(x) -> bool:
    return math.isfinite(x)  # 0-d arrays (a loss, a sum of gradients) convert directly


def evaluate(graph: Graph, inputs, xp, on_value=None):
    """Interpret `graph` one equation at a time (slow, but it can inspect every value: `on_value(eqn, value)`)."""
    env = dict(zip(graph.inputs, inputs))
    env.update({v: xp.asarray(a) for v, a in graph.consts.items()})
    for e in graph.eqns:
        args = [env[v] if isinstance(v, Var) else v.value for v in e.inputs]
        value = e.primitive.impl(xp, *args, **e.params)
        env[e.outputs[0]] = value
        if on_value is not None:
            on_value(e, value)
    return [env[v] for v in graph.outputs]
