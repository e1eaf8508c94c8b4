"""The labs in JupyterLite, as a student meets them with nothing installed: the offline site that `./dev lite
--offline` builds (lite/build.py), served from 127.0.0.1, opened in headless Chromium with every other host
blocked and counted (there must be none), Run All, and each lab's own outcome check (tests/support/lab_checks.py)
read from the kernel running in the page; the dashboard and a graph drawn by bpmagic's extension; and in lab 00's
`--background` run, a learning rate typed into the dashboard takes effect while it trains.

The site is built once and cached under $BPMAGIC_TEST_ENVS (tests/venvs.py) until its inputs change (bpmagic's
source, the labs, the build script, pyproject.toml). Its figures (size, time from page load to a runnable first
cell, each lab's time) are printed and written to test-artifacts/lite/figures.json."""
import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from notebook_ui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, cell_outputs
from lab_checks import CHECKS, EXAMPLES
from venvs import envs_dir

ROOT = Path(__file__).resolve().parents[2]
# the labs run here: 00 (below, with the steering); BPMAGIC_LITE_LABS=all adds every other lab that runs in the
# browser (each costs a minute or two: the page and Pyodide start afresh), or name labs, separated by commas.
LABS = ["00_quickstart"]  # by default lab 00 alone: the whole suite must stay within its 30 minutes
NOT_IN_BROWSER = {"02_gradient_checking": "its `--check jax` cell needs JAX, which Pyodide lacks (docs/classroom.md)",
                  "10_gpus_and_workers": "its workers are MPI processes, which a browser cannot start (its first "
                                         "cell there says so)"}
_MORE = os.environ.get("BPMAGIC_LITE_LABS", "")
LABS += ([p.stem for p in EXAMPLES if p.stem not in LABS and p.stem not in NOT_IN_BROWSER] if _MORE == "all"
         else [n for n in _MORE.split(",") if n])
_NOT_BY_DEFAULT = pytest.mark.skip(reason="the other labs in JupyterLite run with BPMAGIC_LITE_LABS=all (or a list); "
                                          "by default lab 00 alone, for the suite's time budget")
DEADLINE = 600  # seconds for a lab on a busy 2-core machine (WebAssembly runs NumPy several times slower)
ARTS = ARTIFACTS / "lite"


def _inputs_key() -> str:
    h = hashlib.sha256()
    paths = [ROOT / "pyproject.toml", *sorted((ROOT / "lite").glob("*.py")), *sorted((ROOT / "examples").iterdir())]
    for folder in ("bpmagic", "widgets/src", "labextension/src", "labextension/style", "kernels"):
        paths += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                        and "labextension" not in p.relative_to(ROOT).parts[1:2])
    for p in paths:
        if p.is_file():
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def site():
    """The offline site, built by the same command a teacher runs, cached while its inputs are unchanged."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (./dev test installs Debian's chromium)")
    pytest.importorskip("jupyterlite_core", reason="jupyterlite-core is a test dependency (pip install -e '.[test]')")
    out = envs_dir() / "lite-site"
    key = out / ".bpmagic-inputs"
    wanted = _inputs_key()
    if not (key.exists() and key.read_text() == wanted):
        began = time.monotonic()
        subprocess.run([sys.executable, str(ROOT / "lite" / "build.py"), "--offline", "--out", str(out)], check=True)
        key.write_text(wanted)
        print(f"built the offline site in {time.monotonic() - began:.0f} s")
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser_page(served):
    """Chromium that reaches 127.0.0.1 only: the host resolver knows no other host, and every request to another
    origin is aborted and counted."""
    from playwright.sync_api import sync_playwright

    outside = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        context = b.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")
        own = urlsplit(served).netloc

        def route(r):
            url = urlsplit(r.request.url)
            if url.scheme in ("http", "https", "ws", "wss") and url.netloc != own:
                outside.append(r.request.url)
                return r.abort()
            return r.continue_()

        context.route("**/*", route)
        page = context.new_page()
        page.outside = outside
        yield page
        context.close()
        b.close()


KERNEL_IDLE = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle';
}"""

# run code in the page's kernel (not in a cell) and return what it printed
EXECUTE = """async (code) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    let text = '';
    const future = kernel.requestExecute({code, silent: false, store_history: false});
    future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'stream') text += msg.content.text;
        if (msg.header.msg_type === 'error') text += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
    };
    await future.done;
    return text;
}"""

# a new last cell with `code`, run as a student would
ADD_CELL = """async (code) => {
    const app = window.jupyterapp, panel = app.shell.currentWidget, nb = panel.content;
    nb.activeCellIndex = nb.widgets.length - 1;
    await app.commands.execute('notebook:insert-cell-below');
    nb.activeCell.model.sharedModel.setSource(code);
    await app.commands.execute('notebook:run-cell');
}"""


def text_of(output):
    if output["output_type"] == "stream":
        return "".join(output["text"])
    if output["output_type"] == "error":
        return f"ERROR {output['ename']}: {output['evalue']}"
    plain = output.get("data", {}).get("text/plain", "")
    return "".join(plain) if isinstance(plain, list) else plain


def wait(page, condition, what, deadline=DEADLINE, every=0.5):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"{what} did not happen within {deadline} s"
        time.sleep(every)


def open_lab(page, url, name):
    """Open the lab; seconds from the page's load to its kernel idle (the first cell runnable)."""
    began = time.monotonic()
    page.goto(f"{url}/lab/index.html?path={name}.ipynb")
    page.wait_for_function("() => !!window.jupyterapp", timeout=DEADLINE * 1000)
    page.wait_for_function(KERNEL_IDLE, timeout=DEADLINE * 1000, polling=250)
    return time.monotonic() - began


def run_all_and_check(page, name):
    """Run All; when every cell has run, the lab's own check, evaluated in its kernel. Returns (seconds, result)."""
    began = time.monotonic()
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    setup = []  # when the first cell (%pip install bpmagic, %load_ext) was seen done

    def done():
        cells = cell_outputs(page)
        if not setup and cells[0]["count"] is not None:
            setup.append(time.monotonic() - began)
        errors = [text_of(o) for c in cells for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, errors  # Run All stops at an error: say which at once
        return all(c["count"] is not None for c in cells) and page.evaluate(KERNEL_IDLE)

    wait(page, done, f"{name}: Run All")
    elapsed = time.monotonic() - began
    figures(**{f"{name}_setup_cell_s": round(setup[0], 1)})
    cells = cell_outputs(page)
    errors = [text_of(o) for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, errors
    expression, check = CHECKS[name]
    printed = page.evaluate(EXECUTE, f"import json as _json\nprint('CHECK', _json.dumps({expression}))")
    assert "CHECK " in printed, printed
    result = json.loads(printed.split("CHECK ", 1)[1])
    assert check(result), result
    return elapsed, result, cells


def dashboards(page):
    return page.locator(".bpmagic-dashboard")


def figures(**values):
    ARTS.mkdir(parents=True, exist_ok=True)
    path = ARTS / "figures.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(values)
    path.write_text(json.dumps(data, indent=1))
    print(json.dumps(values))


@pytest.mark.slow
def test_lab_00_offline_in_jupyterlite(browser_page, served, site):
    page = browser_page
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    pyodide = sum(f.stat().st_size for f in (site / "static" / "pyodide").rglob("*") if f.is_file())
    first_cell = open_lab(page, served, "00_quickstart")
    print(f"00_quickstart: the first cell runnable {first_cell:.0f} s after the page's load", flush=True)
    elapsed, result, cells = run_all_and_check(page, "00_quickstart")
    setup = "".join(text_of(o) for o in cells[0]["outputs"])
    assert "RuntimeError" not in setup and "Error" not in setup, setup
    printed = "".join(text_of(o) for c in cells for o in c["outputs"])
    assert "predictions: [0. 1. 1. 0.]" in printed, printed
    assert "the controls apply when this cell ends" in printed  # the blocking cell says it once

    # the dashboards: the blocking run's has ended; the steered one trains on, slowly, in the background
    assert dashboards(page).count() == 2
    wait(page, lambda: dashboards(page).first.locator(".bpmagic-status").text_content().startswith("finished"),
         "the first dashboard showing the end")
    steer = dashboards(page).last
    status = lambda: steer.locator(".bpmagic-status").text_content()  # noqa: E731
    step_of = lambda: int(re.search(r"step (\d+)", status()).group(1))  # noqa: E731
    wait(page, lambda: status().startswith("training") and step_of() >= 20, "the steered run training")

    # a learning rate typed into the dashboard applies mid-run (an asyncio task: widget messages between its slices)
    field = steer.locator(".bpmagic-lr .bpmagic-control-value")
    field.scroll_into_view_if_needed()
    field.click()
    field.fill("0.05")
    field.press("Enter")
    typed_at = step_of()
    wait(page, lambda: step_of() >= typed_at + 30, "30 steps after the change")
    h = json.loads(page.evaluate(EXECUTE, "import json\nprint(json.dumps({'lr': steer.history['lr'], "
                                          "'status': steer.status}))"))
    assert h["status"] == "running"
    lrs = h["lr"]
    changed = next(i for i, v in enumerate(lrs) if v == pytest.approx(0.05))
    assert lrs[0] == pytest.approx(0.5) and 10 < changed < len(lrs) - 10 and lrs[-1] == pytest.approx(0.05)

    ARTS.mkdir(parents=True, exist_ok=True)
    steer.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTS / "00_quickstart-steer.png"))  # still training, at the rate typed
    page.evaluate(EXECUTE, "steer.stop()")

    # a graph, drawn by bpmagic's extension (Graphviz in WebAssembly: no dot in the browser)
    page.evaluate(ADD_CELL, "xor.graph")
    page.wait_for_selector(".bp-graphviz svg g.node", timeout=DEADLINE * 1000)
    page.locator(".bp-graphviz").last.scroll_into_view_if_needed()  # (cells far out of view are not rendered)
    page.screenshot(path=str(ARTS / "00_quickstart-graph.png"))
    assert page.outside == [], page.outside
    figures(site_mb=round(size / 1e6, 1), pyodide_mb=round(pyodide / 1e6, 1), first_cell_runnable_s=round(first_cell, 1),
            **{"00_quickstart_s": round(elapsed, 1)})


@pytest.mark.slow
@pytest.mark.parametrize("name", LABS[1:] or [pytest.param("04_vanishing_gradients", marks=_NOT_BY_DEFAULT)])
def test_more_labs_offline_in_jupyterlite(browser_page, served, name):
    page = browser_page
    open_lab(page, served, name)
    elapsed, result, _ = run_all_and_check(page, name)
    assert dashboards(page).count() >= 1
    ARTS.mkdir(parents=True, exist_ok=True)
    # (not Playwright's scroll, which waits for the element to be visible: far out of view, JupyterLab skips
    # rendering a cell)
    dashboards(page).last.evaluate("e => e.scrollIntoView({block: 'center'})")
    time.sleep(1)
    page.screenshot(path=str(ARTS / f"{name}.png"))
    assert page.outside == [], page.outside
    figures(**{f"{name}_s": round(elapsed, 1)})
