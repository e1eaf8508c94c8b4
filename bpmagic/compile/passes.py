"""Graph-to-graph passes: dead-code elimination and common-subexpression elimination."""
from __future__ import annotations

from dataclasses import replace

from ..ir import Graph, Literal, Var


def dead_code_elimination(graph: Graph, drop_inputs: bool = False) -> Graph:
    """Drop equations whose results nothing needs (and constants nothing reads). drop_inputs: also the inputs
    nothing reads (an exported model's targets, when the model ends at its logits); a step keeps its signature."""
    needed = {v for v in graph.outputs if isinstance(v, Var)}
    kept = []
    for e in reversed(graph.eqns):
        if any(v in needed for v in e.outputs):
            kept.append(e)
            needed.update(v for v in e.inputs if isinstance(v, Var))
    kept.reverse()
    consts = {v: a for v, a in graph.consts.items() if v in needed}
    inputs = [v for v in graph.inputs if v in needed or not drop_inputs]
    return Graph(inputs, kept, list(graph.outputs), consts, graph.name)


def _key_of(atom):
    if isinstance(atom, Literal):
        return ("lit", str(atom.dtype), atom.value.item())
    return atom


def _params_key(params):
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def common_subexpressions(graph: Graph) -> Graph:
    """Compute each distinct (primitive, inputs, params) once; later copies reuse the first result.

    Backward passes repeat forward work (the VJP of tanh recomputes 1 - out**2 per use; the transposes of a
    weight are taken once per use), so this pays off on every training step.
    """
    seen, rename, eqns = {}, {}, []
    for e in graph.eqns:
        inputs = [rename.get(v, v) if isinstance(v, Var) else v for v in e.inputs]
        if e.primitive.effects:  # a random draw (or any effect): two calls are never the same value
            key = None
        else:
            key = (e.primitive, tuple(_key_of(v) for v in inputs), _params_key(e.params))
        if key is not None and key in seen:
            rename[e.outputs[0]] = seen[key]
            continue
        if key is not None:
            seen[key] = e.outputs[0]
        eqns.append(replace(e, inputs=inputs))
    outputs = [rename.get(v, v) for v in graph.outputs]
    return Graph(list(graph.inputs), eqns, outputs, dict(graph.consts), graph.name)


def fold_constants(graph: Graph) -> Graph:
    """Compute, once, every equation whose inputs are all constants (the backward seed 1.0 * 0.25, reshaped and
    broadcast, say); the result becomes a constant of the graph. Effectful equations (random draws) are left alone:
    their value belongs to each run."""
    import numpy as np

    from ..ops.evaluate import evaluate

    def host(a):  # CuPy arrays to the host: constants are folded with NumPy
        return a.get() if hasattr(a, "get") else a

    known, folded, eqns = set(graph.consts), [], []
    for e in graph.eqns:
        if not e.primitive.effects and all(isinstance(v, Literal) or v in known for v in e.inputs):
            known.add(e.outputs[0])
            folded.append(replace(e, inputs=[Literal(host(v.value)) if isinstance(v, Literal) else v
                                             for v in e.inputs]))
        else:
            eqns.append(e)
    consts = dict(graph.consts)
    with np.errstate(all="ignore"):  # as when traced: a non-finite loss or gradient is the step's guard's to report
        evaluate(Graph([], folded, [], {v: host(a) for v, a in graph.consts.items()}, graph.name), [], np,
                 on_value=lambda e, value: consts.__setitem__(e.outputs[0], np.array(value, order="C")))  # keeps 0-d
    return Graph(list(graph.inputs), eqns, list(graph.outputs), consts, graph.name)


def optimize(graph: Graph) -> Graph:
    """The passes a compiled step runs, in order."""
    graph = fold_constants(dead_code_elimination(graph))
    return dead_code_elimination(common_subexpressions(graph))
