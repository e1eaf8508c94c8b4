"""The dashboard as a person meets it: a real JupyterLab in headless Chromium (Playwright), a notebook on the
backprop kernel, the gradient bars moving while it trains, the learning-rate slider dragged mid-training, Stop."""
import json
import re
import time

import pytest
from conftest import ARTIFACTS, open_notebook, run_all

CELL = """\
%%backprop --steps 100000000 --lr 0.05 --batch-size 32
W1: Param = randn(8, 32) * 0.3
b1: Param = zeros(32)
W2: Param = randn(32, 3) * 0.3
b2: Param = zeros(3)
x: Input = X
y: Target = Y
h = tanh(x @ W1 + b1)
loss: Loss = cross_entropy(h @ W2 + b2, y)
"""


def bar_values(page):
    return page.eval_on_selector_all(".bpmagic-dashboard .bpmagic-bar[data-series^='gradient']",
                                     "bars => bars.map(b => parseFloat(b.dataset.value))")


def test_dashboard_in_jupyterlab(page, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    lab.write_notebook("dash.ipynb", [
        "import numpy as np\nrng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((256, 8)).astype(np.float32)\n"
        "Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)",
        CELL,
        "import json\nlrs = _bp.history['lr']\n"
        "print('RESULT', json.dumps({'lrs': sorted(set(lrs)), 'first': lrs[0], "
        "'last': lrs[-1], 'status': _bp.status, 'steps': len(lrs)}))",
    ])
    open_notebook(page, lab, "dash.ipynb")
    run_all(page)

    # one gradient bar per layer, moving while it trains
    page.wait_for_selector(".bpmagic-dashboard .bpmagic-layer-row", timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('.bpmagic-dashboard .bpmagic-layer-row').length >= 2",
                           timeout=30_000)
    rows = page.eval_on_selector_all(".bpmagic-dashboard .bpmagic-bar[data-series^='gradient']",
                                     "bars => bars.length")
    assert rows == 2  # layers "1" and "2"
    first = bar_values(page)
    time.sleep(2.0)
    second = bar_values(page)
    assert first != second, "the gradient bars did not move"

    # drag the learning-rate slider to the left, mid-training
    handle = page.locator(".bpmagic-lr .noUi-handle").first
    box = handle.bounding_box()
    readout = page.locator(".bpmagic-lr .widget-readout").first
    before = float(readout.inner_text())
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] - 60, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("(b) => parseFloat(document.querySelector('.bpmagic-lr .widget-readout').innerText) < b",
                           arg=before, timeout=10_000)
    shown = float(readout.inner_text())
    time.sleep(1.5)  # let it train with the new rate for a while
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.locator(".bpmagic-stop").first.click()

    out = page.locator("text=/RESULT /").first
    out.wait_for(timeout=60_000)
    result = json.loads(re.sub(r"^.*?RESULT ", "", out.inner_text()))
    assert result["status"] == "stopped"
    assert result["first"] == pytest.approx(0.05)
    assert result["last"] == pytest.approx(shown, rel=0.02)  # the value the slider shows is the one used
    assert len(result["lrs"]) >= 2 and result["steps"] > 100
