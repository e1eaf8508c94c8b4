"""A class on a real JupyterHub (tests/support/hub.py: configurable-http-proxy, DummyAuthenticator, one local single-user
JupyterLab per student under /user/<name>/), met in headless Chromium as two students meet it: each logs in, opens
lab 05 in their own server, runs it with Run All (its own outcome check), sees the dashboards and a graph drawn by
bpmagic's extension — whose scripts and wasm must load under the /user/<name>/ prefix: no asset request fails — and
drags the learning-rate slider of the run the lab leaves training. One student's Stop, interrupt, runaway cell and
NaN touch nobody else's run. The students' servers run in an environment made as the classroom recipe makes it
(docs/classroom/install-singleuser.sh with bpmagic's wheel), so the recipe is tested here."""
import json
import re
import time
from pathlib import Path

import pytest
from notebook_ui import ARTIFACTS, CHROMIUM, kernel_idle, launch_chromium, open_notebook, run_all
from hub import PASSWORD, PROXY, Hub, copy_lab, recipe_environment
from lab_checks import CHECKS, check_cell, checked_result

pytestmark = pytest.mark.slow
LAB = Path(__file__).resolve().parents[2] / "examples" / "05_learning_rate_live.ipynb"
# the extension's chunks that carry the wasm Graphviz (loaded on demand, from a URL the prefix must be part of)
STATIC = Path(__file__).resolve().parents[2] / "bpmagic" / "labextension" / "static"
GRAPHVIZ_CHUNKS = {p.name for p in STATIC.glob("*.js") if not p.name.startswith("remoteEntry")
                   and b"Graphviz" in p.read_bytes()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (./dev test installs Debian's chromium)")
    pytest.importorskip("jupyterhub", reason="jupyterhub is a test dependency (pip install -e '.[test]')")
    if not PROXY.exists():
        pytest.skip(f"configurable-http-proxy is missing at {PROXY} (./dev test installs it from npm)")
    students_env = recipe_environment(tmp_path_factory.mktemp("students-env"))  # as the classroom recipe makes it
    with Hub(tmp_path_factory.mktemp("hub"), singleuser_bin=students_env) as h:
        yield h


@pytest.fixture(scope="module")
def browser(hub):
    """Headless Chromium for the students (each gets a context of their own: their own cookies)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


class Student:
    """One student's browser (cookies of their own) on the hub; `url` is their server, /user/<name>."""

    def __init__(self, browser, hub, name):
        self.name, self.hub = name, hub
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.url = f"{hub.url}/user/{name}"
        # requests to the student's server that failed (an asset URL that ignored the prefix would 404 there, or
        # go to the hub's own pages, which the proxy routes elsewhere), and the extension's assets it loaded
        self.failed, self.assets = [], []
        self.page.on("response", self._response)
        self.page.on("requestfailed", lambda r: self.failed.append(f"failed {r.url}") if self._ours(r.url) else None)

    def _ours(self, url):
        return not url.startswith(f"{self.hub.url}/hub/")  # the hub's pages (login, spawn progress) are not ours

    def _response(self, response):
        if response.status >= 400 and self._ours(response.url):
            self.failed.append(f"{response.status} {response.url}")
        if "/extensions/bpmagic/static/" in response.url:
            self.assets.append(response.url)

    def log_in(self):
        page = self.page
        page.goto(f"{self.hub.url}/hub/login")
        page.fill("#username_input", self.name)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        # the hub spawns the server, then sends the student to it
        page.wait_for_url(re.compile(rf"/user/{self.name}/lab"), timeout=300_000)

    def run(self, code, timeout=120):
        """Run `code` in the open notebook's kernel, as the page's own kernel connection does; returns stdout."""
        return self.page.evaluate("""async ([code, timeout]) => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const future = kernel.requestExecute({code, store_history: false});
            let out = '';
            future.onIOPub = (msg) => {
                if (msg.header.msg_type === 'stream') out += msg.content.text;
                if (msg.header.msg_type === 'error') out += msg.content.ename + ': ' + msg.content.evalue;
            };
            await Promise.race([future.done, new Promise((_, no) => setTimeout(() => no(new Error('timed out')),
                                                                             timeout * 1000))]);
            return out;
        }""", [code, timeout])

    def status(self, k=-1):
        return self.page.locator(".bpmagic-dashboard").nth(k).locator(".bpmagic-status").text_content()

    def steps(self, k=-1):
        return int(re.search(r"step (\d+)", self.status(k)).group(1))

    def close(self):
        self.context.close()


def wait_until(condition, timeout, why):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, why()
        time.sleep(0.5)


def drag_lr_down(page, k=-1):
    """Drag the learning-rate slider of dashboard k to the left, as a hand does."""
    slider = page.locator(".bpmagic-dashboard").nth(k).locator(".bpmagic-lr input[type=range]")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    fraction = page.evaluate("(s) => (s.value - s.min) / (s.max - s.min)", slider.element_handle())
    x, y = box["x"] + 8 + fraction * (box["width"] - 16), box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 80, y, steps=8)
    page.mouse.up()


def test_two_students_on_a_hub(browser, hub):
    check = CHECKS[LAB.stem][1]
    students = [Student(browser, hub, name) for name in ("ada", "grace")]
    try:
        for s in students:
            s.log_in()
            copy_lab(hub, s.name, LAB, extra_cells=[  # the student draws the network they steer; the lab's check
                "bp.viz.draw(play)", check_cell(LAB.stem)])
        # both at once: each student's Run All in their own server
        for s in students:
            open_notebook(s.page, s, LAB.name)
            run_all(s.page)
        for s in students:
            wait_until(lambda: (r := checked_result(s.page)) is not None and kernel_idle(s.page), 600,
                       lambda: f"{s.name}'s lab did not finish")
            result = checked_result(s.page)
            print(f"{s.name}: {result}")
            assert check(result), result
            # the graph, drawn in the browser by the extension's wasm Graphviz, under /user/<name>/
            s.page.locator(".bp-figure-viewport > svg g.node").first.wait_for(timeout=120_000)
            # the kernel is idle before the page has drawn every widget: wait for both dashboards, play's training
            wait_until(lambda: s.page.locator(".bpmagic-dashboard").count() == 2 and s.status().startswith("training"),
                       120, lambda: f"{s.name}'s dashboards: {s.page.locator('.bpmagic-status').all_text_contents()}")
        ARTIFACTS.mkdir(exist_ok=True)
        for s in students:  # the servers run the classroom recipe's environment, with the teacher's tools off
            assert "students-env" in s.run("import bpmagic, nbgrader; print(bpmagic.__file__)")
            disabled = s.page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data')"
                                       ".textContent).disabledExtensions")
            assert {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:course-list"} <= set(disabled), disabled
            assert s.page.locator("text=Create Assignment").count() == 0  # its side panel is gone

        # ada drags her slider; only her run's learning rate changes
        ada, grace = students
        field = ada.page.locator(".bpmagic-dashboard").last.locator(".bpmagic-lr .bpmagic-control-value")
        drag_lr_down(ada.page)
        wait_until(lambda: float(field.input_value()) < 0.1, 60, lambda: f"the slider shows {field.input_value()}")
        dragged = float(field.input_value())
        wait_until(lambda: float(ada.run("print(play.optimizer.lr)")) == dragged, 60, lambda: "not applied")
        assert float(grace.run("print(play.optimizer.lr)")) == 0.1
        ada.page.screenshot(path=str(ARTIFACTS / "hub-ada.png"))

        # ada's Stop ends her run; grace's keeps training
        grace_before = grace.steps()
        ada.page.locator(".bpmagic-dashboard").last.locator(".bpmagic-stop").click()
        wait_until(lambda: ada.status().startswith("stopped"), 60, lambda: ada.status())
        wait_until(lambda: grace.steps() > grace_before + 100, 120, lambda: grace.status())
        assert grace.status().startswith("training")
        ada_result = json.loads(ada.run("import json; print(json.dumps({'status': play.status, "
                                        "'changes': play.changes()}))"))
        assert ada_result["status"] == "stopped"
        changes = ada_result["changes"]  # the values the slider passed through while dragged, then where it stopped
        assert {c[1] for c in changes} == {"lr"} and changes[0][2] == 0.1 and changes[-1][3] == dragged, changes

        # ada's runaway cell and her interrupt leave grace's run alone
        ada.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                          ".requestExecute({code: 'while True: pass'})")
        time.sleep(2)
        grace_before = grace.steps()
        wait_until(lambda: grace.steps() > grace_before + 100, 120, lambda: grace.status())
        ada.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.interrupt()")
        wait_until(lambda: kernel_idle(ada.page), 120, lambda: "ada's kernel did not come back from the interrupt")
        assert ada.run("print(play.status, play.steps_done > 0)").split() == ["stopped", "True"]
        assert grace.status().startswith("training")

        # ada's NaN ends her new run with a message; grace's run trains on
        grace_before = grace.steps()
        said = ada.run("%%backprop --steps 50 --no-dashboard --name broken\nW: Param = ones(2, 1)\n"
                       "x: Input = np.ones((8, 2), np.float32)\ny: Target = np.zeros((8, 1), np.float32)\n"
                       "loss: Loss = mse(sqrt(x @ W - 5), y)\n")
        assert "produced nan" in said, said
        assert ada.run("print(broken.status)").strip() == "failed"
        wait_until(lambda: grace.steps() > grace_before + 100, 120, lambda: grace.status())
        assert grace.status().startswith("training")
        grace.page.locator(".bpmagic-dashboard").last.locator(".bpmagic-stop").click()
        wait_until(lambda: grace.status().startswith("stopped"), 60, lambda: grace.status())
        assert json.loads(grace.run("import json; print(json.dumps(play.changes()))")) == []
        grace.page.screenshot(path=str(ARTIFACTS / "hub-grace.png"))

        for s in students:
            assert not s.failed, f"requests that failed for {s.name}: {s.failed}"
            prefix = f"{hub.url}/user/{s.name}/lab/extensions/bpmagic/static/"
            assert s.assets and all(url.startswith(prefix) for url in s.assets), s.assets
            loaded = {url.split("?")[0].rsplit("/", 1)[-1] for url in s.assets}
            assert GRAPHVIZ_CHUNKS and GRAPHVIZ_CHUNKS <= loaded, (GRAPHVIZ_CHUNKS, loaded)  # the wasm came too
    finally:
        for s in students:
            try:
                s.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
            except Exception:
                pass
            s.close()
