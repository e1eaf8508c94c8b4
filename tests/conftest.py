"""Shared fixtures: IPython's shell with bpmagic loaded; for the browser tests, one real Jupyter server (JupyterLab
and, when `notebook` is installed, Notebook 7 on the same server) and one headless Chromium (Playwright) for the
whole session; each test writes its notebooks into `lab.root` and opens them as a person would."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def ip():
    """IPython's shell (the one a notebook's kernel runs) with bpmagic loaded: `ip.run_cell("%%backprop ...")`."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "bpmagic")
    return shell
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    root: Path

    def write_notebook(self, name, cells, kernel="backprop"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, self.root / name)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (./dev test installs Debian's chromium)")
    pytest.importorskip("playwright", reason="playwright is a test dependency (pip install -e '.[test]')")
    pytest.importorskip("jupyterlab", reason="jupyterlab is a test dependency (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("lab")
    port = free_port()
    # no "Would you like to get notified about official Jupyter news?" toast over the screenshots
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1", JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"))
    log = open(root / "server.log", "wb")  # a file, not a pipe: a full pipe would block the server
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", "--allow-root", "--LabApp.expose_app_in_browser=True",
         "--JupyterNotebookApp.expose_app_in_browser=True",
         f"--ServerApp.root_dir={root}", "--ServerApp.disable_check_xsrf=True"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a busy 2-core machine starts a server slowly
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start: " + (root / "server.log").read_text()[-2000:])
    yield Lab(url, root)
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def browser(lab):
    # per module: Playwright's sync API runs an event loop in this thread while it is open, which would break
    # later tests that start their own (asyncio.run)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield pg
    pg.close()


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


# -- running on several workers (pytest-xdist: `./dev test` runs -n 2) ----------------------------------------------
# Tests that share one expensive thing run on one worker, one after another: the browser tests share one Jupyter
# server and one Chromium (the session fixtures above); the tests that build cached environments (tests/venvs.py)
# must not build the same one twice at once; the hub tests run one JupyterHub with its proxy; test_plugins installs
# and removes the test plugin, as a browser test does, so it runs beside them, never at once. Every other test is a
# unit of its own. (xdist's own --dist loadgroup does this with marks, but it renames test ids in a way pytest 9
# no longer reads, so the groups are given to its scope scheduler instead.)
_GROUPS = {"test_browser_": "browser", "test_cuda_compile": "envs", "test_cublas_binding": "envs",
           "test_ipykernel_versions": "envs", "test_hub": "hub", "test_plugins": "browser"}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Grouped(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            file = nodeid.split("::")[0].rpartition("/")[2]
            return next((group for prefix, group in _GROUPS.items() if file.startswith(prefix)), nodeid)

    return Grouped(config, log)


# -- figures a test reports for CI's log (tests/cuda_check.py report): carried with the test's report, so a worker's
# figures reach the summary printed by the process that runs the session
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    figures = item.config.__dict__.pop("bpmagic_figures", [])
    outcome.get_result().user_properties.extend(("bpmagic figure", line) for line in figures)


def pytest_runtest_logreport(report):
    lines = [value for key, value in report.user_properties if key == "bpmagic figure"]
    _FIGURES.extend(line for line in lines if line not in _FIGURES)


_FIGURES: list = []


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures the tests measured")
        for line in _FIGURES:
            terminalreporter.write_line(line)
