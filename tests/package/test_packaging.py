"""The wheel carries everything a user needs without node: the prebuilt JupyterLab extension (as Jupyter shared
data), the graph view's bundle with its wasm Graphviz, the dashboard views and the kernelspec."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_extension_is_enabled_in_this_environment():
    out = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True)
    listing = out.stdout + out.stderr
    line = next((ln for ln in listing.splitlines() if ln.strip().startswith("bpmagic ")), "")
    assert "enabled" in line and "OK" in line, listing


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    # the build outputs exist (./dev built them), so hatch-jupyter-builder skips npm here
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = next(tmp_path.glob("bpmagic-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data = "bpmagic-0.1.0.data/data/share/jupyter/"
    assert f"{data}labextensions/bpmagic/package.json" in names
    assert f"{data}labextensions/bpmagic/install.json" in names
    assert any(n.startswith(f"{data}labextensions/bpmagic/static/remoteEntry.") for n in names)
    assert f"{data}kernels/backprop/kernel.json" in names
    views = ("loss_chart", "layer_bars", "layer_lines", "number_control", "graph_view")  # frontend/src/widgets/, bundled
    assert {f"bpmagic/widgets/{v}.js" for v in views} <= set(names), names
    bundle = zipfile.ZipFile(wheel).read("bpmagic/widgets/graph_view.js")
    assert len(bundle) > 300_000 and b"WebAssembly" in bundle  # Graphviz's wasm travels inside the bundle
    assert {"bpmagic/data/carroll.txt", "bpmagic/data/digits.npz"} <= set(names)  # the labs' data sets
    assert not any("node_modules" in n for n in names)
