"""The dashboard's colours and sizes, written once: the browser views receive them as data (each view's `theme`
trait, sent when it is made) and the static image (static.py) draws with the same ones, so the two look alike."""
from __future__ import annotations

SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")  # the loss curve, and each bar series in turn
INK = "#333"

THEME = {
    "series": SERIES,
    "previous": "#c7c7c7",  # the attempt before the last Reset, faint behind the curve ("grey: before Reset")
    "clipped": SERIES[1],  # a tick under the curve where gradient clipping engaged ("orange: clipped")
    "validation": "#d62728",  # the validation points
    "grid": "#ddd",
    "axis": "#666",  # tick labels and captions
    "legend": "#555",
    "empty": "#888",  # "waiting for the first step"
    "track": "#f2f2f2",  # behind each layer's bars
    "text": INK,  # the static image's text (the browser views use the page's)
    "reference": INK,  # the reference line across the bars (a healthy update/weight ratio)
    "invalid": "#000",  # a bar or strip cell whose value is NaN or infinite (a zero gradient is the lowest band)
    "chart_height": 200,  # the loss chart (its least height in the browser, where it may grow with its panel)
    "chart_pad": [56, 12, 10, 24],  # left, right, top, bottom: room for the axis labels and the caption
    "name_width": 70,  # the layer names' column
    "bar": 7,  # one bar's height; a layer's bars are bar + 1 apart
    # a deep net (lab 9: 52 layers): past rows_shown layers the browser's bars scroll and the image's thin to fit
    # about as tall, and the strip's rows shrink from strip_row pixels to fit strip_height (not under
    # strip_row_least), names on every few rows: a dashboard stays about a screen tall
    "rows_shown": 12,
    "strip_row": 14,
    "strip_row_least": 3,
    "strip_height": 280,
    "name_height": 12,  # the least height a row's name needs
    # a run on workers: per layer over time, the averaged gradient's norm (a thick line in series[0]) amid each
    # worker's own (thin lines, lighter)
    "worker": "#7fb2d9",
    "worker_width": 1.0,
    "average_width": 1.8,
    "lines_row": 54,  # one layer's chart; a deep net's shrink to fit lines_height, not under lines_row_least
    "lines_row_least": 16,  # room for a name
    "lines_height": 648,
    "lines_both_ticks": 30,  # a chart this tall has room for its range's both ends, a shorter one for its top only
    "lines_ticks": 50,  # the column right of the charts with each layer's range
    # the gradient strip's log10 |gradient| bands, fixed for every run so a vanishing run looks different from a
    # healthy one: [upper bound (None: no bound), colour, name]; below 1e-5 little is learnt, above 1 steps are big
    "bands": [
        [-5, "#08306b", "< 1e-5"], [-4, "#2171b5", "1e-5"], [-3, "#6baed6", "1e-4"], [-2, "#c6dbef", "0.001"],
        [-1, "#e5f5e0", "0.01"], [0, "#a1d99b", "0.1"], [1, "#fdae6b", "1"], [2, "#e6550d", "10"],
        [None, "#a50f15", "≥ 100"],
    ],
}
