"""frontend/ is one npm package whose build the wheel ships, and the browser views draw with what Python sends them:
the colours, sizes and axes the static image is drawn with (dashboard/theme.py, scales.py; viz/dot.py)."""
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bpmagic.assets import module
from bpmagic.dashboard.static import bars_svg, loss_svg
from bpmagic.dashboard.theme import THEME
from bpmagic.dashboard.views import LayerBarsView, LossView, f32
from bpmagic.errors import BackpropError

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ("loss_chart.js", "layer_bars.js", "layer_lines.js", "number_control.js", "graph_view.js")


def test_every_view_is_built_into_the_package():
    for name in VIEWS:
        path = module(name)
        assert path and path.parent == ROOT / "bpmagic" / "widgets", name
        # a bundle: the shared modules are inside it, nothing is left to import at run time
        assert "from\"../" not in path.read_text() and "from \"../" not in path.read_text(), name


def test_a_view_made_without_its_build_says_how_to_build_it():
    class Unbuilt(LossView):
        _esm = ""

    with pytest.raises(BackpropError, match=r"npm ci && npm run build` in frontend/"):
        Unbuilt()


def test_the_static_loss_chart_draws_the_axes_and_colours_the_view_is_sent():
    view = LossView()
    with view.hold_sync():
        view.steps, view.loss = f32([0, 10, 20, 30]), f32([2.0, 1.1, 0.6, 0.31])
        view.val_steps, view.val_loss = f32([30]), f32([0.45])
        view.previous_steps, view.previous_loss = f32([0, 10]), f32([2.2, 1.9])
        view.clipped_steps = f32([10])
    axes = view.axes
    assert axes["x"] == [0.0, 30.0] and len(axes["ticks"]) == 5
    assert axes["y"][0] == pytest.approx(np.log10(np.float32(0.31))) and axes["y"][1] == pytest.approx(
        np.log10(np.float32(2.2)))
    assert axes["caption"] == "loss (log scale) from step 0 · grey: before Reset · orange: clipped"
    svg = "".join(loss_svg(view, 900, 0)[0])
    for text in [*axes["ticks"], axes["end"], axes["caption"]]:
        assert f">{text}</text>" in svg, text
    for colour in (THEME["series"][0], THEME["previous"], THEME["clipped"], THEME["validation"], THEME["grid"]):
        assert f'"{colour}"' in svg, colour
    assert view.theme == THEME  # what the browser view draws with


def test_a_loss_chart_with_nothing_to_place_is_sent_no_axes():
    view = LossView()
    view.steps, view.loss = f32([0, 1]), f32([0.0, -1.0])  # nothing positive on a log scale
    assert view.axes == {}
    view.log_scale = False
    assert view.axes["y"] == [-1.0, 0.0] and view.axes["caption"].startswith("loss (linear)")


def test_the_static_bars_draw_the_decades_the_view_is_sent():
    view = LayerBarsView(title="t", layers=["dense0", "dense1"], series=["|g|", "|x|"], reference=1e-3)
    view.show([[3e-5, 0.2], [float("nan"), 40.0]])
    axis = view.axis
    assert (axis["lo"], axis["hi"]) == (-5, 2)
    assert [label for _, label in axis["ticks"]] == ["1e-5", "0.001", "0.1", "10"]  # seven decades: every other one
    assert view.reference_label == "0.001"
    svg = "".join(bars_svg(view, 900, 0)[0])
    for _, label in axis["ticks"]:
        assert f">{label}</text>" in svg, label
    assert f'fill="{THEME["invalid"]}"' in svg and f'stroke="{THEME["reference"]}"' in svg
    assert all(f'fill="{c}"' in svg for c in THEME["series"][:2])


def test_the_graph_view_is_sent_the_static_drawings_edge_colours():
    from bpmagic.viz.dot import edge_colour, edge_width
    from bpmagic.viz.views import GraphView

    view = GraphView(dot="digraph { a -> b }")
    view.edge_weights = {"a->b": 0.0, "b->c": 0.5, "c->d": 1.0}
    assert view.edge_styles == {k: [edge_colour(w), edge_width(w)] for k, w in view.edge_weights.items()}
    assert "edge_weights" not in view.keys  # only the styles travel to the browser


@pytest.mark.slow
def test_the_sdist_carries_the_frontend_sources(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    names = tarfile.open(next(tmp_path.glob("bpmagic-*.tar.gz"))).getnames()
    inside = {n.split("/", 1)[1] for n in names if "/" in n}
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "frontend").rglob("*")
               if p.is_file() and not {"node_modules", "lib"} & set(p.relative_to(ROOT / "frontend").parts)
               and p.name != "tsconfig.tsbuildinfo"}
    assert sources and sources <= inside, sorted(sources - inside)
    assert not any("node_modules" in n or "/frontend/lib/" in n for n in names)
