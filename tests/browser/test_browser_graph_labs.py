"""Every graph of every lab as a learner meets it: the lab opened in a real JupyterLab and in Notebook 7 (headless
Chromium), Run All, then each graph's output read on the page (test_browser_graph_fit.seen_as_a_learner): the
whole graph in its box, or a bar under the box saying what is outside it, at a readable scale; no node's label
wider than the node; no two edge labels overlapping, no edge through a label. Then the saved lab, exported by
`jupyter nbconvert --to html`, shows every graph's image, asks for no kernel around any of them, and every label
of those images is inside its box. Screenshots of each graph in test-artifacts/graphs/.

The labs with graphs are those with a cell that ends in an expression drawing one (bp.trace, bp.viz.draw /
step_through / live, a run's graph): GRAPH_CELL below; each of those cells must show exactly one graph."""
import base64
import json
import re
import subprocess
import sys
import time

import nbformat
import pytest
from notebook_ui import ARTIFACTS, kernel_idle, open_notebook, run_all
from test_browser_graph_fit import LABEL_OVERFLOWS, seen_as_a_learner
from lab_checks import EXAMPLES

GRAPH_CELL = re.compile(r"^(?!print\().*?(\bbp\.viz\.(draw|step_through|live)\(|\bbp\.trace\(|"
                        r"\.(backward_|forward_|step_)?graph\b)")
DONE = "GRAPH LAB DONE"


def graph_cells(nb) -> list:
    """Indices of the code cells that end by drawing a graph."""
    def last_statement(source):
        lines = [line for line in source.strip().split("\n") if line.strip() and not line.startswith(("#", " "))]
        return lines[-1] if lines else ""

    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and GRAPH_CELL.match(last_statement(c.source))]


GRAPH_LABS = [p for p in EXAMPLES if graph_cells(nbformat.read(p, as_version=4))]


def test_the_labs_draw_graphs_where_the_check_looks():
    assert [p.stem for p in GRAPH_LABS] == ["01_reverse_accumulation", "03_xor_and_encoder", "06_convnet_digits",
                                          "08_backprop_through_time"]


# the cell's figures, once drawn, marked for the locators below (a notebook renders only the cells near the view:
# each one is scrolled to first)
MARK = """async ([index, deadline]) => {
  const nb = window.jupyterapp.shell.currentWidget.content, cell = nb.widgets[index];
  await nb.scrollToCell(cell);
  const until = Date.now() + deadline;
  while (!cell.node.querySelector('.bp-figure-viewport > svg') && Date.now() < until) {
    await new Promise(r => setTimeout(r, 200));
  }
  const figures = Array.from(cell.node.querySelectorAll('.bp-figure'));
  figures.forEach((f, k) => { f.dataset.probe = `${index}-${k}`; });
  return figures.map(f => f.dataset.probe);
}"""

OUTPUTS = """() => window.jupyterapp.shell.currentWidget.content.model.cells.get(
    window.jupyterapp.shell.currentWidget.content.model.cells.length - 1).outputs.toJSON()"""


def graphs_read_well(page, lab, name, nb, frontend, shots):
    """After Run All of the lab `nb` (saved as lab.root / name): each graph cell's one graph as a learner sees it,
    and, in JupyterLab, the saved lab's HTML export; screenshots test-artifacts/graphs/<shots>-*.png (a lab's Run
    All in test_browser_labs.py could call this)."""
    (ARTIFACTS / "graphs").mkdir(parents=True, exist_ok=True)
    cells = graph_cells(nb)
    for index in cells:
        probes = page.evaluate(MARK, [index, 120_000])
        assert len(probes) == 1, f"cell {index} of {name} shows {len(probes)} graphs"
        seen_as_a_learner(page.locator(f'[data-probe="{probes[0]}"]'), f"graphs/{shots}-cell{index}")
    if frontend == "lab":
        saved_lab_exports_its_graphs(page, lab, name, len(cells), shots)


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["lab", "notebook"])
@pytest.mark.parametrize("path", GRAPH_LABS, ids=[p.stem for p in GRAPH_LABS])
def test_every_graph_of_a_lab_is_seen_whole_or_says_what_is_outside(page, lab, path, frontend):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"print({DONE!r})"))
    name = f"{path.stem}-graphs-{frontend}.ipynb"
    nbformat.write(nb, lab.root / name)
    open_notebook(page, lab, name, frontend=frontend)
    try:
        run_all(page)
        deadline = time.monotonic() + 400
        while not (DONE in json.dumps(page.evaluate(OUTPUTS)) and kernel_idle(page)):
            assert time.monotonic() < deadline, f"{path.stem} did not finish in {frontend}"
            time.sleep(1.0)
        graphs_read_well(page, lab, name, nb, frontend, f"{path.stem}-{frontend}")
    finally:
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")


# the exported cells that show a graph (an SVG drawn inline or an image of one), marked; the words around them
MARK_EXPORTED = """() => { const words = [];
  for (const cell of document.querySelectorAll('.jp-CodeCell')) {
    const images = Array.from(cell.querySelectorAll('img[src^="data:image/svg+xml;base64,"]'))
      .map(img => decodeURIComponent(escape(atob(img.src.split(',')[1]))));
    if (!cell.querySelector('svg g.node') && !images.some(svg => svg.includes('class="node'))) continue;
    cell.classList.add('bp-graph-cell');
    const outputs = cell.querySelector('.jp-Cell-outputWrapper').cloneNode(true);
    outputs.querySelectorAll('svg, img').forEach(e => e.remove());
    words.push(outputs.textContent);
  }
  return words; }"""


def saved_lab_exports_its_graphs(page, lab, name, expected, shots):
    """Saved, the lab carries an image of each graph (the browser writes what it drew where the kernel had no
    `dot`); its HTML export shows them, with no request for a kernel above any graph, every label in its box."""
    path = lab.root / name
    deadline = time.monotonic() + 120  # no event says the records are written: save and read until they are
    while True:
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        saved = nbformat.read(path, as_version=4)
        images = [o["data"]["image/svg+xml"] for c in saved.cells for o in c.get("outputs", [])
                  if 'class="node' in str(o.get("data", {}).get("image/svg+xml", ""))]
        if len(images) >= expected:
            break
        assert time.monotonic() < deadline, f"{name}: {len(images)} of {expected} graphs have an image"
        time.sleep(1.0)
    # a graph view's own output (a widget) is read without the widget as its text: a title, no plea for a kernel
    for cell in saved.cells:
        outputs = cell.get("outputs", [])
        for view, record in zip(outputs, outputs[1:]):
            if ("application/vnd.jupyter.widget-view+json" in view.get("data", {})
                    and 'class="node' in str(record.get("data", {}).get("image/svg+xml", ""))):
                assert "kernel" not in view["data"]["text/plain"], view["data"]["text/plain"]
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    html = path.with_suffix(".html").read_text()
    shown = [base64.b64decode(m) for m in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)]
    shown = [svg.decode() for svg in shown if b'class="node' in svg] + re.findall(r"<svg[\s\S]*?</svg>", html)
    graphs = [svg for svg in shown if 'class="node' in svg]
    assert len(graphs) >= expected, f"{name}: {len(graphs)} graph images in its HTML export"
    reader = page.context.browser.new_page()  # the notebook's page stays open: its kernel is shut down from there
    try:
        reader.goto(path.with_suffix(".html").as_uri())
        words = reader.evaluate(MARK_EXPORTED)
        assert len(words) == expected, f"{name}: {len(words)} cells of its HTML export show a graph"
        assert not [w for w in words if "kernel" in w], f"{name}: a graph in the export asks for a kernel: {words}"
        cells = reader.locator(".jp-CodeCell.bp-graph-cell")
        for k in range(cells.count()):
            cells.nth(k).screenshot(path=str(ARTIFACTS / "graphs" / f"{shots}-html-{k}.png"))
        for k, svg in enumerate(graphs):
            reader.set_content(f"<!DOCTYPE html><html><body>{svg}</body></html>")
            overflows = reader.locator("svg").first.evaluate(LABEL_OVERFLOWS)
            assert overflows == [], f"{name}: exported image {k}: labels outside their boxes: {overflows}"
    finally:
        reader.close()
