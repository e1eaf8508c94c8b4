"""The dashboard's last state as one SVG image, drawn kernel-side from the same data the browser views show.

It travels in the dashboard's output beside the live widget (a mime bundle), so a notebook read without its kernel
— reopened, on GitHub or nbviewer, exported by nbconvert — still shows the loss curve, the per-layer bars and how
the run ended. Plain SVG text: no plotting library needed.
"""
from __future__ import annotations

import math
from html import escape

import numpy as np

from .numbers import numbers
from .scales import fraction, shown
from .theme import THEME
from .views import LayerBarsView, LayerLinesView, LossView, bar_rows, floats, named, names_every

WIDTH = 900
FONT = 'font-family="sans-serif"'


def svg_text(x, y, s, size=11, anchor="start", weight="normal", color=THEME["text"]):
    return (f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" font-weight="{weight}" fill="{color}" '
            f'text-anchor="{anchor}">{escape(str(s))}</text>')


def loss_svg(view: LossView, width: int, y0: float):
    """The curve (the loss on a log scale, a metric on a linear one) on the axes the browser view was sent, as SVG
    elements; returns (elements, height)."""
    theme, axes, log = view.theme, view.axes, view.log_scale
    height = theme["chart_height"]
    pad_l, pad_r, pad_t, pad_b = theme["chart_pad"]
    out = [svg_text(0, y0 + 12, view.status, size=12, weight="bold")]
    top = y0 + 20
    if not axes:
        out.append(svg_text(pad_l, top + height / 2, "no steps yet", color=theme["empty"]))
        return out, 20 + height
    (x0, x1), (lo, hi) = axes["x"], axes["y"]
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def X(s):
        return pad_l + (s - x0) / (x1 - x0) * plot_w

    def Y(v):  # each value mapped onto the axis, as the browser view maps it
        return top + pad_t + (1 - ((math.log10(v) if log else v) - lo) / (hi - lo)) * plot_h

    def polyline(steps, values, colour):
        ok = shown(values, log)
        points = " ".join(f"{X(s):.1f},{Y(float(v)):.1f}" for s, v, good in zip(steps, values, ok) if good)
        return f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>'

    for i, label in enumerate(axes["ticks"]):
        y = top + pad_t + (1 - i / 4) * plot_h
        out.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y:.1f}" y2="{y:.1f}" stroke="{theme["grid"]}"/>')
        out.append(svg_text(pad_l - 4, y + 4, label, size=10, anchor="end", color=theme["axis"]))
    out.append(svg_text(width - pad_r, top + height - 6, axes["end"], size=10, anchor="end", color=theme["axis"]))
    out.append(svg_text(pad_l, top + height - 6, axes["caption"], size=10, color=theme["axis"]))
    psteps, ploss = floats(view.previous_steps), floats(view.previous_loss)
    if len(psteps):  # the attempt before the last Reset, faintly behind
        out.append(polyline(psteps, ploss, theme["previous"]))
    out.append(polyline(floats(view.steps), floats(view.loss), theme["series"][0]))
    for s in floats(view.clipped_steps):  # a tick under the curve where gradient clipping engaged
        out.append(f'<rect x="{X(s) - 0.5:.1f}" y="{top + height - pad_b - 4:.1f}" width="1.5" height="4" '
                   f'fill="{theme["clipped"]}"/>')
    vloss = floats(view.val_loss)
    for s, v, good in zip(floats(view.val_steps), vloss, shown(vloss, log)):
        if good:
            out.append(f'<circle cx="{X(s):.1f}" cy="{Y(float(v)):.1f}" r="3" fill="{theme["validation"]}"/>')
    return out, 20 + height


def bars_svg(view: LayerBarsView, width: int, y0: float):
    """Per-layer bars on the decade axis the browser view was sent, with their legend, and the layers x time strip
    when the view has one; returns (elements, height). Past the rows the browser shows at once (where its bars
    scroll), the bars thin as needed to fit about as tall, named every few rows (views.bar_rows)."""
    theme, axis = view.theme, view.axis
    colours = theme["series"]
    layers, series = list(view.layers), list(view.series)
    values = floats(view.values).reshape(len(layers), len(series)) if layers and series else np.zeros((0, 0))
    out = [svg_text(0, y0 + 12, view.title, size=12, weight="bold")]
    y = y0 + 20
    for s, name in enumerate(series):
        out.append(f'<rect x="{s * width / max(len(series), 1):.1f}" y="{y + 2}" width="10" height="8" '
                   f'fill="{colours[s % len(colours)]}"/>')
        out.append(svg_text(s * width / max(len(series), 1) + 14, y + 10, name, size=10, color=theme["legend"]))
    y += 16
    labels = list(view.value_labels) or numbers(values.ravel())
    name_w, num_w = theme["name_width"], theme["name_width"]
    track = width - name_w - num_w
    bar, row_h = bar_rows(len(layers), len(series), theme)
    pitch = bar + 1
    thin = bar < theme["bar"]  # too thin for each series' number beside its bar: the first series' only
    every = names_every(row_h, theme)
    for i, layer in enumerate(layers):
        top = y + i * row_h
        written = named(i, len(layers), every)
        if written:
            out.append(svg_text(0, top + row_h / 2 + 3, layer, size=9 if thin else 11))
        out.append(f'<rect x="{name_w}" y="{top}" width="{track}" height="{pitch * len(series)}" '
                   f'fill="{theme["track"]}"/>')
        for s in range(len(series)):
            v = float(values[i, s])
            out.append(f'<rect x="{name_w}" y="{top + pitch * s}" width="{track * fraction(v, axis):.1f}" '
                       f'height="{bar}" fill="{colours[s % len(colours)] if math.isfinite(v) else theme["invalid"]}"/>')
        if view.reference > 0:
            x = name_w + track * fraction(view.reference, axis)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + pitch * len(series)}" '
                       f'stroke="{theme["reference"]}"/>')
        if written:  # each bar's value beside it, as the browser view shows it (thin rows: the first series')
            for s in range(1 if thin else len(series)):
                baseline = top + (row_h / 2 + 3 if thin else pitch * s + bar)
                out.append(svg_text(width, baseline, labels[i * len(series) + s], size=9, anchor="end",
                                    color=colours[s % len(colours)]))
    y += len(layers) * row_h
    for at, label in axis["ticks"]:  # the decades under the bars, as in the browser view
        anchor = "start" if at == 0 else "end" if at >= 1 else "middle"
        out.append(svg_text(name_w + track * at, y + 10, label, size=10, anchor=anchor, color=theme["axis"]))
    y += 14
    if view.strip_cols > 0 and len(floats(view.strip)) == view.strip_cols * len(layers):
        elements, height = strip_svg(view, width, y + 8)
        out += elements
        y += 8 + height
    return out, y - y0


def strip_svg(view: LayerBarsView, width: int, y0: float):
    """The layers x time strip as the browser view draws it: each cell coloured by its log10 band (a run of cells
    of one band is one rectangle), the names, the time axis and the bands' key; returns (elements, height)."""
    theme, layers, cols = view.theme, list(view.layers), view.strip_cols
    cells = floats(view.strip).reshape(len(layers), cols)
    row, every = view.strip_row, view.names_every
    left = theme["name_width"] + 6
    cell_w = (width - left) / cols

    def band(v):  # as the browser view colours a cell: 0 (log10: -inf, a vanished gradient) in the lowest band
        if math.isnan(v) or v == math.inf:
            return theme["invalid"]
        return next(colour for upper, colour, _ in theme["bands"] if upper is None or v < upper)

    out = []
    for i, layer in enumerate(layers):
        top = y0 + i * row
        if named(i, len(layers), every):
            out.append(svg_text(0, top + row / 2 + 3.5, layer, size=10))
        colours = [band(float(v)) for v in cells[i]]
        start = 0
        for c in range(1, cols + 1):
            if c == cols or colours[c] != colours[start]:
                out.append(f'<rect x="{left + start * cell_w:.1f}" y="{top}" width="{(c - start) * cell_w:.1f}" '
                           f'height="{row - 1}" fill="{colours[start]}"/>')
                start = c
    y = y0 + len(layers) * row
    steps = view.strip_steps
    for at, text in ((0, "step 0"), (0.5, f"{round(steps / 2)}"), (1, f"step {steps}")):
        anchor = "start" if at == 0 else "end" if at == 1 else "middle"
        out.append(svg_text(left + (width - left) * at, y + 10, text, size=10, anchor=anchor, color=theme["axis"]))
    y += 16
    x = 0.0
    out.append(svg_text(x, y + 9, "log10 bands, the same for every run:", size=10, color=theme["legend"]))
    x += 190
    for _, colour, name in theme["bands"]:
        out.append(f'<rect x="{x:.1f}" y="{y}" width="14" height="9" fill="{colour}" stroke="#ccc"/>')
        out.append(svg_text(x + 17, y + 9, name, size=10, color=theme["legend"]))
        x += 17 + 7 * len(name) + 8
    return out, y + 12 - y0


def lines_svg(view: LayerLinesView, width: int, y0: float):
    """Per layer over time, each worker's gradient norm (thin) around the averaged one (thick), on the axes the
    browser view was sent, with their legend; returns (elements, height)."""
    theme, axes = view.theme, view.axes
    layers, lines = list(view.layers), 1 + view.workers
    steps = floats(view.steps)
    values = floats(view.values).reshape(len(layers), lines, len(steps)) if layers and len(steps) else None
    out = [svg_text(0, y0 + 12, view.title, size=12, weight="bold")]
    y = y0 + 20
    for s, (name, colour, thick) in enumerate(zip(view.series, (theme["series"][0], theme["worker"]),
                                                  (theme["average_width"], theme["worker_width"]))):
        x = s * width / 2
        out.append(f'<line x1="{x:.1f}" x2="{x + 14:.1f}" y1="{y + 6}" y2="{y + 6}" stroke="{colour}" '
                   f'stroke-width="{thick}"/>')
        out.append(svg_text(x + 18, y + 10, name, size=10, color=theme["legend"]))
    y += 16
    if not axes or values is None:
        out.append(svg_text(0, y + 12, "no steps yet", color=theme["empty"]))
        return out, 20 + 16 + 20
    name_w, right, row = theme["name_width"], theme["lines_ticks"], view.row
    plot_w = width - name_w - right
    (x0, x1) = axes["x"]

    def X(step):
        return name_w + (step - x0) / (x1 - x0) * plot_w

    for i, layer in enumerate(layers):
        top = y + i * row
        out.append(svg_text(0, top + row / 2 + 3, layer, size=11))
        out.append(f'<rect x="{name_w}" y="{top + 2}" width="{plot_w}" height="{row - 4}" fill="{theme["track"]}"/>')
        if axes["rows"][i] is None:
            continue
        lo, hi = axes["rows"][i]
        ends = 2 if row >= theme["lines_both_ticks"] else 1
        for label, at in list(zip(axes["ticks"][i], (top + 10, top + row - 4)))[:ends]:
            out.append(svg_text(width, at, label, size=9, anchor="end", color=theme["axis"]))

        def Y(v):
            return top + 4 + (1 - (math.log10(v) - lo) / (hi - lo)) * (row - 8)

        # the workers first, the average drawn over them
        for j in list(range(1, lines)) + [0]:
            ok = shown(values[i, j], True)
            points = " ".join(f"{X(s):.1f},{Y(float(v)):.1f}" for s, v, good in zip(steps, values[i, j], ok) if good)
            colour, thick = (theme["series"][0], theme["average_width"]) if j == 0 else \
                (theme["worker"], theme["worker_width"])
            out.append(f'<polyline class="bpmagic-{"average" if j == 0 else "worker"}-line" points="{points}" '
                       f'fill="none" stroke="{colour}" stroke-width="{thick}"/>')
    y += len(layers) * row
    out.append(svg_text(name_w, y + 10, axes["start"], size=10, color=theme["axis"]))
    out.append(svg_text(name_w + plot_w, y + 10, axes["end"], size=10, anchor="end", color=theme["axis"]))
    out.append(svg_text(0, y + 24, axes["caption"], size=10, color=theme["axis"]))
    return out, 36 + len(layers) * row + 28


def view_svg(widget, width: int, y0: float):
    """(elements, height) for the browser views this module can draw, else None."""
    if isinstance(widget, LossView):
        return loss_svg(widget, width, y0)
    if isinstance(widget, LayerBarsView):
        return bars_svg(widget, width, y0)
    return None


def dashboard_svg(panels, caption: str) -> str:
    """One SVG image: each panel that can draw itself statically (Panel.static_svg), one under the other."""
    parts, y = [], 0.0
    for panel in panels:
        drawn = panel.static_svg(WIDTH, y)
        if drawn is None:
            continue
        elements, height = drawn
        parts += elements
        y += height + 16
    parts.append(svg_text(0, y + 12, caption, size=11, color=THEME["legend"]))
    y += 20
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="bpmagic-dashboard-static" width="{WIDTH}" '
            f'height="{int(y)}" viewBox="0 0 {WIDTH} {int(y)}"><rect width="100%" height="100%" fill="white"/>'
            + "".join(parts) + "</svg>")
