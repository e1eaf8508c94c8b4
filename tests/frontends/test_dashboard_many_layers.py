"""A deep net's dashboard (lab 09: 52 layers): the per-layer learning-rate multipliers are folded into one closed
section, so the speed control and the buttons stay beside the panels; the static record names only the changed
multipliers and counts the rest, draws the layers x time strip the lab points to, and its bars thin: it stays about
a screen tall. A net with a few layers shows its multipliers and full bars as before."""
import re

import ipywidgets as widgets
import numpy as np

import bpmagic as bp
from bpmagic.dashboard import Dashboard
from bpmagic.dashboard.theme import THEME


def trained(depth):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 4)).astype(np.float32)
    Y = rng.standard_normal((16, 1)).astype(np.float32)
    params = {f"W{i}": (rng.standard_normal((4, 4)) * 0.5).astype(np.float32) for i in range(depth)}
    params["Wout"] = rng.standard_normal((4, 1)).astype(np.float32)

    def loss(p, x, y):
        h = x
        for i in range(depth):
            h = bp.tanh(h @ p[f"W{i}"])
        return bp.mse(h @ p["Wout"], y)

    return bp.fit(loss, params, (X, Y), steps=2, optimizer=bp.optim.SGD(lr=0.01), backend="numpy")


def controls_of(dashboard):
    return next(p for p in dashboard.panels if type(p).__name__ == "ControlsPanel")


def test_many_layers_fold_their_multipliers_away():
    run = trained(12)
    dashboard = Dashboard(run)
    panel = controls_of(dashboard)
    assert len(panel.multipliers) == 13
    folded = [w for w in panel.widget.children if isinstance(w, widgets.Accordion)]
    assert len(folded) == 1 and folded[0].selected_index is None  # closed until a click opens it
    assert folded[0].titles == ("learning rate × per layer (13 layers)",)
    assert list(folded[0].children[0].children) == list(panel.multipliers.values())
    assert panel.pace in panel.widget.children  # the speed and the buttons are not below 13 sliders
    assert all(m in panel.number_controls for m in panel.multipliers.values())  # still live, turned off at the end

    record = dashboard.static_svg()
    assert "13 layers: lr ×1" in record and "layer 3: lr ×" not in record
    run.optimizer.set_lr_multiplier("3", 0.5)
    panel.update(run)
    record = dashboard.static_svg()
    assert "layer 3: lr ×0.5" in record and "the other 12 layers: lr ×1" in record


def test_a_few_layers_show_their_multipliers():
    panel = controls_of(Dashboard(trained(2)))
    assert not any(isinstance(w, widgets.Accordion) for w in panel.widget.children)
    assert all(m in panel.widget.children for m in panel.multipliers.values())


def test_a_deep_nets_record_draws_the_strip_with_thin_bars_and_stays_a_screen_tall():
    import math

    deep, shallow = Dashboard(trained(50)), Dashboard(trained(2))
    for d in (deep, shallow):
        d.update(d.run)
    record, few = deep.static_svg(), shallow.static_svg()
    height = int(re.search(r'height="(\d+)"', record).group(1))
    assert height < 1500  # 51 layers' rows of full bars took 2,300 pixels
    layers = list(deep.run.layers)  # "0" ... "49", "Wout"
    names = re.findall(r'<text x="0\.0" [^>]*>([^<]*)</text>', record)  # the left column's: names (and titles)
    assert names.count("Wout") == 3  # in the gradient bars, the strip and the update ratios
    # the thin bars' names (9 pixels), of the gradient panel then of the update ratios: every few rows, from the last
    thin = re.findall(r'<text x="0\.0" [^>]*font-size="9"[^>]*>([^<]*)</text>', record)
    gradient_bars, ratio_bars = thin[:thin.index("Wout") + 1], thin[thin.index("Wout") + 1:]
    for panel in (gradient_bars, ratio_bars):
        assert panel[-1] == "Wout" and set(panel) <= set(layers) and 8 <= len(panel) <= 0.6 * len(layers), panel
    # the strip: its key, and its cells in the bands' colours (runs of one colour are one rectangle)
    bands = {colour for _, colour, _ in THEME["bands"]}
    assert "log10 bands, the same for every run:" in record and "log10 bands" in few
    assert len(set(re.findall(r'fill="(#[0-9a-f]{6})"', record)) & bands) >= 1
    # a gradient of exactly 0 (log10: -inf) is the lowest band's colour in the strip, not the invalid black
    bars = next(p for p in deep.panels if type(p).__name__ == "GradientPanel").bars
    bars.strip = np.full((len(bars.layers), 2), -math.inf, np.float32).tobytes()
    bars.strip_cols = 2
    zeroed = deep.static_svg()
    assert zeroed.count(f'fill="{THEME["bands"][0][1]}"') >= len(bars.layers) and 'fill="#000"' not in zeroed
    # a few layers: every one named, with each series' value beside its bar
    assert few.count(">Wout</text>") == 3
    few_names = re.findall(r'<text x="0\.0" [^>]*>([^<]*)</text>', few)
    assert [n for n in few_names if n in shallow.run.layers] == list(shallow.run.layers) * 3  # every row named
    signal = f'fill="{THEME["series"][1]}" text-anchor="end"'  # the second series' value beside its bar
    assert few.count(signal) == 3 and record.count(signal) == 0  # a deep net's thin rows: the first series' only


def test_the_images_bars_thin_only_as_much_as_their_layers_need():
    """12 layers: full bars; 13: about as tall as 12 (not a jump to thin bars and half the names); 200: thin, bounded."""
    from bpmagic.dashboard.views import bar_rows

    full_bar, full_row = bar_rows(12, 2)
    assert full_bar == THEME["bar"]
    bar, row = bar_rows(13, 2)
    assert bar == THEME["bar"] and 13 * row <= 12 * full_row
    bar, row = bar_rows(52, 2)
    assert 1 <= bar < THEME["bar"] and 52 * row <= 12 * full_row * 1.5
    bar, row = bar_rows(200, 2)
    assert bar == 1 and row == 6


def test_a_deep_net_on_workers_draws_its_lines_about_a_screen_tall():
    """A run on workers shows each layer's chart of the average and each worker's gradient norm: 54 pixels each,
    2,872 pixels for 52 layers; now the charts shrink to fit (to 16 pixels: the name, the top tick only)."""
    from bpmagic.dashboard.static import lines_svg
    from bpmagic.dashboard.views import LayerLinesView

    rng = np.random.default_rng(0)
    layers = ["W_in"] + [f"Ws[{i}]" for i in range(50)] + ["W_out"]
    charts = {}
    for names in (layers, layers[:3]):
        view = LayerLinesView(layers=names, workers=2, title="per worker", series=["average", "each worker's own"])
        steps = np.arange(1, 101, dtype=np.float32)
        view.show(steps, np.exp(rng.standard_normal((len(names), 3, 100))).astype(np.float32) * 0.1)
        elements, height = lines_svg(view, 900, 0)
        charts[len(names)] = (view, "".join(elements), height)
    deep, svg, height = charts[52]
    assert deep.row == THEME["lines_row_least"] and height < 1000
    assert svg.count('class="bpmagic-average-line"') == 52 and svg.count('class="bpmagic-worker-line"') == 104
    named = re.findall(r'<text x="0\.0" [^>]*>([^<]*)</text>', svg)
    shown = [n for n in named if n in layers]
    assert shown == layers
    assert svg.count('font-size="9"') == 52  # the ranges' ticks: a 16-pixel chart has its top one only
    few, few_svg, _ = charts[3]
    assert few.row == THEME["lines_row"]
    assert [n for n in re.findall(r'<text x="0\.0" [^>]*>([^<]*)</text>', few_svg) if n in layers] == layers[:3]
    assert few_svg.count('font-size="9"') == 6
