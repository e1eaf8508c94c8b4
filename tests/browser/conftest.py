"""The browser tests' session: one real Jupyter server (JupyterLab and, when `notebook` is installed, Notebook 7 on
the same server) and one headless Chromium (Playwright); each test writes its notebooks into `lab.root` and opens
them as a person would (tests/support/notebook_ui.py)."""
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
from notebook_ui import CHROMIUM, launch_chromium


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
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield pg
    pg.close()
