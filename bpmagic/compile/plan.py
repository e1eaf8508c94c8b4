"""The plan of a compiled step, as data: the order its equations run in, the array each result is written into, where
the guard sits and what the second half of a CUDA-graph split must make again. compile/emit.py turns it into code.

Order: everything the guards need comes first, so the finiteness check runs before anything donated is written.
Arrays: every primitive that can write into an `out=` array gets one, so a step allocates nothing: the donated input
it replaces when nothing reads that input later (parameters are updated in place), else the buffer of an input that
dies here (elementwise ufuncs), else a pool buffer of its shape and dtype, free again once no live value may alias it.
A concatenation's parts are written into their blocks of its buffer, so that it copies nothing (the weight's gradient
of an unrolled loop stacks one part per step: compile/batching.py).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Var
from .batching import batch_calls, readers_of
from .fusion import Group, find_groups


@dataclass(frozen=True)
class Buffer:
    """An array of the step's pool: allocated once, when the step is compiled, and written with out=."""

    name: str  # _b1, _b2, ...: as the generated code calls it
    shape: tuple
    dtype: np.dtype
    within: Buffer | None = None  # a block of a stack's buffer: a part written where the stack will read it
    offset: int = 0  # where the block starts in `within`, in elements

    @property
    def key(self):
        return self.shape, self.dtype.str


@dataclass
class Instr:
    """One statement of the step: an equation, or a fused group of equations computed by one kernel."""

    position: int  # of its (first) equation in the schedule: names the statement's helpers (_f7, _g7)
    eqns: list
    into: list  # per result: the pool Buffer or donated input (a Var) written with out=, or None: a new local
    group: Group | None = None
    in_place: bool = False  # a concatenation whose parts were written into its buffer: nothing left to do

    @property
    def makes_local(self) -> bool:
        """Whether its result is not written with out= but held in a local (a view, or an array its call makes)."""
        return self.into == [None]

    @property
    def operands(self) -> list:
        return self.group.inputs if self.group else self.eqns[0].inputs

    @property
    def results(self) -> list:
        return self.group.outputs if self.group else self.eqns[0].outputs[:1]


@dataclass
class ExecutionPlan:
    """What a compiled step computes, in order, and in which arrays."""

    graph: Graph
    instrs: list
    guard: int | None  # the guard's checks run before instrs[guard]; None: no guard
    checks: list  # Vars that must be finite before anything donated is written
    copies: list  # (donated input, value) where the value could not be written in place: copied in at the end
    retake: list  # indices of locals made before the guard and read after it, which a CUDA-graph split makes again


def schedule(graph: Graph, guards=()) -> list:
    """The graph's equations in an order where everything the guards need comes first."""
    if not guards:
        return list(graph.eqns)
    needed = {graph.outputs[i] for i in guards}
    first = set()
    for e in reversed(graph.eqns):
        if any(v in needed for v in e.outputs):
            first.add(id(e))
            needed.update(v for v in e.inputs if isinstance(v, Var))
    return [e for e in graph.eqns if id(e) in first] + [e for e in graph.eqns if id(e) not in first]


def last_uses(graph: Graph, order) -> dict:
    """Var -> position of the last equation that reads it; the graph's outputs live past the end."""
    last = {v: k for k, e in enumerate(order) for v in e.inputs if isinstance(v, Var)}
    last.update(dict.fromkeys(graph.outputs, len(order)))
    return last


class Allocator:
    """Which arrays each live value may alias (a donated input, a pool Buffer) and which pool buffers are free.

    Ordered dicts stand for sets here, so that buffers are freed, and so reused, in the same order on every run.
    """

    def __init__(self, arrays, last_use, blocks=None, stacks=()):
        self.last_use = last_use
        self.blocks = blocks or {}  # part -> (the concatenation it is a part of, its offset there)
        self.stacks = set(stacks)  # ids of concatenations whose parts are written in place
        self.arenas = {}  # concatenation -> its Buffer
        self.parts = set()  # the values written into blocks of a stack (not the stacks themselves)
        self.aliases = {v: {v: None} for v in arrays}  # live value -> the arrays it may alias
        self.users = Counter(arrays)  # array -> how many live values may alias it
        self.buffer_of = {}  # value -> the pool Buffer it was written into
        self.free = defaultdict(list)  # Buffer.key -> buffers no live value aliases
        self.count = 0

    def place(self, e, k, donor=None):
        """Where equation k writes its result (None: it makes a new local)."""
        out = e.outputs[0]
        if out in self.blocks:  # a part of a stack (or a run of its parts): its block, which keeps the stack in use
            stack, offset = self.blocks[out]
            arena = self.arena(stack)
            self.count += 1
            block = Buffer(f"_b{self.count}", out.shape, np.dtype(out.dtype), within=arena, offset=offset)
            self.write(out, block)
            self.aliases[out][arena] = None
            self.users[arena] += 1
            if id(e) not in self.stacks:
                self.parts.add(out)
            return block
        if id(e) in self.stacks:
            self.write(out, self.arena(out))
            return self.arena(out)
        if not e.primitive.writes_out:
            self.aliases[out] = {a: None for v in e.inputs if isinstance(v, Var) for a in self.aliases.get(v, ())}
            self.users.update(self.aliases[out].keys())  # the local may be a view of any input: keep their arrays
            return None
        if donor is not None and self._can_write(donor, e, k):
            into = donor
        else:
            into = self._dying_input(e, k) or self.take(out)
        self.write(out, into)
        return into

    def take(self, v) -> Buffer:
        """A free pool buffer of v's shape and dtype, else a new one."""
        dtype = np.dtype(v.dtype)
        free = self.free[(v.shape, dtype.str)]
        if free:
            return free.pop()
        self.count += 1
        return Buffer(f"_b{self.count}", v.shape, dtype)

    def _stack_read(self, arena) -> bool:
        """Whether a live value other than the parts (the stack, a view of it) may read the stack's buffer: then no
        part's block may be written over."""
        return arena is not None and any(arena in arrays for u, arrays in self.aliases.items() if u not in self.parts)

    def arena(self, stack) -> Buffer:
        if stack not in self.arenas:
            self.arenas[stack] = self.take(stack)
        return self.arenas[stack]

    def write(self, v, array):
        self.aliases[v] = {array: None}
        self.users[array] += 1
        if isinstance(array, Buffer):
            self.buffer_of[v] = array

    def retire(self, values, k):
        """Values read for the last time at or before position k stop holding their arrays."""
        for v in dict.fromkeys(v for v in values if isinstance(v, Var) and self.last_use.get(v, -1) <= k):
            for a in self.aliases.pop(v, ()):
                self.users[a] -= 1
                if self.users[a] == 0 and isinstance(a, Buffer) and a.within is None:
                    self.free[a.key].append(a)

    def _can_write(self, donor, e, k) -> bool:
        """Only if nothing reads the donated input, or a value that may alias it, after equation k."""
        if self.last_use.get(donor, -1) > k:
            return False
        if any(v is not donor and donor in arrays and self.last_use.get(v, -1) > k
               for v, arrays in self.aliases.items()):
            return False
        # elementwise in place is safe; matmul or a reduction reading the donor while writing it is not
        return e.primitive.elementwise or donor not in e.inputs

    def _dying_input(self, e, k):
        """The pool buffer of an input read for the last time here, held by nothing else, of the result's shape and
        dtype: an elementwise ufunc may write its result over it."""
        if not (e.primitive.ufunc and e.primitive.elementwise):
            return None
        out = e.outputs[0]
        for v in e.inputs:
            buffer = self.buffer_of.get(v)
            if (buffer is not None and self.last_use.get(v) == k and v.shape == out.shape and v.dtype == out.dtype
                    and self.users[buffer] == 1 and not self._stack_read(buffer.within)):
                return buffer
        return None


def plan_step(graph: Graph, donate=None, guards=(), fuse=False) -> ExecutionPlan:
    """The plan of `graph` (see Executable for donate and guards); fuse: group runs of elementwise equations."""
    graph = batch_calls(graph, fuse)
    order = schedule(graph, guards)
    last_use = last_uses(graph, order)
    checks = [graph.outputs[i] for i in guards]
    guarded = set(checks)
    guard_at = None
    if guards:  # after the last equation that computes a checked value
        guard_at = max((k + 1 for k, e in enumerate(order) if any(v in guarded for v in e.outputs)), default=0)
    groups = {}
    if fuse:
        outputs = set(graph.outputs)
        groups = {group.start: group
                  for group in find_groups(order, lambda v, k: v in outputs or last_use.get(v, -1) > k,
                                           stops=() if guard_at is None else {guard_at})}
    donated = {graph.outputs[o]: graph.inputs[i] for o, i in (donate or {}).items()}

    blocks, stacks = ({}, ()) if fuse else _stacks(order, graph, set(donated))
    alloc = Allocator(list(graph.inputs) + list(graph.consts), last_use, blocks, stacks)
    readers = readers_of(order)
    unread = {id(e) for e in order if e.primitive.name == "reshape" and e.outputs[0] not in graph.outputs
              and readers[e.outputs[0]] and all(id(r) in stacks for r in readers[e.outputs[0]])}
    instrs, k = [], 0
    while k < len(order):
        group = groups.get(k)
        if group is not None:
            # a kernel's results get pool buffers: writing into donated or dying inputs is not planned for kernels
            into = [alloc.take(v) for v in group.outputs]
            for v, buffer in zip(group.outputs, into):
                alloc.write(v, buffer)
            instr = Instr(k, group.eqns, into, group)
        elif id(order[k]) in unread:  # a part's raveled view that only an in-place stack names: nothing to do
            k += 1
            continue
        else:
            instr = Instr(k, [order[k]], [alloc.place(order[k], k, donated.get(order[k].outputs[0]))],
                          in_place=id(order[k]) in stacks)
        instrs.append(instr)
        k += len(instr.eqns)
        alloc.retire(instr.operands, k - 1)
    # groups never span the guard's position
    guard = None if guard_at is None else sum(1 for instr in instrs if instr.position < guard_at)
    written = {v: into for instr in instrs for v, into in zip(instr.results, instr.into)}
    copies = [(donor, v) for v, donor in donated.items() if written.get(v) is not donor and v is not donor]
    return ExecutionPlan(graph, instrs, guard, checks, copies, _retake(instrs, guard, graph.outputs, copies))


def _stacks(order, graph, donated) -> tuple:
    """({value: (concatenation, offset)}, {ids of those concatenations}): the concatenations along the first axis
    whose parts can be written straight into their blocks (each made by an equation that writes out=, in no other
    stack, neither a result of the step nor a new parameter, of the stack's dtype). A concatenation of parts that lie
    one after the other in a bigger stack is a block of that one too (the larger stacks are laid out first)."""
    made_by = {v: e for e in order for v in e.outputs}
    unavailable = set(graph.outputs) | donated
    blocks, stacks = {}, set()
    joins = [e for e in order if e.primitive.name == "concatenate" and e.params.get("axis") == 0
             and len(set(e.inputs)) == len(e.inputs) and e.outputs[0] not in unavailable]

    def written(p):  # the value whose block p is: p itself, or what p is a reshape of (a gradient raveled)
        e = made_by.get(p) if isinstance(p, Var) else None
        if e is not None and e.primitive.name == "reshape" and isinstance(e.inputs[0], Var):
            p, e = e.inputs[0], made_by.get(e.inputs[0])
        return p if e is not None and e.primitive.writes_out else None

    for e in sorted(joins, key=lambda e: -int(np.prod(e.outputs[0].shape, dtype=np.int64))):
        parts, stack = e.inputs, e.outputs[0]
        values = [written(p) for p in parts]
        if all(v is not None and v not in blocks and v not in unavailable and v.dtype == stack.dtype
               for v in values) and len(set(values)) == len(values):
            offset = 0
            for v in values:
                blocks[v] = (stack, offset)
                offset += int(np.prod(v.shape, dtype=np.int64))
            stacks.add(id(e))
        elif all(p in blocks for p in parts) and len({blocks[p][0] for p in parts}) == 1:
            outer, start = blocks[parts[0]]
            at = start
            for p in parts:  # one after the other, in this order
                if blocks[p][1] != at:
                    break
                at += int(np.prod(p.shape, dtype=np.int64))
            else:
                blocks[stack] = (outer, start)
                stacks.add(id(e))
    return blocks, stacks


def _retake(instrs, guard, outputs, copies) -> list:
    """Locals made before the guard that something after it reads, with the locals they are made from: a CUDA
    graph's second half cannot see the first half's locals (a view costs nothing to take again)."""
    if guard is None:
        return []
    read = {v for instr in instrs[guard:] for v in instr.operands} | set(outputs) | {v for _, v in copies}
    retake = []
    for i in reversed(range(guard)):
        if instrs[i].makes_local and instrs[i].results[0] in read:
            retake.append(i)
            read.update(instrs[i].operands)
    return retake[::-1]
