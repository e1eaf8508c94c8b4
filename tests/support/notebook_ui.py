"""A notebook as a person meets it in headless Chromium (Playwright): the browser, opening a notebook, Run All,
a cell appended and run, the kernel's state as the page reports it. Used by the browser tests (their fixtures are in
tests/browser/conftest.py) and the hub tests."""
import json
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's (./dev test installs it): `playwright install` cannot download here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def launch_chromium(playwright):
    """Headless Chromium, or skip (with why) on a machine without it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (./dev test installs Debian's chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


KERNEL_IDLE = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def kernel_idle(page):
    return page.evaluate(KERNEL_IDLE)


def wait_kernel_idle(page, timeout=180, why="the kernel did not become idle"):
    """Until the current notebook's kernel is connected and idle (the page reports it), deadline `timeout` s."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(KERNEL_IDLE, timeout=timeout * 1000, polling=250)
    except PlaywrightTimeout:
        raise AssertionError(why) from None


def open_notebook(page, lab, name, timeout=180, frontend="lab"):
    """Open lab.root/name in JupyterLab (frontend "lab") or Notebook 7 ("notebook") and wait until its kernel is
    connected and idle."""
    if frontend == "notebook":
        pytest.importorskip("notebook", reason="Notebook 7 is a test dependency (pip install -e '.[test]')")
        page.goto(f"{lab.url}/notebooks/{name}")
    else:
        # a workspace of its own, reset: otherwise JupyterLab restores the notebooks an earlier test had open
        page.goto(f"{lab.url}/lab/workspaces/{Path(name).stem}/tree/{name}?reset")
    page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
    wait_kernel_idle(page, timeout, f"the kernel of {name} did not become idle")


def run_all(page):
    # not awaited: run-all resolves only when every cell has finished
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def printed(page, tag, timeout=180, last=False):
    """The text a cell printed after `tag ` (the first such output on the page, or the last), waiting for it."""
    outputs = page.locator(".jp-OutputArea-output", has_text=re.compile(f"{tag} "))
    out = outputs.last if last else outputs.first
    out.wait_for(state="attached", timeout=timeout * 1000)  # the kernel computes first
    return re.sub(rf"^.*?{tag} ", "", out.text_content(), flags=re.S).strip()


def run_cell(page, code, tag="RESULT", timeout=120):
    """Append a cell to the open notebook, run it, and return the JSON it printed after `tag `."""
    page.evaluate("""(code) => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        nb.activeCellIndex = nb.widgets.length - 1;
        window.jupyterapp.commands.execute('notebook:insert-cell-below');
        nb.activeCell.model.sharedModel.setSource(code);
        window.jupyterapp.commands.execute('notebook:run-cell');
    }""", code)
    return json.loads(printed(page, tag, timeout, last=True))


CELL_OUTPUTS = """() => {
    const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    const out = [];
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        out.push({count: cell.executionCount, outputs: cell.outputs.toJSON()});
    }
    return out;
}"""


def cell_outputs(page):
    """The open notebook's code cells as the page holds them: [{count, outputs (nbformat JSON)}]."""
    return page.evaluate(CELL_OUTPUTS)


def text_of(output, key="text"):
    """A stream output's text, or (given an output's data) its text/plain."""
    text = output.get(key if key in output else "text/plain", "")
    return "".join(text) if isinstance(text, list) else text
