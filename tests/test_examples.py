"""The notebooks in examples/ run top to bottom on the backprop kernel, as a teacher's Run All would."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))


def test_examples_exist():
    assert EXAMPLES, "examples/ has no notebooks"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs before committing"
    NotebookClient(nb, kernel_name="backprop", timeout=120, resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    if path.stem == "00_quickstart":
        assert "finished" in text and "predictions: [0. 1. 1. 0.]" in text
        assert "gradcheck passed" in str(nb.cells[-2].outputs)
