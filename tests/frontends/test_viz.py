"""Graphviz drawings of graphs: structure of the DOT, escaping, collapse of repeats, and the notebook bundle."""
import json
import re
import shutil

import graphviz
import numpy as np
import pytest

import bpmagic as bp
from bpmagic.viz import graph_to_dot, repeated_blocks
from bpmagic.viz.render import GRAPHVIZ_MIME, mimebundle


def mlp(x, W1, b1, W2, b2):
    h = bp.tanh(x @ W1 + b1)
    return bp.sum((h @ W2 + b2) ** 2)  # primitives only: one node per equation

@pytest.fixture
def mlp_graph():
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((4, 2)), rng.standard_normal((2, 3)), np.zeros(3), rng.standard_normal((3, 1)),
            np.zeros(1))
    return bp.trace(mlp, *args)


def nodes_and_edges(source):
    """The nodes and the edges drawn (not the clusters' titles, nor the invisible edges that place them)."""
    nodes = [n for n in re.findall(r"^\s*(\w+) \[label=", source, re.M) if not n.endswith("_title")]
    edges = [(a, b) for a, b in re.findall(r"^\s*(\w+) -> (\w+)", source, re.M) if not a.endswith("_title")]
    return nodes, edges


def test_nodes_edges_and_layer_clusters(mlp_graph):
    src = graph_to_dot(mlp_graph).source
    nodes, edges = nodes_and_edges(src)
    assert len(nodes) == 5 + len(mlp_graph.eqns) + 1  # inputs, one node per equation, the output
    assert len(edges) == len(set(edges))
    assert src.count("subgraph cluster_") == 2 and 'label="layer 1"' in src and 'label="layer 2"' in src
    assert 'label="x\\n4×2"' in src and 'label="W1\\n2×3"' in src  # names and shapes
    assert re.search(r'label="matmul\\nline \d+"', src)  # primitive and source line
    assert "doubleoctagon" in src  # the loss is marked


def test_hostile_names_cannot_inject_dot():
    evil = 'a"];evil[label="x'
    g = bp.trace(lambda p: bp.sum(p[evil] * 2), {evil: np.ones(2)})
    src = graph_to_dot(g).source
    assert 'label="a\\"];evil[label=\\"x' in src  # only ever inside a quoted, escaped label
    assert not re.search(r"^\s*evil", src, re.M)
    assert len(nodes_and_edges(src)[0]) == 1 + len(g.eqns) + 1
    g2 = bp.trace(lambda p: bp.sum(p["a\\N"] * 2), {"a\\N": np.ones(2)})
    assert "a\\\\N" in graph_to_dot(g2).source  # a backslash is text, not Graphviz's \N escape
    if shutil.which("dot"):
        svg = graphviz.Source(src).pipe(format="svg", encoding="utf-8")  # Graphviz sees no extra node
        assert svg.count('class="node"') == 1 + len(g.eqns) + 1


def unrolled_rnn(steps):
    def f(x, Wx, Wh):
        h = bp.tanh(x @ Wx)
        for _ in range(steps):
            h = bp.tanh(x @ Wx + h @ Wh)
        return bp.sum(h)

    rng = np.random.default_rng(1)
    return bp.trace(f, rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), rng.standard_normal((4, 4)))


def test_repeats_collapse_into_one_node_and_expand():
    g = unrolled_rnn(125)  # 500 equations, like the 500-node graph
    assert len(g.eqns) > 500
    (start, period, repeats), = repeated_blocks(g.eqns)
    assert period * repeats >= 490
    collapsed = graph_to_dot(g).source
    assert len(nodes_and_edges(collapsed)[0]) < 20 and f"×{repeats}:" in collapsed
    expanded = graph_to_dot(g, collapse=False).source
    assert len(nodes_and_edges(expanded)[0]) > 500


def test_unnamed_outputs_of_a_graph_with_repeats_are_labelled():
    """The repeated block's label once overwrote the Var -> name table that labels an unnamed output."""
    g = bp.trace(lambda x, W: (bp.sum(bp.tanh(bp.tanh(bp.tanh(bp.tanh(x @ W))))), bp.tanh(x) * 2), np.ones((2, 3)),
                 np.ones((3, 3)))
    src = graph_to_dot(g).source
    assert "×4: tanh" in src and 'label="loss\\nscalar"' in src and re.search(r'label="t\d+\\n2×3"', src), src


def test_bundle_with_dot(mlp_graph):
    if not shutil.which("dot"):
        pytest.skip("Graphviz's dot is not installed (./dev test installs Debian's graphviz)")
    bundle = mimebundle(mlp_graph)
    assert bundle["image/svg+xml"].lstrip().startswith(("<?xml", "<svg"))
    assert bundle["image/svg+xml"].count('class="node"') == len(nodes_and_edges(bundle["text/plain"])[0])
    assert bundle[GRAPHVIZ_MIME] == bundle["text/plain"]


def test_bundle_without_dot_falls_back_cleanly(mlp_graph, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # as on a machine without Graphviz
    bundle = mlp_graph._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert bundle["text/plain"].startswith("digraph") and bundle[GRAPHVIZ_MIME] == bundle["text/plain"]


def test_printing_is_still_python(mlp_graph):
    assert str(mlp_graph).startswith("def mlp(")


def test_gradient_flow_of_a_run():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((16, 2)), rng.standard_normal((16, 1))
    params = {"W1": rng.standard_normal((2, 4)), "b1": np.zeros(4), "W2": rng.standard_normal((4, 1)),
              "b2": np.zeros(1)}
    run = bp.fit(lambda p, x, y: bp.mse(bp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], y), params, (X, Y),
                 steps=5, batch_size=8, backend="numpy")
    src = bp.viz.draw(run).source
    assert "|grad|" in src and "|data|" in src and "\n|grad|" not in src  # labels use DOT newlines only
    widths = [float(w) for w in re.findall(r"penwidth=([\d.]+)", src)]
    assert len(widths) >= 8 and max(widths) == pytest.approx(4.0) and min(widths) == pytest.approx(0.6)
    assert src.count("subgraph cluster_") == 2
    from bpmagic.viz.flow import gradient_flow

    graph, stats, _ = gradient_flow(run)
    _, grads = bp.value_and_grad(run.step.loss_fn)(run.params, X[:8], Y[:8])
    w1 = next(v for v in graph.inputs if v.name == "W1")
    assert f"|grad| {np.linalg.norm(grads['W1']):.3g}" in stats[w1]


def classifier(x, y, W):
    return bp.cross_entropy(x @ W, y)


@pytest.fixture
def ce_graph():
    rng = np.random.default_rng(3)
    return bp.trace(classifier, rng.standard_normal((4, 3)), np.array([0, 1, 2, 0]), rng.standard_normal((3, 3)))


def labels(dot):
    return re.findall(r'label="([^"]*)"', dot.source)


def test_composites_are_one_node_by_default_and_open_on_request(ce_graph):
    inner = {"exp", "log", "max", "stop_gradient"}
    collapsed = graph_to_dot(ce_graph)
    assert list(collapsed.bp_composites.values()) == ["cross_entropy"]
    assert not inner & {label.split("\\n")[0] for label in labels(collapsed)}
    assert 'class="bp-composite"' in collapsed.source
    opened = graph_to_dot(ce_graph, expand=True)
    assert not opened.bp_composites and inner <= {label.split("\\n")[0] for label in labels(opened)}
    assert re.search(r"subgraph cluster_open\d+ \{\s*color=\S+ style=\S+\s*cluster_open\d+_title \[label=cross_entropy",
                     opened.source)
    # opening cross_entropy shows its own steps; the composites inside it stay closed
    outer = graph_to_dot(ce_graph, expand={"cross_entropy"})
    closed_inside = set(outer.bp_composites.values())
    assert "logsumexp" in closed_inside and "cross_entropy" not in closed_inside
    assert len(nodes_and_edges(collapsed.source)[0]) < len(nodes_and_edges(outer.source)[0]) < len(
        nodes_and_edges(opened.source)[0])
    # collapse=False draws every equation
    assert not graph_to_dot(ce_graph, collapse=False).bp_composites


def test_a_users_composite_and_backward_graphs():
    @bp.composite
    def swish(x):
        return x * bp.sigmoid(x)

    g = bp.trace(lambda x: bp.sum(swish(x) * swish(x * 2)), np.ones(3))
    assert list(graph_to_dot(g).bp_composites.values()) == ["swish", "swish"]  # two calls, two nodes
    run = bp.fit(lambda p, x: bp.mean(swish(x @ p["W"]) ** 2), {"W": np.ones((2, 3))}, (np.ones((4, 2)),), steps=1,
                 backend="numpy")
    dot = graph_to_dot(run.backward_graph)
    assert "swish" in dot.bp_composites.values() and "∂ swish" in dot.source  # the backward part is marked


def test_a_runs_graphs_show_the_cells_batch_size_after_an_epochs_last_partial_batch():
    """50 examples in batches of 16: each epoch ends with a batch of 2, which runs a plan of its own; the graphs a
    learner sees are those of the batch size they chose."""
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((50, 3)), rng.integers(0, 4, 50)
    run = bp.fit(lambda p, x, y: bp.cross_entropy(bp.tanh(x @ p["W1"]) @ p["W2"], y),
                 {"W1": rng.standard_normal((3, 5)), "W2": rng.standard_normal((5, 4))}, (X, Y), epochs=2,
                 batch_size=16, backend="numpy")
    x = next(v for v in run.step.plan.graph.inputs if v.name == "x")
    assert x.shape == (2, 3)  # the step that ran last: the epoch's last batch
    for graph in (run.graph, run.backward_graph, run.step_graph):
        shapes = {v.shape for v in graph.vars}
        assert (16, 3) in shapes and (16, 5) in shapes and not any(s[:1] == (2,) for s in shapes), graph.name
    assert "16×5" in graph_to_dot(run.backward_graph).source and "2×5" not in graph_to_dot(run.backward_graph).source
    assert "16×3" in bp.viz.draw(run).source
    # a step that always runs another batch size shows its own
    step = bp.compile_step(lambda p, x: bp.sum(x @ p["W"]), {"W": np.ones((3, 2))}, (np.ones((4, 3)),),
                           backend="numpy")
    step(np.ones((6, 3)))
    assert {v.shape for v in step.forward_graph.inputs} == {(3, 2), (6, 3)}


def _bezier_points(points, steps=40):
    """Points along Graphviz's piecewise cubic Bézier (p0, c1, c2, p1, c1, c2, p2, ...)."""
    for k in range(0, len(points) - 3, 3):
        p0, c1, c2, p1 = (np.array(p, float) for p in points[k:k + 4])
        for t in np.linspace(0, 1, steps):
            yield (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t ** 2 * c2 + t ** 3 * p1


def test_a_clusters_title_is_a_node_that_no_edge_crosses():
    """A layer's title, and an open composite's name, sit in a node at the top of the cluster: Graphviz routes
    edges around it (through a cluster's own label, they crossed it: lab 03's "layer 2")."""
    rng = np.random.default_rng(6)
    X, Y = np.eye(8), np.arange(8)
    params = {"W1": rng.standard_normal((8, 3)), "b1": np.zeros(3), "W2": rng.standard_normal((3, 8)),
              "b2": np.zeros(8)}
    run = bp.fit(lambda p, x, y: bp.cross_entropy(bp.sigmoid(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], y),
                 params, (X, Y), steps=2, batch_size=8, backend="numpy", name="encoder")
    drawing = bp.viz.draw(run)
    for dot in (drawing.dot, drawing.expanded):
        titles = re.findall(r"^\s*(cluster_\w+_title) \[label=\"?([^\"\s]+)", dot.source, re.M)
        shown = {text for _, text in titles}  # "layer" of "layer 1"
        assert "layer" in shown and ("cross_entropy" in shown) == (dot is drawing.expanded)
        assert not re.search(r"^\s*label=", dot.source, re.M), "a cluster has a label of its own"
        if not shutil.which("dot"):
            continue  # the browser's layout is checked in test_browser_graph_labs.py
        layout = json.loads(dot.pipe(format="json"))
        boxes = []
        for o in layout["objects"]:
            if o["name"].endswith("_title"):
                x, y = map(float, o["pos"].split(","))
                w, h = float(o["width"]) * 72 / 2, float(o["height"]) * 72 / 2
                boxes.append((o["name"], x - w, x + w, y - h, y + h))
        assert len(boxes) == len(titles)
        for e in layout["edges"]:
            if e.get("style") == "invis":
                continue
            curve = [p for op in e["_draw_"] if op["op"] == "b" for p in _bezier_points(op["points"])]
            for name, x0, x1, y0, y1 in boxes:
                assert not any(x0 < x < x1 and y0 < y < y1 for x, y in curve), (name, e["tail"], e["head"])


def test_bundle_carries_both_drawings_for_the_browser(ce_graph):
    bundle = mimebundle(ce_graph)
    data = bundle["application/vnd.bpmagic.graph+json"]
    assert data["dot"] == bundle["text/plain"] and "cross_entropy" in data["dot"]
    assert 'label="stop_gradient' in data["expanded"] and 'label="stop_gradient' not in data["dot"]
    if shutil.which("dot"):
        assert bundle["image/svg+xml"].count('class="node') == len(nodes_and_edges(data["dot"])[0])


def test_flow_colours_span_the_edges_drawn():
    rng = np.random.default_rng(4)
    X, Y = np.eye(8), np.arange(8)
    params = {"W1": rng.standard_normal((8, 3)), "W2": rng.standard_normal((3, 8))}
    run = bp.fit(lambda p, x, y: bp.cross_entropy(bp.sigmoid(x @ p["W1"]) @ p["W2"], y), params, (X, Y), steps=3,
                 backend="numpy")
    from bpmagic.viz.dot import edge_colour
    from bpmagic.viz.flow import gradient_flow

    graph, stats, norms = gradient_flow(run)
    dot = graph_to_dot(graph, stats=stats, grad_norms=norms)
    shown = [norms[v] for v in dot.bp_edges.values() if v in norms]
    assert dot.bp_scale == pytest.approx((np.log10(min(shown)), np.log10(max(shown))))
    hidden = [n for v, n in norms.items() if v not in dot.bp_edges.values()]
    assert max(hidden) > max(shown)  # the loss's internals carry larger gradients; they do not set the scale
    colours = set(re.findall(r'color="(#[0-9a-f]{6})"', dot.source))
    assert edge_colour(0.0) in colours and edge_colour(1.0) in colours  # the full range is used between layers
    drawing = bp.viz.draw(run)
    assert drawing.expanded is not None and drawing.expanded.source.count("label=cross_entropy") == 1  # one cluster


def test_widget_outputs_are_followed_by_a_record_with_an_image_where_dot_is_installed():
    if not shutil.which("dot"):
        pytest.skip("Graphviz's dot is not installed (./dev test installs Debian's graphviz)")
    st = bp.viz.step_through(lambda a, b: bp.tanh(a * b) + a, 1.5, -0.5)
    data, _ = st._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    record = st.record_bundle()  # the output displayed after the widget (bpmagic/record.py)
    assert record["image/svg+xml"].count('class="node"') == len(nodes_and_edges(st.dot)[0])
    assert f'data-bpmagic-record="{st.record_token}"' in record["text/html"]
    assert "dL/da = ?" in record["text/plain"]  # what a reader without a kernel is told: no answer given away
    # without `dot`, the record is the summary until the browser view sends what it drew
    import bpmagic.viz.views as views

    real = views.svg_of
    views.svg_of = lambda dot: None
    try:
        bare = st.record_bundle()
    finally:
        views.svg_of = real
    assert "image/svg+xml" not in bare and f'data-bpmagic-record="{st.record_token}"' in bare["text/html"]


def test_a_steps_backward_graph_names_what_flows_in_and_out_as_its_forward_graph_does():
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((2, 8)).astype(np.float32), "b1": np.zeros(8, np.float32),
              "W2": rng.standard_normal((8, 1)).astype(np.float32), "b2": np.zeros(1, np.float32)}
    X = rng.standard_normal((4, 2)).astype(np.float32)
    Y = (rng.random((4, 1)) > 0.5).astype(np.float32)

    def loss_fn(p, x, y):
        h = np.tanh(x @ p["W1"] + p["b1"])
        prob = bp.sigmoid(h @ p["W2"] + p["b2"])
        return bp.binary_cross_entropy(prob, y)

    step = bp.compile_step(loss_fn, params, X, Y, backend="numpy", stats=True)
    forward, backward = str(step.forward_graph), str(step.backward_graph)
    assert "h = tanh(" in forward and "prob = sigmoid(" in forward and "loss = negative(" in forward
    # the backward graph reads its inputs under the forward graph's names, and names what it hands on
    header = backward.splitlines()[0]
    for name in ("h:", "prob:", "W2:", "x:", "y:"):
        assert name in header, (name, header)
    assert "dW1 = " in backward and "dh = " in backward and "signal_at_layer_1 = " in backward
    numbered = re.findall(r"\b(t\d+):", header)
    assert numbered, header
    for name in numbered:
        assert f"{name} = " in forward, f"{name} is the forward graph's {name}"
    # clip's bounds take no tie-breaking: no equal / astype noise
    assert "equal(" not in backward and "astype(" not in backward
    dot = bp.viz.graph_to_dot(step.backward_graph).source
    assert "input " not in dot and "output " not in dot
    assert "signal at layer 1" in dot and "dW1" in dot


def test_a_name_the_code_reuses_is_told_apart_alike_in_every_part_and_the_losss_own_name_is_kept():
    rng = np.random.default_rng(1)
    params = {"W1": rng.standard_normal((3, 3)), "W2": rng.standard_normal((3, 3))}
    X, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))

    def loss_fn(p, x, y):
        h = np.tanh(x @ p["W1"])
        h = np.tanh(h @ p["W2"])  # the same name for a second value
        L = ((h - y) ** 2).mean()
        return L

    step = bp.compile_step(loss_fn, params, X, Y, backend="numpy")
    forward, backward = str(step.forward_graph), str(step.backward_graph)
    assert "h = tanh(" in forward and "h_2 = tanh(" in forward and "L = " in forward and "loss" not in forward
    first = re.search(r"(\w+) = tanh\(", forward).group(1)  # the first tanh's value, as the forward graph calls it
    assert first == "h"
    # the backward graph multiplies W2's gradient by the first h (its input), under the same name
    assert re.search(r"transpose\(h, ", backward), backward
    assert "dloss" not in backward  # the seed (where the folding of constants leaves it) would be dL
    dot = graph_to_dot(step.backward_graph).source
    value, param = 'fillcolor="#dbe9f6"', 'fillcolor="#fde0c5"'
    assert re.search(rf'label="h_2\\n[^"]*" {value}', dot), "h_2 is a value, not a parameter"
    assert re.search(rf'label="W2\\n[^"]*" {param}', dot)
