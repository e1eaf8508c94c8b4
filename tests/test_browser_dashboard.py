"""The dashboard as a person meets it: a real JupyterLab in headless Chromium (Playwright), a notebook on the
backprop kernel, the gradient bars moving while it trains, the learning-rate slider dragged mid-training, Stop."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (./dev test installs Debian's chromium)")
    pytest.importorskip("playwright", reason="playwright is a test dependency (pip install -e '.[test]')")
    pytest.importorskip("jupyterlab", reason="jupyterlab is a test dependency (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "backprop", "display_name": "Python 3 (backprop)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import numpy as np\nrng = np.random.default_rng(0)\n"
                                  "X = rng.standard_normal((256, 8)).astype(np.float32)\n"
                                  "Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)"),
        nbformat.v4.new_code_cell(CELL),
        nbformat.v4.new_code_cell("import json\nlrs = _bp.history['lr']\n"
                                  "print('RESULT', json.dumps({'lrs': sorted(set(lrs)), 'first': lrs[0], "
                                  "'last': lrs[-1], 'status': _bp.status, 'steps': len(lrs)}))"),
    ]
    nbformat.write(nb, root / "dash.ipynb")
    port = free_port()
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1")
    log = open(root / "server.log", "wb")  # a file, not a pipe: a full pipe would block the server
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", "--allow-root", "--LabApp.expose_app_in_browser=True",
         f"--ServerApp.root_dir={root}", "--ServerApp.disable_check_xsrf=True"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start: " + (root / "server.log").read_text()[-2000:])
    yield url
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


def kernel_idle(page):
    return page.evaluate("""() => {
        const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
    }""")


def bar_values(page):
    return page.eval_on_selector_all(".bpmagic-dashboard .bpmagic-bar[data-series^='gradient']",
                                     "bars => bars.map(b => parseFloat(b.dataset.value))")


def test_dashboard_in_jupyterlab(page, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{lab}/lab/tree/dash.ipynb")
    page.wait_for_function("() => !!window.jupyterapp", timeout=60_000)
    deadline = time.time() + 90
    while not kernel_idle(page):
        assert time.time() < deadline, "the backprop kernel did not become idle"
        time.sleep(0.5)
    # not awaited: run-all resolves only when every cell has finished
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

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
