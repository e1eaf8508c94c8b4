"""Every teaching lab as a teacher meets it: opened in a real JupyterLab and in Notebook 7 (headless Chromium, one
server for both), Run All, and the lab's own outcome check (the same as tests/classroom/test_examples.py's) read from the
cell outputs in the page. In a browser the dashboards' views render and talk back to the kernel, which nbclient
cannot show: this is where a control that changed a value by itself would fail a lab. Also checked on the page:
no error outputs, no widget that failed to display, every ended run's controls off and its record hidden while
the live view shows; a screenshot of each lab is kept in test-artifacts/labs/."""
import time

import nbformat
import pytest
from notebook_ui import ARTIFACTS, kernel_idle, open_notebook, run_all
from notebook_ui import cell_outputs, text_of
from lab_checks import CHECKS, EXAMPLES, check_cell, checked_result

# runs that a lab leaves training on purpose (labs 00 and 05: a paced run to steer by hand)
STILL_TRAINING = {"00_quickstart": 1, "05_learning_rate_live": 1}


def step_through_hides_the_answers(page):
    """Lab 01: before the first Step, the step-through shows no input's gradient, and the printed steps below it
    (the answers, to check with a pencil afterwards) start folded."""
    status = page.locator(".bp-graph-view .bp-graph-status").first
    status.wait_for(state="attached", timeout=30_000)
    text = status.text_content()
    assert "dL/da = ?" in text and "dL/db = ?" in text, text
    answers = page.get_by_text("gradients: dL/da")
    assert answers.count() >= 1 and not answers.filter(visible=True).count(), "the printed answers are not folded"


SHOWN = """d => { const r = d.getBoundingClientRect(), x = r.left + r.width / 2;
    const y = (Math.max(r.top, 0) + Math.min(r.bottom, innerHeight)) / 2;  // the middle of its part on the screen
    return r.bottom > 0 && r.top < innerHeight && d.contains(document.elementFromPoint(x, y)); }"""

DEEP_DASHBOARD = """d => {
    const bars = d.querySelector('.bpmagic-bars'), rows = bars.querySelector('.bpmagic-bars-scroll');
    const strip = bars.querySelector('canvas'), box = strip.getBoundingClientRect();
    const ctx = strip.getContext('2d'), ratio = strip.width / box.width;
    const pixel = (y) => [...ctx.getImageData(Math.round(box.width / 2 * ratio), Math.round(y * ratio), 1, 1).data]
        .slice(0, 3).map(c => c.toString(16).padStart(2, '0')).join('');
    return {rows: bars.querySelectorAll('.bpmagic-layer-row').length, shown: rows && rows.clientHeight,
            scrolled: rows && rows.scrollHeight, strip: box.height, first: pixel(1),
            names: [...bars.querySelectorAll('.bpmagic-strip-rows div')].map(n => n.textContent),
            height: d.getBoundingClientRect().height};
}"""


def deep_net_dashboard_stays_a_screen_tall(page):
    """Lab 09 (52 layers): the bars scroll past 12 layers, the strip's rows shrink to fit (names on every few,
    the output layer's among them), and a layer whose gradient has vanished to 0 is the strip's darkest band, not
    black (not a number): the dashboard is about a screen tall, with the strip the lab's text points to on it."""
    board = page.locator(".bpmagic-dashboard").first
    board.scroll_into_view_if_needed()
    d = board.evaluate(DEEP_DASHBOARD)
    assert d["rows"] == 52 and d["shown"] and d["scrolled"] > 2 * d["shown"], d
    assert 52 * 3 <= d["strip"] <= 300, d
    assert d["names"][-1] == "W_out" and 8 <= len(d["names"]) < 52, d
    assert d["first"] == "08306b", d  # W_in's gradient in the plain net is 0: the lowest band's colour
    assert d["height"] < 1500, d
    board.screenshot(path=str(ARTIFACTS / "labs" / "09_depth_that_trains-first-dashboard.png"))


# what a lab shows on the page besides its outcome check
PAGE_CHECKS = {"01_reverse_accumulation": step_through_hides_the_answers,
               "09_depth_that_trains": deep_net_dashboard_stays_a_screen_tall}

DASHBOARDS = """() => [...document.querySelectorAll('.bpmagic-dashboard')].map(d => ({
    status: (d.querySelector('.bpmagic-status') || {}).textContent || '',
    pause: d.querySelector('.bpmagic-pause').disabled, step: d.querySelector('.bpmagic-step').disabled,
    stop: d.querySelector('.bpmagic-stop').disabled,
    controls: [...d.querySelectorAll('.bpmagic-control input')].map(i => i.disabled),
}))"""


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["lab", "notebook"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_lab_with_run_all_in_the_browser(page, lab, path, frontend):
    (ARTIFACTS / "labs").mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    check = CHECKS[path.stem][1]
    nb.cells.append(nbformat.v4.new_code_cell(check_cell(path.stem)))
    name = f"{path.stem}-{frontend}.ipynb"
    nbformat.write(nb, lab.root / name)
    open_notebook(page, lab, name, frontend=frontend)
    try:
        started = time.monotonic()
        run_all(page)
        deadline = started + 300
        while (result := checked_result(page)) is None or not kernel_idle(page):
            assert time.monotonic() < deadline, f"{path.stem} did not finish in {frontend}"
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        print(f"{path.stem} in {frontend}: {elapsed:.0f} s, {result}")
        assert check(result), result

        cells = cell_outputs(page)
        errors = [f"{o['ename']}: {o['evalue']}" for c in cells for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors
        assert all(c["count"] is not None for c in cells), "Run All left cells unexecuted"
        body = page.inner_text("body")
        assert "Error displaying widget" not in body and "Loading widget" not in body

        # every dashboard shows its run's end; those of ended runs have their controls off
        # (the kernel is idle before the browser has applied the runs' last updates: wait for the page to show them)
        def dashboards_now():
            ds = page.evaluate(DASHBOARDS)
            return ds, [d for d in ds if not d["status"].startswith("training")]

        settle = time.monotonic() + 120
        dashboards, ended = dashboards_now()
        while (len(dashboards) - len(ended) != STILL_TRAINING.get(path.stem, 0)
               or not all(d["pause"] and d["step"] and d["stop"] and all(d["controls"]) for d in ended)):
            if time.monotonic() > settle:
                break  # the assertions below say what is wrong
            time.sleep(0.5)
            dashboards, ended = dashboards_now()
        records = [text_of(o.get("data", {})) for c in cells for o in c["outputs"]]
        assert len(dashboards) == sum(1 for r in records if r.startswith("bpmagic dashboard of")), records
        assert not any("running kernel" in r for r in records), records  # nothing asks for a kernel
        assert len(dashboards) - len(ended) == STILL_TRAINING.get(path.stem, 0), dashboards
        for d in ended:
            assert d["pause"] and d["step"] and d["stop"] and all(d["controls"]), d
            assert d["status"].split()[0] in ("finished", "stopped"), d
        # their static records are in the outputs but not shown twice while the live views are up
        records = page.locator("img[data-bpmagic-record]")
        assert all(not records.nth(i).is_visible() for i in range(records.count()))

        if path.stem in PAGE_CHECKS:
            PAGE_CHECKS[path.stem](page)

        last = page.locator(".bpmagic-dashboard").last
        if dashboards:
            last.scroll_into_view_if_needed()
            # Notebook 7 draws the cells it scrolled to a moment later (a far jump, as after lab 09's check of its
            # first dashboard, showed a blank page): the screenshot waits until the dashboard is what is there
            page.wait_for_function(SHOWN, arg=last.element_handle(), timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "labs" / f"{path.stem}-{frontend}.png"))
    finally:
        # a lab may leave a run training (lab 05): end its kernel so later tests get the CPU
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
