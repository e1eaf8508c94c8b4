"""A run on 2 workers as a person meets it: a real JupyterLab in headless Chromium, `%%backprop --workers 2
--background` training on a real cluster of 2 MPI engines that the kernel starts. The gradient panel draws each
worker's gradient norm as thin lines around the averaged one, per layer over time, with a legend that says what
they are; a learning-rate slider dragged by the hand lands at the same step in both workers' histories; the record
the notebook keeps draws the same lines."""
import re
import time

import nbformat
import pytest
from cells import THREE_CLASS_CELL
from notebook_ui import ARTIFACTS, open_notebook, printed, run_all, run_cell

import bpmagic
from bpmagic.dashboard.theme import THEME

pytest.importorskip("ipyparallel", reason="a run on workers needs bpmagic[mpi]")
pytest.importorskip("mpi4py", reason="a run on workers needs bpmagic[mpi]")

DATA = ("import json, time\nimport bpmagic\nprint('BPMAGIC', bpmagic.__file__)\n"
        "import numpy as np\nrng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((512, 8)).astype(np.float32)\n"
        "Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)")
CELL = "%%backprop --workers 2 --background --steps 100000000 --lr 0.05 --batch-size 64\n" + THREE_CLASS_CELL
# pixels of the lines' canvas nearest to each line's colour (anti-aliased edges blend into the background)
INKED = """([worker, average]) => {
    const c = document.querySelector('.bpmagic-worker-lines canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const rgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    const near = (i, [r, g, b]) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 40;
    const w = rgb(worker), a = rgb(average);
    let nw = 0, na = 0;
    for (let i = 0; i < d.length; i += 4) { if (near(i, w)) nw++; else if (near(i, a)) na++; }
    return [nw, na];
}"""


def step_of(page):
    found = re.search(r"step (\d+)/", page.locator(".bpmagic-status").first.text_content())
    return int(found.group(1)) if found else -1


def test_per_worker_lines_and_a_slider_change_on_two_workers(page, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    lab.write_notebook("workers.ipynb", [DATA, CELL])
    open_notebook(page, lab, "workers.ipynb")
    try:
        run_all(page)
        assert printed(page, "BPMAGIC") == bpmagic.__file__, "the kernel runs another bpmagic than the test's: " \
            "run the test with PYTHONPATH set to the checkout under test"
        # the cluster starts (~15 s on an idle machine), then the workers train; 2 layers x (average + 2 workers)
        page.wait_for_function("() => document.querySelector('.bpmagic-worker-lines canvas')?.dataset.strokes === '6'"
                               " && /step \\d{2,}\\//.test(document.querySelector('.bpmagic-status').textContent)",
                               timeout=300_000, polling=250)
        dashboard = page.locator(".bpmagic-dashboard").first
        assert "2 workers · global batch 64" in dashboard.locator(".bpmagic-status").text_content()
        legend = dashboard.locator(".bpmagic-worker-lines-legend").text_content()
        assert "averaged over the 2 workers" in legend and "each worker's own" in legend
        assert "2 workers' noise" in dashboard.locator(".bpmagic-worker-lines-caption").text_content()
        worker_px, average_px = page.evaluate(INKED, [THEME["worker"], THEME["series"][0]])
        assert worker_px > 100 and average_px > 100, (worker_px, average_px)  # both kinds of line are on screen

        # the hand drags the learning-rate slider to the left, mid-training
        field = dashboard.locator(".bpmagic-lr .bpmagic-control-value")
        assert field.input_value() == "0.05"
        slider = dashboard.locator(".bpmagic-lr input[type=range]")
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        fraction = page.evaluate("(s) => (s.value - s.min) / (s.max - s.min)", slider.element_handle())
        x, y = box["x"] + 8 + fraction * (box["width"] - 16), box["y"] + box["height"] / 2
        dragged_at = step_of(page)
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 60, y, steps=8)
        page.mouse.up()
        page.wait_for_function("() => parseFloat(document.querySelector('.bpmagic-lr .bpmagic-control-value').value)"
                               " < 0.05", timeout=60_000)
        new = float(field.input_value())
        # the workers train on with it a while (relayed: the notebook's history shows it late on a busy machine)
        waited = run_cell(page, f"t = time.time()\nwhile {new!r} not in _bp.history['lr'] and time.time() - t < 180: "
                                "time.sleep(0.05)\n_bp.wait(until_step=_bp.steps_done + 50, timeout=180)\n"
                                "print('WAITED', json.dumps(_bp.steps_done))", tag="WAITED", timeout=420)
        dashboard.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "dashboard_workers.png"), full_page=True)
        dashboard.locator(".bpmagic-stop").click()

        result = run_cell(page, (
            "_bp.wait(120)\nfirst = lambda h: h['step'][h['lr'].index(NEW)]\n"
            "print('RESULT', json.dumps({'status': _bp.status, 'steps': _bp.steps_done, 'changed': first(_bp.history), "
            "'workers': [[len(h['step']), first(h), sorted(set(h['lr']))] for h in _bp.worker_histories()]}))"
        ).replace("NEW", repr(new)), timeout=240)
        assert result["status"] == "stopped" and result["steps"] >= waited
        changed = result["changed"]
        assert dragged_at <= changed < result["steps"] - 40  # landed mid-run
        # the new rate first used at the same step on both workers, and no rate but the two
        assert result["workers"] == [[result["steps"], changed, sorted({0.05, new})]] * 2
        dashboard.locator(".bpmagic-worker-lines").screenshot(path=str(ARTIFACTS / "dashboard_workers_lines.png"))

        # the record the notebook keeps (written by the live view when the run ended) draws the lines too
        deadline = time.monotonic() + 120
        while True:
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            saved = nbformat.read(lab.root / "workers.ipynb", as_version=4)
            record = [o["data"].get("image/svg+xml", "") for o in saved.cells[1].outputs
                      if "data-bpmagic-record" in str(o.get("data", {}))]
            if record and f"stopped at step {result['steps']}" in record[0]:
                break
            assert time.monotonic() < deadline, f"the record is not the run's final state: {str(record)[:300]}"
            time.sleep(1.0)
        svg = record[0]
        assert svg.count('class="bpmagic-worker-line"') == 4 and svg.count('class="bpmagic-average-line"') == 2
        assert "each worker&#x27;s own" in svg  # the legend (escaped in SVG text)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "dashboard_workers_failed.png"), full_page=True)
        raise
    finally:  # the kernel's end stops its cluster (its watchdog): no engines left for the tests after this one
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
