"""Turn an ExecutionPlan (compile/plan.py) into the step's Python source: one statement per line, values named as the IR's
printer names them (W1, dW1, h, t7), each line commented with the user's line it comes from.

The code's own names (_INTERNAL) are never given to a value: pool buffers _b1, literals _k5, fused kernels _g7, calls
of implementations _f7, xp, run. For CUDA graphs the source also defines `_part_a` (up to the guard), `_part_b` (the rest)
and `_checks` (the guard's condition), to be captured as two graphs around the check, which runs on the host.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from ..ir import Literal
from ..ir.printer import Namer, source_comment, source_label
from .fusion import PREAMBLE
from .plan import Buffer, ExecutionPlan

BUFFER = re.compile(r"_b\d+$")  # a pool buffer's name: C-contiguous, in its value's dtype
_INTERNAL = re.compile(r"_[bckfg]\d+$|xp$|GuardFailed$|_isfinite$|_mm$|_workers$|_checks$|_part_[ab]$|run$"
                       r"|_clip$|_(zero|inf|ones)_\w+$")


def emit(plan: ExecutionPlan, backend, namespace: dict, lowering, split=False) -> str:
    """The source of `run` (and, with split, of its two halves); `namespace` receives what the code refers to.
    lowering: the executor's Lowering over that namespace, given to primitives' lowering rules."""
    return _Emitter(plan, backend, namespace, lowering).source(split)


class _Emitter:
    """Writes the plan's statements in order. Names (the Namer's t1, t2) and literals (numbered by the namespace's
    size) are given as the statements reach them, so the same plan always reads the same."""

    def __init__(self, plan, backend, namespace, lowering):
        g = plan.graph
        self.plan, self.backend, self.ns, self.lowering = plan, backend, namespace, lowering
        self.namer = Namer(reserved=_INTERNAL.match)
        # values whose name a statement's comment shows: named by the user's code (trace.name_values) or the IR
        self.hinted = {v for e in g.eqns for v in e.outputs if v.name}
        self.names = {v: self.namer(v) for v in g.inputs}  # Var -> the name the code reads it by
        for v, value in g.consts.items():
            self.names[v] = self.namer(v)
            namespace[self.names[v]] = backend.asarray(value)
        self.where = None  # the user's line of the latest statement

    def source(self, split) -> str:
        plan = self.plan
        before, after, statements = [], [], []
        for i, instr in enumerate(plan.instrs):
            header, line = self.statement(instr)
            half = after if plan.guard is not None and i >= plan.guard else before
            half += header + [line]
            statements.append(line)
        after += [f"    xp.copyto({self.names[donor]}, {self.names[v]})" for donor, v in plan.copies]
        after.append(f"    return [{', '.join(self.names[v] for v in plan.graph.outputs)}]")
        args = ", ".join(self.names[v] for v in plan.graph.inputs)
        checks = " and ".join(f"_isfinite({self.names[v]})" for v in plan.checks)
        guard = [] if plan.guard is None else [f"    if not ({checks}):", "        raise GuardFailed()"]
        lines = [f"def run({args}):", *before, *guard, *after]
        if split:  # the second half cannot see the first half's locals: it takes those it reads again
            # so does the check, for a checked value that is a view of a buffer (a statistic's reshape)
            made = {v: statements[i] for i, instr in enumerate(plan.instrs) for v in instr.results}
            views = [made[v] for v in plan.checks if v in made and not BUFFER.match(self.names[v])]
            lines += [f"def _part_a({args}):", *(before or ["    pass"]),
                      f"def _part_b({args}):", *(statements[i] for i in plan.retake), *after,
                      "def _checks():", *views, f"    return {checks}"]
        return "\n".join(lines) + "\n"

    def statement(self, instr):
        """(header, line): the line, commented with the user's line it comes from and the name of the value it
        writes into a buffer; the header, a comment with the user's code, when that line changes."""
        if instr.group is not None:
            code, value = self.fused(instr), next((v for v in instr.results if v in self.hinted), None)
        elif instr.in_place:
            stack = self.array(instr.results[0], instr.into[0])
            code, value = f"# {stack}: its {len(instr.operands)} parts were written into it", instr.results[0]
        elif instr.makes_local:
            code, value = self.local(instr), None
        else:
            code, value = self.call(instr), instr.results[0]
        e = instr.eqns[0]
        label = source_label(e)
        where = (label, e.source and e.source.filename)
        header = [] if where == self.where else [f"    # {source_comment(e)}"]
        self.where = where
        note = f" -> {self.namer(value)}" if value in self.hinted else ""
        return header, f"    {code:<60}  # {label}{note}"

    def fused(self, instr) -> str:
        group, kernel = instr.group, f"_g{instr.position}"
        self.ns[kernel] = self.backend.elementwise_kernel(*group.params(), group.body, group.name, PREAMBLE)
        args = [self.names[v] for v in group.inputs] + [self.array(v, into) for v, into in zip(group.outputs,
                                                                                              instr.into)]
        return f"{kernel}({', '.join(args)})"

    def call(self, instr) -> str:
        e = instr.eqns[0]
        args = [self.operand(v, e) for v in e.inputs]
        return self.expression(e, args, instr.position, out=self.array(e.outputs[0], instr.into[0]))

    def local(self, instr) -> str:
        e = instr.eqns[0]
        args = [self.operand(v, e) for v in e.inputs]
        self.names[e.outputs[0]] = name = self.namer(e.outputs[0])
        return f"{name} = {self.expression(e, args, instr.position)}"

    def array(self, v, into) -> str:
        """The name of the array `v` is written into."""
        if isinstance(into, Buffer):
            self.allocate(into)
            self.names[v] = into.name
        else:
            self.names[v] = self.names[into]
        return self.names[v]

    def allocate(self, buffer):
        """A pool buffer is allocated where it is first written (the namespace's order numbers the literals); a
        block of a stack's buffer is a view of that buffer."""
        if buffer.name in self.ns:
            return
        if buffer.within is None:
            self.ns[buffer.name] = self.backend.xp.empty(buffer.shape, buffer.dtype)
            return
        self.allocate(buffer.within)
        size = int(np.prod(buffer.shape, dtype=np.int64))
        whole = self.ns[buffer.within.name].reshape(-1)
        self.ns[buffer.name] = whole[buffer.offset:buffer.offset + size].reshape(buffer.shape)

    def operand(self, v, e) -> str:
        if isinstance(v, Literal):
            name = f"_k{len(self.ns)}"
            # a 0-d array in the dtype the literal computes in: NumPy takes it about twice as fast as a float
            self.ns[name] = self.backend.asarray(np.asarray(v.value, v.dtype_in(e)))
            return name
        return self.names[v]

    def expression(self, e, args, position, out=None) -> str:
        """What computes `e`: its primitive's own lowering rule's expression, else a ufunc with `out=`, else a call
        of its implementation."""
        prim = e.primitive
        if prim.lowering is not None:
            self.lowering.inputs = e.inputs
            text = prim.lowering(self.lowering, *args, out=out, **e.params)
            if text is not None:
                return text
        if out is not None and prim.ufunc:
            return f"xp.{prim.ufunc}({', '.join(args)}, out={out})"
        name = f"_f{position}"
        self.ns[name] = functools.partial(prim.impl, self.backend.xp, **e.params)
        return f"{name}({', '.join(args + ([f'out={out}'] if out is not None else []))})"
