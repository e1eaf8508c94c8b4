"""The dashboard as a person meets it: a real JupyterLab in headless Chromium (Playwright), notebooks on the
backprop kernel. The gradient bars move while it trains; the learning-rate slider dragged mid-training is the
value used; showing the dashboard never changes a hyperparameter (--lr 0.03 stays 0.03 at every step); Pause shows
"paused at step N" at once in a blocking cell, Step adds one step, Stop ends it and turns the controls off; a
change made in code during a background run holds with the dashboard open and appears on the control; and the
record survives: a reopened notebook and `jupyter nbconvert --to html` show the final state as an image."""
import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from cells import THREE_CLASS_CELL
from notebook_ui import ARTIFACTS, open_notebook, printed, run_all, wait_kernel_idle

DATA = ("import json\nimport numpy as np\nrng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((256, 8)).astype(np.float32)\n"
        "Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)")
MODEL = THREE_CLASS_CELL


def bar_values(page):
    return page.eval_on_selector_all(".bpmagic-dashboard .bpmagic-bar[data-series^='gradient']",
                                     "bars => bars.map(b => parseFloat(b.dataset.value))")


def status_of(dashboard):
    return dashboard.locator(".bpmagic-status").text_content()


def wait_for_status(page, k, prefix, timeout=60_000):
    page.wait_for_function(
        "([k, prefix]) => (document.querySelectorAll('.bpmagic-dashboard')[k]"
        "?.querySelector('.bpmagic-status')?.textContent || '').startsWith(prefix)",
        arg=[k, prefix], timeout=timeout)


def test_slider_dragged_mid_training_is_the_value_used(page, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    lab.write_notebook("dash.ipynb", [
        DATA,
        "%%backprop --steps 100000000 --lr 0.05 --batch-size 32\n" + MODEL,
        "lrs = _bp.history['lr']\n"
        "print('RESULT', json.dumps({'lrs': sorted(set(lrs)), 'first': lrs[0], "
        "'last': lrs[-1], 'status': _bp.status, 'steps': len(lrs), 'changes': _bp.changes()}))",
    ])
    open_notebook(page, lab, "dash.ipynb")
    run_all(page)

    # one gradient bar per layer, moving while it trains
    page.wait_for_function("() => document.querySelectorAll('.bpmagic-dashboard .bpmagic-layer-row').length >= 2",
                           timeout=60_000)
    assert len(bar_values(page)) == 2  # layers "1" and "2"
    first = bar_values(page)
    page.wait_for_function("(first) => JSON.stringify([...document.querySelectorAll("
                           "\".bpmagic-dashboard .bpmagic-bar[data-series^='gradient']\")].map("
                           "b => parseFloat(b.dataset.value))) !== JSON.stringify(first)", arg=first, timeout=60_000)

    # the exact field shows the value in use, in plain decimals
    field = page.locator(".bpmagic-lr .bpmagic-control-value").first
    assert field.input_value() == "0.05"
    # drag the learning-rate slider to the left, mid-training
    slider = page.locator(".bpmagic-lr input[type=range]").first
    box = slider.bounding_box()
    fraction = page.evaluate("(s) => (s.value - s.min) / (s.max - s.min)", slider.element_handle())
    x = box["x"] + 8 + fraction * (box["width"] - 16)
    page.mouse.move(x, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(x - 60, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("() => parseFloat(document.querySelector('.bpmagic-lr .bpmagic-control-value').value)"
                           " < 0.05", timeout=60_000)
    shown = float(field.input_value())
    # train a while with the dragged rate: 300 more steps
    target = int(re.search(r"step (\d+)/", status_of(page.locator(".bpmagic-dashboard").first)).group(1)) + 300
    page.wait_for_function("(t) => parseInt(document.querySelector('.bpmagic-status').textContent"
                           ".match(/step (\\d+)\\//)[1]) >= t", arg=target, timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.locator(".bpmagic-stop").first.click()

    result = json.loads(printed(page, "RESULT"))
    assert result["status"] == "stopped"
    assert result["first"] == 0.05
    assert result["last"] == shown  # the value the field shows is exactly the one used
    assert len(result["lrs"]) >= 2 and result["steps"] > 100
    assert all(name == "lr" for _, name, _, _ in result["changes"]) and result["changes"][-1][3] == shown


def test_exact_values_pause_step_and_stop_in_a_blocking_cell(page, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    lab.write_notebook("controls.ipynb", [
        DATA,
        "%%backprop --steps 3000 --lr 0.03 --optimizer momentum --momentum 0.95 --batch-size 32 --name exact\n"
        + MODEL,
        "print('EXACT', json.dumps({'lr': sorted(set(exact.history['lr'])), "
        "'momentum': sorted(set(exact.history['momentum'])), 'steps': exact.steps_done, 'status': exact.status}))",
        "%%backprop --steps 100000000 --lr 0.5 --batch-size 32 --name long --reset\n" + MODEL,
        "print('LONG', json.dumps({'lr': sorted(set(long.history['lr'])), 'steps': long.steps_done, "
        "'status': long.status, 'outcome': long.outcome}))",
    ])
    open_notebook(page, lab, "controls.ipynb")
    run_all(page)

    # showing the dashboard changed nothing: every step at exactly 0.03 (a log slider would have sent 0.0316)
    exact = json.loads(printed(page, "EXACT"))
    assert exact == {"lr": [0.03], "momentum": [0.95], "steps": 3000, "status": "finished"}
    first = page.locator(".bpmagic-dashboard").nth(0)
    assert first.locator(".bpmagic-lr .bpmagic-control-value").input_value() == "0.03"
    assert first.locator(".bpmagic-momentum .bpmagic-control-value").input_value() == "0.95"

    # the blocking cell: Pause is shown at once, Step adds exactly one step, Stop ends it
    wait_for_status(page, 1, "training", timeout=120_000)
    board = page.locator(".bpmagic-dashboard").nth(1)
    clicked = time.monotonic()
    board.locator(".bpmagic-pause").click()
    wait_for_status(page, 1, "paused at step")
    shown_after = time.monotonic() - clicked
    first_shown = int(re.match(r"paused at step (\d+)", status_of(board)).group(1))
    assert board.locator(".bpmagic-pause").inner_text().strip() == "Resume"
    assert board.locator(".bpmagic-step").is_enabled()
    page.wait_for_timeout(500)  # paused means no step runs meanwhile (nothing to wait for: time passing is the test)
    paused_at = int(re.match(r"paused at step (\d+)", status_of(board)).group(1))
    assert paused_at - first_shown in (0, 1)  # at most the step that was running when Pause came
    board.locator(".bpmagic-step").click()
    wait_for_status(page, 1, f"paused at step {paused_at + 1} ")
    page.screenshot(path=str(ARTIFACTS / "dashboard_paused.png"), full_page=True)
    board.locator(".bpmagic-stop").click()
    wait_for_status(page, 1, "stopped at step")
    long = json.loads(printed(page, "LONG"))
    assert long["lr"] == [0.5] and long["status"] == "stopped" and long["steps"] == paused_at + 1
    for button in ("pause", "step", "stop"):
        assert board.locator(f".bpmagic-{button}").is_disabled()
    assert all(i.is_disabled() for i in board.locator(".bpmagic-control input").all())
    message = board.locator(".bpmagic-controls-message").inner_text()
    assert f"stopped at step {paused_at + 1}" in message and "finished" not in message
    board.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard_stopped.png"))
    print(f"'paused at step N' shown {shown_after:.2f} s after the click")

    # the record survives: saved, then reopened with a fresh kernel, each dashboard's final state is an image
    wait_kernel_idle(page, 180, "the notebook did not finish")
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=60_000)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    open_notebook(page, lab, "controls.ipynb")  # the page reloads: the old views and their models are gone
    records = page.locator("img[data-bpmagic-record]")
    records.first.wait_for(timeout=60_000)
    assert records.count() == 2
    # the dead widget outputs above the records are hidden: the reader sees the record alone
    for text in ("Error displaying widget", "Loading widget"):
        assert not page.get_by_text(text).filter(visible=True).count(), f"{text!r} shows in the reopened notebook"
    for i, outcome in enumerate(["finished all 3000 steps", f"stopped at step {paused_at + 1}"]):
        img = records.nth(i)
        img.scroll_into_view_if_needed()
        assert img.is_visible() and img.evaluate("i => i.complete && i.naturalWidth > 800")
        assert outcome in img.get_attribute("alt") or outcome in svg_of(img.get_attribute("src"))
    records.nth(1).screenshot(path=str(ARTIFACTS / "dashboard_record_reopened.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard_reopened.png"))


def svg_of(src):
    return base64.b64decode(src.split(",", 1)[1]).decode()


def test_code_change_holds_during_a_background_run(page, lab):
    lab.write_notebook("background.ipynb", [
        DATA,
        "%%backprop --steps 100000000 --lr 0.5 --batch-size 32 --background --name bg\n" + MODEL,
        "bg.wait(until_step=300)\nbefore_set = bg.steps_done\nbg.optimizer.lr = 0.1\nchanged_at = bg.steps_done\n"
        "bg.wait(until_step=changed_at + 3000)",
        "bg.stop().wait()\nh = bg.history['lr']\n"
        "print('RESULT', json.dumps({'changes': bg.changes(), 'steps': bg.steps_done, 'changed_at': changed_at, "
        "'before_set': before_set, "
        "'after': sorted(set(h[h.index(0.1):])), 'before': sorted(set(h[:h.index(0.1)]))}))",
    ])
    open_notebook(page, lab, "background.ipynb")
    run_all(page)
    result = json.loads(printed(page, "RESULT"))
    # the dashboard's record, in the cell that started the run, shows how it ended, though that cell had finished
    # long before: the live view wrote the final record into the notebook, and saving keeps it
    wait_kernel_idle(page, 180, "the notebook did not finish")
    deadline = time.monotonic() + 120
    while True:
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        saved = nbformat.read(lab.root / "background.ipynb", as_version=4)
        record = [o for o in saved.cells[1].outputs if "data-bpmagic-record" in str(o.get("data", {}))]
        if record and f"stopped at step {result['steps']}" in record[0]["data"].get("image/svg+xml", ""):
            break
        assert time.monotonic() < deadline, f"the background run's record is not its final state: {record}"
        time.sleep(1.0)
    # one change, the code's, at the step it took effect; the open dashboard sent nothing of its own
    assert len(result["changes"]) == 1
    step, name, old, new = result["changes"][0]
    # steps_done read just before and just after the change: the step in flight when it was set keeps the value
    # it started with, the one after uses the new value
    assert (name, old, new) == ("lr", 0.5, 0.1) and result["before_set"] < step <= result["changed_at"] + 2
    assert result["before"] == [0.5] and result["after"] == [0.1]
    assert result["steps"] > result["changed_at"] + 3000
    # and the change made in code is what the control shows
    assert page.locator(".bpmagic-lr .bpmagic-control-value").first.input_value() == "0.1"


@pytest.mark.slow
def test_nbconvert_html_of_an_executed_lab_shows_the_final_dashboards_and_graph(page, lab, tmp_path):
    """Lab 03 (three runs: XOR, the encoder, the exercise's XOR with two hidden units; and the encoder's gradient
    flow) executed by nbclient and exported by nbconvert: the HTML shows each dashboard's final state and the graph
    as images, and a browser opens them offline."""
    from nbclient import NotebookClient

    lab_path = Path(__file__).resolve().parents[2] / "examples" / "03_xor_and_encoder.ipynb"
    nb = nbformat.read(lab_path, as_version=4)
    NotebookClient(nb, kernel_name="backprop", timeout=300, startup_timeout=180,
                   resources={"metadata": {"path": str(lab_path.parent)}}).execute()
    executed = tmp_path / "xor_and_encoder.ipynb"
    nbformat.write(nb, executed)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(executed)], check=True,
                   capture_output=True)
    html = executed.with_suffix(".html").read_text()
    assert "Box(children" not in html and "object at 0x" not in html
    records = [tag for tag in re.findall(r"<img [^>]*>", html) if "data-bpmagic-record=" in tag]
    dashboards = [svg_of(re.search(r'src="([^"]+)"', tag).group(1)) for tag in records]
    assert len(dashboards) == 3 and all("finished all" in d for d in dashboards), [d[-300:] for d in dashboards]
    images = [base64.b64decode(m) for m in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)]
    assert any(b'class="node"' in svg for svg in images), "the encoder's graph is not in the HTML"
    # and a browser shows them (offline: the live widgets cannot load, the records can)
    page.goto(executed.with_suffix(".html").as_uri())
    imgs = page.locator("img[data-bpmagic-record]")
    for i in range(imgs.count()):
        img = imgs.nth(i)
        img.scroll_into_view_if_needed()
        assert img.is_visible() and img.evaluate("i => i.complete && i.naturalWidth > 800")
    imgs.first.screenshot(path=str(ARTIFACTS / "dashboard_nbconvert.png"))
    page.screenshot(path=str(ARTIFACTS / "lab03_nbconvert.png"), full_page=True)


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_showing_the_dashboard_changes_no_value_in_either_frontend(page, lab, frontend):
    """--lr 0.03 and --momentum 0.95 with the dashboard shown: every step at exactly those values (a log slider
    snapped to its grid would have sent 0.0316 back), in JupyterLab and in Notebook 7."""
    name = f"shown-{frontend}.ipynb"
    lab.write_notebook(name, [
        DATA,
        "%%backprop --steps 1500 --lr 0.03 --optimizer momentum --momentum 0.95 --batch-size 32 --name shown\n"
        + MODEL,
        "print('SHOWN', json.dumps({'lr': sorted(set(shown.history['lr'])), "
        "'momentum': sorted(set(shown.history['momentum'])), 'steps': shown.steps_done, 'changes': shown.changes()}))",
    ])
    open_notebook(page, lab, name, frontend=frontend)
    run_all(page)
    assert json.loads(printed(page, "SHOWN")) == {"lr": [0.03], "momentum": [0.95], "steps": 1500, "changes": []}
    board = page.locator(".bpmagic-dashboard").first
    assert board.locator(".bpmagic-lr .bpmagic-control-value").input_value() == "0.03"
    assert board.locator(".bpmagic-momentum .bpmagic-control-value").input_value() == "0.95"
