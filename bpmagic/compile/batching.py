"""Fewer, larger calls: the matrix products and elementwise chains an unrolled loop (or a stack of like layers) makes
one by one, made once each; and no call for a broadcast an elementwise operation would make itself.

On the CPU a step costs about a microsecond per NumPy call whatever the arrays' size, and an RNN unrolled over T
steps makes T small products of the same weight. Three rewrites of the step graph (before it is planned, so the graph
a learner draws keeps one product per step, and `print(step)` shows what runs):

- The input projection: `x[t] @ W` for many t of the same x and W is one product `x @ W`, read at each t (a view);
  a bias added to each, `x[t] @ W (+ h @ U) + b`, is added once, to the product.
- A weight's gradient: the backward pass sums one product per use, `Σ_t h[t]ᵀ @ g[t]`, which is one product of the
  stacked rows, `[h[0]; h[1]; …]ᵀ @ [g[0]; g[1]; …]`; a bias's gradient `Σ_t sum(g[t], axis 0)` likewise is one
  reduction of the stacked rows. The plan writes each part into its place in the stack (compile/plan.py): the
  stacking copies nothing, unless a part is a view (x[:, t]).
- The same elementwise chain of many steps' values: the backward of tanh makes `1 - y[t] * y[t]` at every step
  (three calls with the product by the gradient, which needs the step before); with the y[t] one above the other
  (the plan writes each into its place), `1 - Y * Y` is computed once and read at each step as a view. Not on a
  backend that fuses elementwise runs (CuPy): there each step's chain is already one kernel with its reader.

The first two reorder additions only (float rounding of a sum taken in another order); the third computes the same
values. A `broadcast_to` whose every reader is a ufunc that broadcasts its operands anyway (the backward of a sum or a
mean makes them) is left to the ufunc.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np

from ..ir import Graph, Var
from ..ops import elementwise, linalg, reduce, shape
from .passes import common_subexpressions, dead_code_elimination

MIN_TERMS = 4  # fewer terms: the stack's transpose and the sum's other calls cost about what the rewrite saves


def batch_calls(graph: Graph, fuse=False) -> Graph:
    """`graph` with the input projections hoisted, the weights' gradient sums stacked and, unless the backend fuses
    elementwise runs into kernels (where each step's chain is already one kernel with its reader), the same
    elementwise chain of many steps' values made once (see above)."""
    graph = _hoist_projections(graph)
    graph = _stack_sums(graph)
    if not fuse:
        graph = _batch_chains(graph)
    graph = _implicit_broadcasts(graph)
    return dead_code_elimination(common_subexpressions(graph))  # a stack two sums share is made once


def _eqn(primitive, inputs, params, like):
    """An equation of `primitive` recorded where `like` was (its user's line, phase and scope)."""
    out_shape, out_dtype = primitive.shape_rule(*inputs, **params)
    return replace(like, primitive=primitive, inputs=list(inputs), outputs=[Var(out_shape, out_dtype)],
                   params=dict(params))


def _defs(graph):
    return {v: e for e in graph.eqns for v in e.outputs}


def readers_of(eqns) -> dict:
    """Var -> the equations that read it, in order, each once."""
    readers = defaultdict(list)
    for e in eqns:
        for v in dict.fromkeys(v for v in e.inputs if isinstance(v, Var)):
            readers[v].append(e)
    return readers


# -- x[t] @ W for many t: (x @ W)[t] --------------------------------------------------------------------------------
def _row_view(e):
    """(x, spec) when `e` computes x[spec] and the index leaves x's last axis alone: x[spec] @ W == (x @ W)[spec]."""
    if e is None or e.primitive is not shape._getitem or len(e.inputs) != 1 or not isinstance(e.inputs[0], Var):
        return None
    x, spec = e.inputs[0], e.params["spec"]
    plain = all(isinstance(i, int) or i == slice(None) for i in spec)
    return (x, spec) if plain and len(spec) < len(x.shape) else None


def _hoist_projections(graph: Graph) -> Graph:
    defs, readers = _defs(graph), readers_of(graph.eqns)
    held = set(graph.inputs) | set(graph.consts)
    uses = defaultdict(list)  # (x, W) -> [(equation, spec)]
    for e in graph.eqns:
        if e.primitive is linalg._matmul and all(isinstance(v, Var) for v in e.inputs) and len(e.inputs[1].shape) == 2:
            view = _row_view(defs.get(e.inputs[0]))
            if view is not None:
                uses[view[0], e.inputs[1]].append((e, view[1]))
    hoisted, replaced = {}, {}
    for (x, w), found in uses.items():
        distinct = {repr(spec): e.inputs[0] for e, spec in found}
        if len(distinct) < 2 or 2 * sum(_rows(a) for a in distinct.values()) < _rows(x):
            continue  # one use, or a few rows of a large x: the product of all of x would cost more
        first = found[0][0]
        made = [_eqn(shape._reshape, [x], {"shape": (_rows(x), x.shape[-1])}, first)] if len(x.shape) > 2 else []
        made.append(_eqn(linalg._matmul, [made[-1].outputs[0] if made else x, w], {}, first))
        if len(x.shape) > 2:
            made.append(_eqn(shape._reshape, made[-1].outputs, {"shape": x.shape[:-1] + (w.shape[1],)}, first))
        biases = [_bias_of(e.outputs[0], readers, held) for e, _ in found]
        if all(b is not None and b[0] is biases[0][0] for b in biases):  # x[t] @ W (+ h @ U) + b: (x @ W + b)[t]
            made.append(_eqn(elementwise.add, [made[-1].outputs[0], biases[0][0]], {}, first))
        else:
            biases = [None] * len(found)
        product = made[-1].outputs[0]
        hoisted[id(first)] = made
        for (e, spec), bias in zip(found, biases):
            view = replace(e, primitive=shape._getitem, inputs=[product], params={"spec": spec})
            replaced[id(e)] = view
            if bias is not None and bias[2] is None:  # the view plus the bias was the sum itself
                replaced[id(bias[1])] = replace(view, outputs=list(bias[1].outputs))
            elif bias is not None:  # the view plus the other term, without the bias's addition
                replaced[id(bias[1])] = replace(bias[1], inputs=[view.outputs[0], bias[2]])
    if not replaced:
        return graph
    eqns = []
    for e in graph.eqns:
        eqns += hoisted.get(id(e), [])
        eqns.append(replaced.get(id(e), e))
    return Graph(list(graph.inputs), eqns, list(graph.outputs), dict(graph.consts), graph.name)


def _bias_of(u, readers, held):
    """(b, the addition of b, the other term or None) when u, or u plus one other term, has a bias b added that
    is a row (b's shape (H,) or (1, H)) held by the step (a parameter): then b can join the hoisted product."""
    def sole_addition(v):
        found = readers.get(v, [])
        e = found[0] if len(found) == 1 else None
        ok = e is not None and e.primitive is elementwise.add and e.outputs[0].shape == v.shape and v in e.inputs
        return (e, next((o for o in e.inputs if o is not v), v)) if ok else (None, None)

    def row(b):
        return (b in held and 0 < len(b.shape) <= len(u.shape) and all(s == 1 for s in b.shape[:-1])
                and b.shape[-1] == u.shape[-1])

    first, other = sole_addition(u)
    if first is None:
        return None
    if row(other):
        return other, first, None
    second, bias = sole_addition(first.outputs[0])
    return (bias, second, other) if second is not None and row(bias) else None


# -- Σ_t a[t]ᵀ @ g[t] and Σ_t sum(g[t], axis 0): one product, one reduction ----------------------------------------
def _stack_sums(graph: Graph) -> Graph:
    defs, position = _defs(graph), {v: k for k, e in enumerate(graph.eqns) for v in e.outputs}
    uses = Counter(v for e in graph.eqns for v in e.inputs if isinstance(v, Var)) + Counter(graph.outputs)

    def single(v):  # a value only one equation reads, made by an equation
        return isinstance(v, Var) and uses[v] == 1 and v in defs

    def chained(e):  # an addition of two values of its result's shape: a link of a sum
        return (e.primitive is elementwise.add and all(isinstance(v, Var) and v.shape == e.outputs[0].shape
                                                        for v in e.inputs))

    inner = {id(defs[v]) for e in graph.eqns if chained(e) for v in e.inputs if single(v) and chained(defs[v])}

    def terms(e):
        out = []
        for v in e.inputs:
            out += terms(defs[v]) if v in defs and id(defs[v]) in inner else [v]
        return out

    made_at = {}
    for root in graph.eqns:
        if chained(root) and id(root) not in inner:
            made = _stacked_sum(root, terms(root), defs, position, single)
            if made:
                made_at[id(root)] = made
    if not made_at:
        return graph
    eqns = [m for e in graph.eqns for m in made_at.get(id(e), [e])]
    return Graph(list(graph.inputs), eqns, list(graph.outputs), dict(graph.consts), graph.name)


def _kind(v, defs, single):
    """("product", a, g) for a value aᵀ @ g, ("sum", g) for sum(g, axis 0), None otherwise (2-d a and g)."""
    if not single(v):
        return None
    e = defs[v]
    if e.primitive is linalg._matmul:
        t = defs.get(e.inputs[0])
        if (t is not None and t.primitive is shape._transpose and tuple(t.params["axes"]) == (1, 0)
                and isinstance(e.inputs[1], Var) and len(e.inputs[1].shape) == 2):
            return "product", t.inputs[0], e.inputs[1]
    if (e.primitive is reduce._sum and tuple(e.params["axis"]) == (0,) and not e.params["keepdims"]
            and len(e.inputs[0].shape) == 2):
        return "sum", e.inputs[0]
    return None


def _stacked_sum(root, leaves, defs, position, single) -> list:
    """The equations computing `root` (a sum of `leaves`) with its products and reductions stacked; [] if none."""
    groups, rest = defaultdict(list), []
    for v in leaves:
        kind = _kind(v, defs, single)
        key = None if kind is None else (kind[0],) + tuple(p.shape for p in kind[1:])
        if key:
            groups[key].append((v,) + kind[1:])
        else:
            rest.append(v)
    made, partial = [], []
    for key, parts in groups.items():
        if len(parts) < MIN_TERMS:
            rest += [p[0] for p in parts]
            continue
        if key[0] == "product":
            parts.sort(key=lambda p: position.get(p[1], -1))  # in the order the forward pass made the rows
            a, made_a = _stack([p[1] for p in parts], defs, root)
            g, made_g = _stack([p[2] for p in parts], defs, root)
            made += made_a + made_g
            made.append(_eqn(shape._transpose, [a], {"axes": (1, 0)}, root))
            made.append(_eqn(linalg._matmul, [made[-1].outputs[0], g], {}, root))
        else:
            # the backward pass made them last step first: stacked in forward order, as the products' are (shared)
            parts.sort(key=lambda p: -position.get(p[1], -1))
            g, made_g = _stack([p[1] for p in parts], defs, root)
            made += made_g
            made.append(_eqn(reduce._sum, [g], {"axis": (0,), "keepdims": False}, root))
        partial.append(made[-1].outputs[0])
    if not partial:
        return []
    total, *others = partial + rest
    for v in others:
        made.append(_eqn(elementwise.add, [total, v], {}, root))
        total = made[-1].outputs[0]
    made[-1] = replace(made[-1], outputs=list(root.outputs))  # the last equation writes the sum's own value
    return made


def _stack(parts, defs, like):
    """(value, equations): the 2-d parts one above the other; x's rows as they are when the parts are x[0], x[1], ..."""
    views = [_row_view(defs.get(p)) for p in parts]
    x = views[0][0] if views[0] else None
    if (x is not None and len(x.shape) == 3 and all(v is not None and v[0] is x for v in views)
            and [tuple(v[1]) for v in views] == [(i,) for i in range(x.shape[0])]):
        e = _eqn(shape._reshape, [x], {"shape": (_rows(x), x.shape[-1])}, like)
    else:
        e = _eqn(shape._concatenate, parts, {"axis": 0}, like)
    return e.outputs[0], [e]


def _rows(x) -> int:
    """How many rows x has as a matrix (all axes but the last)."""
    return math.prod(x.shape[:-1])


# -- f(y[t]) for many t: f(Y)[t] --------------------------------------------------------------------------------------
def _batch_chains(graph: Graph) -> Graph:
    """Chains of elementwise equations of one phase computing a value from one `y` alone (and literal numbers),
    where MIN_TERMS or more y of one shape compute the same chain and every y is made before the first of those
    chains begins (the backward of the forward's values, not a recurrence): the chain, once, of the y stacked."""
    defs, readers, outputs = _defs(graph), readers_of(graph.eqns), set(graph.outputs)
    position = {id(e): k for k, e in enumerate(graph.eqns)}
    root, chain_of = {}, {}  # chain value -> its y; chain equation -> the first equation of its chain
    for e in graph.eqns:
        values = [v for v in e.inputs if isinstance(v, Var)]
        linked = [v for v in values if v in root and defs[v].phase == e.phase]  # a value of another phase is a y
        ys = {root[v] if v in linked else v for v in values}
        starts = {id(chain_of[id(defs[v])]) for v in linked}
        if (len(ys) != 1 or len(starts) > 1 or not e.primitive.elementwise or e.primitive.effects
                or len(e.outputs) != 1 or e.outputs[0] in outputs or any(v.shape != e.outputs[0].shape for v in values)
                or not e.outputs[0].shape):
            continue
        root[e.outputs[0]] = ys.pop()
        chain_of[id(e)] = chain_of[id(defs[linked[0]])] if linked else e
    chains = defaultdict(list)
    for e in graph.eqns:
        if id(e) in chain_of:
            chains[id(chain_of[id(e)])].append(e)
    groups = defaultdict(list)
    for eqns in chains.values():
        y = root[eqns[0].outputs[0]]
        names = {y: "y"} | {e.outputs[0]: k for k, e in enumerate(eqns)}
        steps = tuple((e.primitive.name, tuple(names[v] if isinstance(v, Var) else (repr(v), v.dtype.str)
                                               for v in e.inputs), repr(sorted(e.params.items()))) for e in eqns)
        ends = tuple(k for k, e in enumerate(eqns)  # the values read past the chain
                     if any(chain_of.get(id(r)) is not eqns[0] for r in readers.get(e.outputs[0], [])))
        groups[steps, ends, y.shape, y.dtype].append((y, eqns))
    made_at, replaced = {}, {}
    for (_, ends, y_shape, _), members in groups.items():
        start = min(position[id(eqns[0])] for _, eqns in members)
        if len(members) < MIN_TERMS or any(y in defs and position[id(defs[y])] >= start for y, _ in members):
            continue
        members.sort(key=lambda m: position[id(defs[m[0]])] if m[0] in defs else -1)  # in the forward's order
        first = graph.eqns[start]
        made = [_eqn(shape._concatenate, [y for y, _ in members], {"axis": 0}, first)]
        batched = {members[0][0]: made[0].outputs[0]}
        for e in members[0][1]:
            made.append(_eqn(e.primitive, [batched.get(v, v) for v in e.inputs], e.params, e))
            batched[e.outputs[0]] = made[-1].outputs[0]
        for k in ends:
            whole = batched[members[0][1][k].outputs[0]]
            made.append(_eqn(shape._reshape, [whole], {"shape": (len(members),) + tuple(y_shape)}, first))
            for t, (_, eqns) in enumerate(members):  # each step's value: a view of the batched one
                replaced[id(eqns[k])] = replace(eqns[k], primitive=shape._getitem, inputs=list(made[-1].outputs),
                                                params={"spec": shape.IndexSpec((t,))})
        made_at[start] = made
    if not made_at:
        return graph
    eqns = []
    for k, e in enumerate(graph.eqns):
        eqns += made_at.get(k, [])
        eqns.append(replaced.get(id(e), e))
    return Graph(list(graph.inputs), eqns, list(graph.outputs), dict(graph.consts), graph.name)


# -- broadcast_to(a, shape) read by ufuncs: a itself ------------------------------------------------------------------
def _implicit_broadcasts(graph: Graph) -> Graph:
    readers, outputs, swap = readers_of(graph.eqns), set(graph.outputs), {}
    for e in graph.eqns:
        if e.primitive is not shape._broadcast_to or not isinstance(e.inputs[0], Var) or e.outputs[0] in outputs:
            continue
        wide, narrow = e.outputs[0], e.inputs[0]

        def broadcasts_anyway(r):  # the ufunc's result keeps its shape with the narrow operand
            shapes = [narrow.shape if v is wide else v.shape for v in r.inputs]
            return r.primitive.ufunc and r.primitive.elementwise and np.broadcast_shapes(*shapes) == r.outputs[0].shape

        if readers[wide] and all(broadcasts_anyway(r) for r in readers[wide]):
            swap[wide] = narrow
    if not swap:
        return graph
    eqns = [replace(e, inputs=[swap.get(v, v) if isinstance(v, Var) else v for v in e.inputs]) for e in graph.eqns]
    return Graph(list(graph.inputs), eqns, list(graph.outputs), dict(graph.consts), graph.name)
