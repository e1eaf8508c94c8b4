"""The teaching labs in examples/ run top to bottom on the backprop kernel, as a teacher's Run All would, and
reach their key outcome (the time each took is printed; how fast is a benchmark's business, not a test's). The
check code is appended to the executed copy, never to the lab."""
import re
import time

import nbformat
import pytest
from lab_checks import CHECKS, EXAMPLES, check_cell, read_check
from nbclient import NotebookClient

def test_every_lab_has_a_check():
    assert [p.stem for p in EXAMPLES] == sorted(CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_lab_runs_and_reaches_its_outcome(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs before committing"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    exercise = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    assert "**Exercise.**" in exercise.source, "each lab ends with an exercise (and its graded cells)"
    check = CHECKS[path.stem][1]
    nb.cells.append(nbformat.v4.new_code_cell(check_cell(path.stem)))
    client = NotebookClient(nb, kernel_name="backprop", timeout=300, startup_timeout=180,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    result = read_check(out)
    assert result is not None, out
    print(f"{path.stem}: {elapsed:.1f} s, {result}")
    assert check(result), result
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    the_saved_notebook_reads_well_without_its_kernel(nb)


def the_saved_notebook_reads_well_without_its_kernel(nb):
    """What a reader of the executed lab sees (reopened, on GitHub, exported to HTML): one record per dashboard,
    no line about which backend was chosen, nothing that asks for a running kernel."""
    from nbconvert import HTMLExporter

    dashboards = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%backprop")
                     and "--no-dashboard" not in c.source.splitlines()[0])
    texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
             for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    records = [t for t in texts if t.startswith("bpmagic dashboard of")]
    assert len(records) == dashboards, records
    assert not any("backend 'auto'" in t or "running kernel" in t for t in texts)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert len(re.findall(r'<img alt="bpmagic dashboard of [^>]*data-bpmagic-record=', html)) == dashboards
    assert "running kernel" not in html and "backend 'auto'" not in html
