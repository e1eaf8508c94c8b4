"""DOT for a Graph: primitives as nodes (name and source line), values as edges labelled with their shapes.

Params, inputs and outputs are marked; layers are drawn as clusters; repeated structure (an unrolled loop, identical
layers) collapses into one node with a count. Every user-supplied string goes through `graphviz.escape` and the
package's quoting, and node ids are our own, so a name cannot inject DOT.
"""
from __future__ import annotations

import graphviz

from ..ir import Literal, Var
from ..train.layers import layer_of


def _shape(v) -> str:
    return "×".join(map(str, v.shape)) if v.shape else "scalar"


def _text(*lines) -> str:
    """A label: each line escaped (a backslash in a name is text, never a DOT escape), joined by DOT newlines."""
    return "\\n".join(graphviz.escape(part) for line in lines for part in str(line).split("\n"))


def _key(e):
    return (e.primitive.name, e.source.lineno if e.source else None, tuple(_shape(v) for v in e.inputs
                                                                          if isinstance(v, Var)))


def repeated_blocks(eqns, min_repeats=3, max_period=64):
    """[(start, period, repeats)]: runs where the same sequence of equations (primitive, line, shapes) repeats."""
    keys = [_key(e) for e in eqns]
    blocks, i, n = [], 0, len(keys)
    while i < n:
        best = None
        for p in range(1, min(max_period, (n - i) // min_repeats) + 1):
            r = 1
            while i + (r + 1) * p <= n and keys[i + r * p:i + (r + 1) * p] == keys[i:i + p]:
                r += 1
            if r >= min_repeats and (best is None or p * r > best[1] * best[2]):
                best = (i, p, r)
        if best:
            blocks.append(best)
            i += best[1] * best[2]
        else:
            i += 1
    return blocks


def _layers_of_eqns(graph, param_layers):
    """Eqn -> layer: the layer of a parameter it reads, or of the single layer all its inputs come from."""
    var_layer = {v: param_layers[v.name] for v in graph.inputs if v.name in param_layers}
    inputs = set(graph.inputs)
    out = {}
    for e in graph.eqns:
        direct = {var_layer[v] for v in e.inputs if v in var_layer and v in inputs}
        if len(direct) == 1:
            layer = direct.pop()
        else:
            sources = {var_layer.get(v) for v in e.inputs if isinstance(v, Var) and v not in graph.consts}
            layer = sources.pop() if len(sources) == 1 and None not in sources and not direct else None
        if layer is not None:
            out[id(e)] = layer
            var_layer[e.outputs[0]] = layer
    return out


def graph_to_dot(graph, *, layers=None, collapse=True, stats=None, name=None) -> graphviz.Digraph:
    """A graphviz.Digraph of `graph`.

    layers: param name -> layer (default: names ending in the same number form a layer, W1 and b1 -> "1").
    collapse: draw repeated blocks as one node "×k". stats: Var -> text (e.g. value|grad summaries) to show on nodes;
    `edge_weight`: Var -> float in [0, 1] in stats["_weights"] colours and thickens edges (gradient magnitude).
    The result's `bp_edges` maps each value edge's Graphviz id ("in0->e3", its <title> in SVG) to its Var, so live
    views can restyle edges without a new layout.
    """
    stats = stats or {}
    weights = stats.get("_weights", {})
    if layers is None:
        layers = {v.name: layer_of(v.name) for v in graph.inputs if v.name and v.name[-1:].isdigit()}
    dot = graphviz.Digraph(name=_text(name or graph.name), graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    producer = {}  # Var -> node id
    for i, v in enumerate(graph.inputs):
        node = f"in{i}"
        kind = "param" if v.name in layers else "input"
        style = ({"shape": "box", "style": "filled,rounded", "fillcolor": "#fde0c5"} if kind == "param"
                 else {"shape": "ellipse", "style": "filled", "fillcolor": "#dbe9f6"})
        dot.node(node, _text(v.name or f"input {i}", _shape(v), *([stats[v]] if v in stats else [])), **style)
        producer[v] = node
    eqn_layer = _layers_of_eqns(graph, layers)
    blocks = repeated_blocks(graph.eqns) if collapse else []
    collapsed = {}  # index of eqn -> block node id
    for b, (start, period, repeats) in enumerate(blocks):
        for k in range(start, start + period * repeats):
            collapsed[k] = f"rep{b}"
    clusters: dict = {}
    edges = set()
    dot.bp_edges = {}
    for k, e in enumerate(graph.eqns):
        if k in collapsed:
            node = collapsed[k]
            if k == next(s for s, p, r in blocks if collapsed[s] == node):
                _, period, repeats = blocks[int(node[3:])]
                names = ", ".join(dict.fromkeys(x.primitive.name for x in graph.eqns[k:k + period]))
                lines = sorted({x.source.lineno for x in graph.eqns[k:k + period] if x.source})
                where = [f"line {lines[0]}" + (f"–{lines[-1]}" if len(lines) > 1 else "")] if lines else []
                dot.node(node, _text(f"×{repeats}: {names}", *where), shape="box3d", style="filled",
                         fillcolor="#eeeeee", tooltip=_text(f"{repeats} repeats of {period} operations; "
                                                            "draw with collapse=False to expand"))
        else:
            node = f"e{k}"
            src = [f"line {e.source.lineno}"] if e.source and e.source.lineno else []
            extra = [stats[e.outputs[0]]] if e.outputs[0] in stats else []
            attrs = {"shape": "box", "style": "rounded"} if e.phase == "forward" else {
                "shape": "box", "style": "rounded,dashed"}
            target = clusters.setdefault(eqn_layer[id(e)], []) if id(e) in eqn_layer else None
            spec = (node, _text(e.primitive.name, *src, *extra), attrs)
            if target is not None:
                target.append(spec)
            else:
                dot.node(spec[0], spec[1], **spec[2])
        for v in e.inputs:
            if (isinstance(v, Literal) or v in graph.consts or v not in producer or producer[v] == node
                    or (producer[v], node) in edges):
                continue
            edges.add((producer[v], node))
            dot.bp_edges[f"{producer[v]}->{node}"] = v
            w = weights.get(v)
            style = {}
            if w is not None:
                style = {"penwidth": f"{0.5 + 3.5 * w:.2f}", "color": f"0.0 {0.15 + 0.85 * w:.2f} 0.85"}
            dot.edge(producer[v], node, label=_text(_shape(v)), **style)
        for v in e.outputs:
            producer[v] = node
    for n, (layer, specs) in enumerate(clusters.items()):
        with dot.subgraph(name=f"cluster_{n}") as c:
            c.attr(label=_text(f"layer {layer}"), style="rounded", color="#999999")
            for node, label, attrs in specs:
                c.node(node, label, **attrs)
    for j, v in enumerate(graph.outputs):
        out = f"out{j}"
        scalar = v.shape == ()
        dot.node(out, _text(v.name or ("loss" if scalar and j == 0 else f"output {j}"), _shape(v)),
                 shape="doubleoctagon" if scalar else "oval", style="filled",
                 fillcolor="#f4c7c3" if scalar else "#e8e8e8")
        if v in producer:
            dot.edge(producer[v], out)
    return dot
