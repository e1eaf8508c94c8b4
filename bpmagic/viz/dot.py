"""DOT for a Graph: primitives as nodes (name and source line), values as edges labelled with their shapes.

Params, inputs and outputs are marked; layers are drawn as clusters; repeated structure (an unrolled loop, identical
layers) collapses into one node with a count, and each call of a composite (Eqn.scope) into one node that can be drawn
open; edges can be coloured by gradient magnitude. Every user-supplied string goes through `graphviz.escape` and the
package's quoting, and node ids are our own, so a name cannot inject DOT.
"""
from __future__ import annotations

import math
import re

import graphviz

from ..ir import Literal, Var
from ..ir.printer import Namer, is_numbered
from ..train.layers import layer_of

# Graphviz knows this font's metrics, and the browser view measures its labels in the font it really uses
FONT = "Helvetica"


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


def _expanded_names(expand):
    """expand=True: every composite; False/None: none; a name or an iterable of names: those."""
    if expand is True:
        return True
    if not expand:
        return set()
    return {expand} if isinstance(expand, str) else set(expand)


def composite_groups(eqns, expand=False):
    """[(start, stop, scope)]: runs of equations inside one call of a composite that is drawn as one node.

    An equation belongs to the outermost composite of its scope that is not expanded (expand: True, or the names to
    draw open); consecutive equations of the same composite scope and source line form one call.
    """
    names = _expanded_names(expand)
    if names is True:
        return []
    groups, current = [], None
    for k, e in enumerate(eqns):
        depth = next((d for d, n in enumerate(e.scope) if n not in names), None)
        key = None if depth is None else (e.scope[:depth + 1], e.phase, e.source.lineno if e.source else None)
        if key is not None and current is not None and current[3] == key and current[1] == k:
            current[1] = k + 1
        elif key is not None:
            current = [k, k + 1, key[0], key]
            groups.append(current)
        else:
            current = None
    return [(start, stop, scope) for start, stop, scope, _ in groups]


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


# Edge colours by gradient magnitude, smallest to largest: pale blue, amber, dark red. Views that recolour edges in
# the browser are sent each edge's colour and width from here (GraphView.edge_styles).
PALETTE = ("#c6dbef", "#fdae61", "#b2182b")


def edge_colour(w: float) -> str:
    """The palette at w in [0, 1], as #rrggbb."""
    w = min(max(w, 0.0), 1.0) * (len(PALETTE) - 1)
    i = min(int(w), len(PALETTE) - 2)
    a, b = (tuple(int(c[j:j + 2], 16) for j in (1, 3, 5)) for c in PALETTE[i:i + 2])
    t = w - i
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def edge_width(w: float) -> float:
    return round(0.6 + 3.4 * min(max(w, 0.0), 1.0), 2)


def log_scale(norms) -> tuple | None:
    """(lo, hi): log10 of the smallest and largest positive norms, or None."""
    logs = [math.log10(n) for n in norms if n > 0 and math.isfinite(n)]
    return (min(logs), max(logs)) if logs else None


def weight(norm: float, scale) -> float:
    """Where |gradient| `norm` sits on the log scale (lo, hi), clipped to [0, 1]."""
    if not norm > 0 or not math.isfinite(norm):
        return 0.0
    lo, hi = scale
    return min(max((math.log10(norm) - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 1.0


def graph_to_dot(graph, *, layers=None, collapse=True, expand=False, stats=None, grad_norms=None, scale=None,
                 name=None, names=None) -> graphviz.Digraph:
    """A graphviz.Digraph of `graph`.

    layers: param name -> layer (default: inputs named by letters and a number are params, and those ending in the
    same number form a layer: W1 and b1 -> "1").
    collapse: repeated blocks (unrolled loops) drawn as one node "×k", and each call of a composite (cross_entropy,
    softmax, layer_norm, a user's @bp.composite) as one node; collapse=False draws every equation.
    expand: composites drawn open although collapsing: True for all, or a name or names ({"cross_entropy"}); an open
    composite is a dotted cluster labelled with its name.
    stats: Var -> text (e.g. value|grad summaries) shown on the node that produces it.
    grad_norms: Var -> |gradient|: edges coloured and thickened on a log scale spanning the edges drawn (so loss
    internals hidden in a collapsed composite do not set it), or spanning `scale` (log10 lo, log10 hi) if given.
    names: Var -> the name an unnamed input or output is labelled with (default: the name print(graph) gives it).

    The result's `bp_edges` maps each value edge's Graphviz id ("in0->e3", its <title> in SVG) to its Var, so live
    views can restyle edges without a new layout; `bp_scale` is the edge colour scale used (or None);
    `bp_composites` maps each collapsed composite's node id to its name.
    """
    stats = stats or {}
    if names is None:
        namer = Namer()  # walked in print(graph)'s order, so the drawing's names are the printed ones
        names = {v: namer(v) for v in graph.vars}
    if layers is None:
        layers = _params_by_name(graph)
    dot = _digraph(name or graph.name)
    producer = _draw_inputs(dot, graph, layers, stats, names)
    eqn_layer = _layers_of_eqns(graph, layers)
    specs, node_of = _collapsed_nodes(dot, graph.eqns, collapse, expand, eqn_layer, stats)
    open_scope = _open_composites(graph.eqns, expand) if collapse and expand else {}  # drawn in a dotted cluster
    edges = _equation_nodes_and_edges(dot, graph, specs, node_of, producer, eqn_layer, open_scope, stats)
    _place_nodes(dot, specs, edges)
    _draw_edges(dot, edges, grad_norms or {}, scale)
    _draw_outputs(dot, graph, producer, names, blocks={n for n in specs if _is_block(n)})
    return dot


def _params_by_name(graph) -> dict:
    """The default `layers`: a param is named like W1 or b1, letters then its layer's number (h_2, a second h, is a
    value; so is t7, a number the printer gave), since a traced graph does not say which inputs are params."""
    return {v.name: layer_of(v.name) for v in graph.inputs
            if v.name and re.fullmatch(r"[A-Za-z]+\d+", v.name) and not is_numbered(v.name)}


def _digraph(title) -> graphviz.Digraph:
    """An empty drawing in FONT, top to bottom, with the tables live views read (see graph_to_dot) still empty."""
    dot = graphviz.Digraph(name=_text(title), graph_attr={"rankdir": "TB", "fontname": FONT},
                           node_attr={"fontname": FONT, "fontsize": "10"},
                           edge_attr={"fontname": FONT, "fontsize": "9"})
    dot.bp_edges, dot.bp_composites = {}, {}
    return dot


def _draw_inputs(dot, graph, layers, stats, names) -> dict:
    """Input nodes "in{i}", params (the names in `layers`) told apart from data; returns Var -> producing node id,
    which the equations extend, so an edge always starts at the node that made its value."""
    producer = {}
    for i, v in enumerate(graph.inputs):
        node = f"in{i}"
        style = ({"shape": "box", "style": "filled,rounded", "fillcolor": "#fde0c5"} if v.name in layers
                 else {"shape": "ellipse", "style": "filled", "fillcolor": "#dbe9f6"})
        label = _text(v.name or names.get(v) or f"input {i}", _shape(v), *([stats[v]] if v in stats else []))
        dot.node(node, label, **style)
        producer[v] = node
    return producer


def _collapsed_nodes(dot, eqns, collapse, expand, eqn_layer, stats):
    """What collapses into one node, decided before any equation is drawn: (specs, node_of), where specs maps the
    node id of each repeated block and closed composite call to (label, attrs, layer, None) and node_of maps the index
    of each equation inside one to that id. A block may hold whole composite calls but never part of one (it is then
    not collapsed), so a node never shows half a call; a call inside a block is drawn as part of the block."""
    groups = composite_groups(eqns, expand if collapse else True)
    blocks = [(start, period, repeats) for start, period, repeats in (repeated_blocks(eqns) if collapse else [])
              if all(b <= start or a >= start + period * repeats or (start <= a and b <= start + period * repeats)
                     for a, b, _ in groups)]
    specs, node_of = {}, {}
    for b, (start, period, repeats) in enumerate(blocks):
        specs[f"rep{b}"] = _repeat_spec(eqns[start:start + period], period, repeats)
        node_of.update((k, f"rep{b}") for k in range(start, start + period * repeats))
    for start, stop, scope in groups:
        if any(k in node_of for k in range(start, stop)):
            continue  # inside a repeated block
        specs[f"c{start}"] = _composite_spec(eqns[start:stop], scope, eqn_layer, stats)
        dot.bp_composites[f"c{start}"] = scope[-1]
        node_of.update((k, f"c{start}") for k in range(start, stop))
    return specs, node_of


def _repeat_spec(body, period, repeats) -> tuple:
    """A repeated block's node: its count and operations; the tooltip says how to see every equation."""
    ops = ", ".join(dict.fromkeys(x.primitive.name for x in body))
    return (_text(f"×{repeats}: {ops}", *_lines(body)), {
        "shape": "box3d", "style": "filled", "fillcolor": "#eeeeee",
        "tooltip": _text(f"{repeats} repeats of {period} operations; draw with collapse=False to expand")},
        None, None)


def _composite_spec(body, scope, eqn_layer, stats) -> tuple:
    """A closed composite call's node: its name (∂ marks the backward part), the stats of the last value it makes
    that has any, and a tooltip naming its operations and how to open it; it sits in a layer only if all of it does."""
    out = next((v for e in reversed(body) for v in e.outputs if v in stats), None)
    ops = ", ".join(dict.fromkeys(x.primitive.name for x in body))
    backward = body[0].phase != "forward"
    layer_set = {eqn_layer.get(id(e)) for e in body}
    label = _text(("∂ " if backward else "") + scope[-1], *_lines(body), *([stats[out]] if out is not None else []))
    return (label, {
        "shape": "box", "style": "rounded,filled,bold" + (",dashed" if backward else ""),
        "fillcolor": "#ede7f6", "color": "#5e35b1", "class": "bp-composite",
        "tooltip": _text(f"{' › '.join(scope)}: {len(body)} operations ({ops}); "
                         f"draw with expand={{{scope[-1]!r}}} to open it")},
        layer_set.pop() if len(layer_set) == 1 else None, None)


def _equation_nodes_and_edges(dot, graph, specs, node_of, producer, eqn_layer, open_scope, stats) -> list:
    """A node for every equation not drawn in a collapsed node ("e{k}", the id step-through views name), and the
    value edges [(tail, head, Var)] between nodes: one per pair of nodes, none inside a collapsed node, none from
    literals and constants (they have no node). Each is recorded in dot.bp_edges under its Graphviz id."""
    edges = []
    for k, e in enumerate(graph.eqns):
        node = node_of.get(k, f"e{k}")
        if node not in specs:
            src = [f"line {e.source.lineno}"] if e.source and e.source.lineno else []
            extra = [stats[e.outputs[0]]] if e.outputs[0] in stats else []
            attrs = {"shape": "box", "style": "rounded" if e.phase == "forward" else "rounded,dashed"}
            specs[node] = (_text(e.primitive.name, *src, *extra), attrs, eqn_layer.get(id(e)), open_scope.get(k))
        for v in e.inputs:
            if (isinstance(v, Literal) or v in graph.consts or v not in producer or producer[v] == node
                    or f"{producer[v]}->{node}" in dot.bp_edges):
                continue
            dot.bp_edges[f"{producer[v]}->{node}"] = v
            edges.append((producer[v], node, v))
        for v in e.outputs:
            producer[v] = node
    return edges


def _draw_edges(dot, edges, grad_norms, scale):
    """Value edges labelled with their shapes; with gradient norms, coloured and thickened on `scale`, by default
    the log range over these edges only (values hidden in a collapsed node do not stretch it)."""
    if scale is None:
        scale = log_scale(grad_norms[v] for _, _, v in edges if v in grad_norms)
    dot.bp_scale = scale
    for tail, head, v in edges:
        style = {}
        if scale is not None and v in grad_norms:
            w = weight(grad_norms[v], scale)
            style = {"penwidth": str(edge_width(w)), "color": edge_colour(w)}
        dot.edge(tail, head, label=_text(_shape(v)), **style)


#: a repeated block with more outputs than this draws them as one node: an unrolled loop's forward graph hands every
#: iteration's values to the backward pass, and 150 ovals under a "×50" node would undo the collapse
BLOCK_OUTPUTS_DRAWN = 3


def _is_block(node) -> bool:
    return node.startswith("rep")  # the ids _collapsed_nodes gives repeated blocks


def _draw_outputs(dot, graph, producer, names, blocks=frozenset()):
    """Output nodes "out{j}", each fed by the node that makes it. Scalar outputs stand out (a loss is a scalar), and
    an unnamed first scalar output is called "loss". The many outputs of one repeated block are one node
    "out_rep{b}", saying how many values of which shapes it stands for."""
    from_block: dict = {}
    for v in graph.outputs:
        if producer.get(v) in blocks:
            from_block.setdefault(producer[v], []).append(v)
    grouped = {node: vs for node, vs in from_block.items() if len(vs) > BLOCK_OUTPUTS_DRAWN}
    for node, vs in grouped.items():
        shapes = ", ".join(dict.fromkeys(_shape(v) for v in vs))
        dot.node(f"out_{node}", _text(f"{len(vs)} values", shapes), shape="oval", style="filled,dashed",
                 fillcolor="#e8e8e8", tooltip=_text(f"{len(vs)} outputs computed in the repeated block; draw "
                                                    "with collapse=False to see each"))
        dot.edge(node, f"out_{node}")
    for j, v in enumerate(graph.outputs):
        if producer.get(v) in grouped:
            continue
        out = f"out{j}"
        scalar = v.shape == ()
        dot.node(out, _text(v.name or ("loss" if scalar and j == 0 else names.get(v) or f"output {j}"), _shape(v)),
                 shape="doubleoctagon" if scalar else "oval", style="filled",
                 fillcolor="#f4c7c3" if scalar else "#e8e8e8")
        if v in producer:
            dot.edge(producer[v], out)


def _lines(eqns) -> list:
    lines = sorted({e.source.lineno for e in eqns if e.source and e.source.lineno})
    return [f"line {lines[0]}" + (f"–{lines[-1]}" if len(lines) > 1 else "")] if lines else []


def _open_composites(eqns, expand) -> dict:
    """Index of eqn -> (cluster id, name) of the outermost open composite call it belongs to."""
    names = _expanded_names(expand)
    out, last = {}, None
    for k, e in enumerate(eqns):
        if e.scope and (names is True or e.scope[0] in names):
            key = (e.scope[0], e.phase, e.source.lineno if e.source else None)
            if last is None or last[0] != key or last[1] != k - 1:
                last = [key, k, f"cluster_open{k}"]
            last[1] = k
            out[k] = (last[2], e.scope[0])
        else:
            last = None
    return out


def _place_nodes(dot, specs, edges):
    """Nodes into their layer's cluster and, inside it, the open composite's cluster (clusters nest properly)."""
    layers_of: dict = {}  # an open composite sits inside a layer only if all of it belongs to that layer
    for _, _, layer, open_cluster in specs.values():
        layers_of.setdefault(open_cluster, set()).add(layer)
    tree: dict = {}  # layer -> {open cluster or None -> [(node, label, attrs)]}
    for node, (label, attrs, layer, open_cluster) in specs.items():
        if open_cluster and len(layers_of[open_cluster]) > 1:
            layer = None
        tree.setdefault(layer, {}).setdefault(open_cluster, []).append((node, label, attrs))
    for n, (layer, by_cluster) in enumerate(tree.items()):
        parent = dot.subgraph(name=f"cluster_{n}") if layer is not None else _Same(dot)
        with parent as g:
            if layer is not None:
                g.attr(style="rounded", color="#999999")
                _title(g, f"cluster_{n}", f"layer {layer}", "black",
                       [node for nodes in by_cluster.values() for node, _, _ in nodes], edges)
            for cluster, nodes in by_cluster.items():
                with (g.subgraph(name=cluster[0]) if cluster else _Same(g)) as c:
                    if cluster:
                        c.attr(style="dotted,rounded", color="#5e35b1")
                        _title(c, cluster[0], cluster[1], "#5e35b1", [node for node, _, _ in nodes], edges)
                    for node, label, attrs in nodes:
                        c.node(node, label, **attrs)


def _title(cluster, name, text, colour, members, edges):
    """A cluster's title as a node of its own at the cluster's top: Graphviz routes edges around nodes, but through
    a cluster's label, so an edge entering the cluster would cross a title drawn as the label."""
    node = f"{name}_title"
    cluster.node(node, _text(text), shape="plaintext", fontsize="14", fontcolor=colour, margin="0", height="0.3",
                 **{"class": "bp-cluster-title"})
    inside = set(members)
    fed = {head for tail, head, _ in edges if tail in inside and head in inside}
    for head in (m for m in members if m not in fed):  # above the cluster's first nodes, free to move sideways
        cluster.edge(node, head, style="invis", weight="0")


class _Same:
    """A stand-in for `with dot.subgraph(...)` that draws into the graph itself."""

    def __init__(self, graph):
        self.graph = graph

    def __enter__(self):
        return self.graph

    def __exit__(self, *exc):
        return False
