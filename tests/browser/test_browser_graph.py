"""The graph view as a person meets it, in a real JupyterLab (headless Chromium) with no `dot` on the kernel's
PATH: a graph output drawn by the extension's wasm Graphviz, the %%backprop line decorated, the two commands, the
step-through widget advancing node by node, and a 500-equation unrolled RNN drawn collapsed."""
import json

from notebook_ui import ARTIFACTS, open_notebook, printed, run_all, wait_kernel_idle

SETUP = """\
import json, os, shutil
# this notebook runs without Graphviz's `dot`: graphs must be drawn in the browser
os.environ["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                     if not os.path.exists(os.path.join(p, "dot")))
import numpy as np
import bpmagic as bp
print("DOT", shutil.which("dot"))
"""

GRAPH = """\
def f(a, b):
    c = a * b
    d = bp.tanh(c) + a
    return d * d
g = bp.trace(f, np.float64(1.5), np.float64(-0.5))
print("NODES", len(g.inputs) + len(g.eqns) + len(g.outputs))
g
"""

STEPS = """\
st = bp.viz.step_through(f, np.float64(1.5), np.float64(-0.5))
print("STEPS", json.dumps([s.node for s in st.steps_data]))
st
"""

RNN = """\
W = np.random.default_rng(0).standard_normal((8, 8)) * 0.3
U = np.random.default_rng(1).standard_normal((3, 8))
xs = np.random.default_rng(2).standard_normal((84, 3))
def rnn(W, U, xs):
    h = np.zeros(8)
    for t in range(84):
        h = bp.tanh(h @ W + xs[t] @ U)
    return bp.sum(h * h)
big = bp.trace(rnn, W, U, xs)
print("RNN", len(big.eqns))
big
"""

TRAIN = """\
%%backprop --steps 20 --lr 0.5 --no-dashboard
W1: Param = randn(2, 4) * 0.5
W2: Param = randn(4, 1) * 0.5
x: Input = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
y: Target = np.array([[0], [1], [1], [0]], np.float64)
loss: Loss = mean((tanh(x @ W1) @ W2 - y) ** 2)
"""


def nodes_in(page, k):
    """Nodes in the k-th graph output drawn by the extension."""
    return page.locator(".bp-graphviz").nth(k).locator("svg g.node").count()


def test_graphs_in_jupyterlab_without_dot(page, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    lab.write_notebook("graphs.ipynb", [SETUP, GRAPH, STEPS, RNN, TRAIN])
    open_notebook(page, lab, "graphs.ipynb")
    run_all(page)
    assert printed(page, "DOT") == "None"

    # the graph output: no image/svg+xml from the kernel, so the extension's renderer draws the DOT with wasm
    expected = int(printed(page, "NODES"))
    page.wait_for_selector(".bp-graphviz svg g.node", timeout=120_000)
    assert nodes_in(page, 0) == expected

    # the step-through: Step ▶ highlights the nodes of the backward pass in reverse topological order
    order = json.loads(printed(page, "STEPS"))
    view = page.locator(".bp-graph-view").first
    view.locator("svg g.node").first.wait_for(timeout=120_000)
    assert view.locator("g.node.bp-active").count() == 0
    for k in range(3):
        view.locator("button[data-action=step]").click()
        page.wait_for_function("([sel, node]) => document.querySelector(sel).dataset.activeNode === node",
                               arg=[".bp-graph-view", order[k]], timeout=60_000)
        active = view.locator("g.node.bp-active")
        assert active.count() == 1
        assert active.locator("title").text_content() == order[k]
        assert view.locator("g.node.bp-done").count() == k
        assert f"step {k + 1} of {len(order)}" in view.locator(".bp-step-position").inner_text()
    assert "incoming adjoint" in view.locator(".bp-step-explain").inner_text()
    view.locator("button[data-action=back]").click()
    page.wait_for_function("([sel, node]) => document.querySelector(sel).dataset.activeNode === node",
                           arg=[".bp-graph-view", order[1]], timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "step_through.png"), full_page=True)

    # the unrolled RNN: 500 equations, drawn collapsed (how fast is a benchmark's business, not this test's)
    assert int(printed(page, "RNN")) >= 500
    # the cell printed its size; its graph output follows
    page.wait_for_function("() => document.querySelectorAll('.bp-graphviz svg').length >= 2", timeout=120_000)
    rnn_nodes = nodes_in(page, 1)
    assert 3 <= rnn_nodes < 20
    assert page.locator(".bp-graphviz").nth(1).locator("text=/×8[0-9]/").count() >= 1

    # the %%backprop line is decorated in the editor
    page.wait_for_selector(".bp-backprop-line .bp-backprop-magic", timeout=60_000)
    line = page.locator(".bp-backprop-line").first
    assert line.text_content().startswith("%%backprop --steps 20")
    assert "".join(line.locator(".bp-backprop-magic").all_text_contents()) == "%%backprop"
    page.locator("text=/Trained 20 steps/").first.wait_for(timeout=180_000)  # the last cell ran
    wait_kernel_idle(page, 180, "the notebook did not finish")

    # "Show backward graph of the last run" inserts and runs a cell; its output is drawn by the extension
    before = page.locator(".bp-graphviz").count()
    page.evaluate("() => window.jupyterapp.commands.execute('bpmagic:show-backward-graph')")
    page.wait_for_function("(n) => document.querySelectorAll('.bp-graphviz svg').length > n", arg=before,
                           timeout=120_000)
    backward = page.locator(".bp-graphviz").nth(before)
    assert backward.locator("svg g.node").count() > 5
    assert backward.locator("text=/line /").count() >= 1  # backward nodes name the cell line they come from

    # "Insert %%backprop template" puts a decorated %%backprop cell below the active one
    page.evaluate("() => window.jupyterapp.commands.execute('bpmagic:insert-template')")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel"
                           ".getSource().startsWith('%%backprop')", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "graphs.png"), full_page=True)
