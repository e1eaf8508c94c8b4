"""The dashboard's last state as one SVG image, drawn kernel-side from the same data the browser views show.

It travels in the dashboard's output beside the live widget (a mime bundle), so a notebook read without its kernel
— reopened, on GitHub or nbviewer, exported by nbconvert — still shows the loss curve, the per-layer bars and how
the run ended. Plain SVG text: no plotting library needed.
"""
from __future__ import annotations

import math
from html import escape

import numpy as np

from .numbers import number, numbers
from .views import LayerBarsView, LossView

WIDTH = 900
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")  # the browser views' series colours
FONT = 'font-family="sans-serif"'


def _floats(buffer: bytes) -> np.ndarray:
    return np.frombuffer(buffer, np.float32) if buffer else np.zeros(0, np.float32)


def svg_text(x, y, s, size=11, anchor="start", weight="normal", color="#333"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" font-weight="{weight}" fill="{color}" '
            f'text-anchor="{anchor}">{escape(str(s))}</text>')


def tick_labels(lo: float, hi: float, n: int, log: bool = True) -> list:
    """n labels for positions lo..hi (log10 positions, or values), with the fewest significant digits that keeps
    them distinct."""
    values = [(10 ** p if log else p) for p in (lo + (hi - lo) * i / (n - 1) for i in range(n))]
    for digits in range(2, 7):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == n:
            return labels
    return labels


def loss_svg(view: LossView, width: int, y0: float):
    """The curve (the loss on a log scale, a metric on a linear one) as SVG elements; returns (elements, height)."""
    steps, loss = _floats(view.steps), _floats(view.loss)
    psteps, ploss = _floats(view.previous_steps), _floats(view.previous_loss)
    height, pad_l, pad_r, pad_t, pad_b = 200, 56, 12, 10, 24
    out = [svg_text(0, y0 + 12, view.status, size=12, weight="bold")]
    top = y0 + 20
    log = view.log_scale
    f = (lambda v: math.log10(v)) if log else float  # noqa: E731

    def shown(values):
        return np.isfinite(values) & (values > 0) if log else np.isfinite(values)

    ok = shown(loss)
    if not ok.any():
        out.append(svg_text(pad_l, top + height / 2, "no steps yet", color="#888"))
        return out, 20 + height
    pok = shown(ploss)
    logs = [f(v) for v in np.concatenate([loss[ok], ploss[pok]]).astype(np.float64)]
    lo, hi = float(min(logs)), float(max(logs))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x0 = float(min(steps[0], psteps[0])) if len(psteps) else float(steps[0])
    x1 = max(float(steps[-1]), float(psteps[-1]) if len(psteps) else 0.0, x0 + 1)
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def X(s):
        return pad_l + (s - x0) / (x1 - x0) * plot_w

    def Y(v):
        return top + pad_t + (1 - (f(v) - lo) / (hi - lo)) * plot_h

    for i, label in enumerate(tick_labels(lo, hi, 5, log)):
        y = top + pad_t + (1 - i / 4) * plot_h
        out.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(svg_text(pad_l - 4, y + 4, label, size=10, anchor="end", color="#666"))
    out.append(svg_text(width - pad_r, top + height - 6, f"step {int(x1)}", size=10, anchor="end", color="#666"))
    clipped = _floats(view.clipped_steps)
    before = (" · grey: before Reset" if pok.any() else "") + (" · orange: clipped" if len(clipped) else "")
    out.append(svg_text(pad_l, top + height - 6, f"{view.label} ({'log scale' if log else 'linear'}) from step "
                        f"{int(x0)}{before}", size=10, color="#666"))
    if pok.any():  # the attempt before the last Reset, faintly behind
        points = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v, good in zip(psteps, ploss, pok) if good)
        out.append(f'<polyline points="{points}" fill="none" stroke="#c7c7c7" stroke-width="1.5"/>')
    points = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v, good in zip(steps, loss, ok) if good)
    out.append(f'<polyline points="{points}" fill="none" stroke="{COLORS[0]}" stroke-width="1.5"/>')
    for s in clipped:  # a tick under the curve where gradient clipping engaged
        out.append(f'<rect x="{X(s) - 0.5:.1f}" y="{top + height - pad_b - 4:.1f}" width="1.5" height="4" '
                   f'fill="#ff7f0e"/>')
    for s, v in zip(_floats(view.val_steps), _floats(view.val_loss)):
        if np.isfinite(v) and (v > 0 or not log):
            out.append(f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="3" fill="#d62728"/>')
    return out, 20 + height


def bars_svg(view: LayerBarsView, width: int, y0: float):
    """Per-layer bars on a log scale, with their legend; returns (elements, height)."""
    layers, series = list(view.layers), list(view.series)
    values = _floats(view.values).reshape(len(layers), len(series)) if layers and series else np.zeros((0, 0))
    out = [svg_text(0, y0 + 12, view.title, size=12, weight="bold")]
    y = y0 + 20
    for s, name in enumerate(series):
        out.append(f'<rect x="{s * width / max(len(series), 1):.1f}" y="{y + 2}" width="10" height="8" '
                   f'fill="{COLORS[s % len(COLORS)]}"/>')
        out.append(svg_text(s * width / max(len(series), 1) + 14, y + 10, name, size=10, color="#555"))
    y += 16
    finite = values[np.isfinite(values) & (values > 0)]
    logs = list(np.log10(finite.astype(np.float64)))
    if view.reference > 0:
        logs.append(math.log10(view.reference))
    lo = math.floor(min(logs)) - 0.5 if logs else -6
    hi = math.ceil(max(logs)) + 0.5 if logs else 1
    labels = list(view.value_labels) or numbers(values.ravel())
    name_w, num_w = 70, 70
    track = width - name_w - num_w
    row_h = 8 * len(series) + 6
    for i, layer in enumerate(layers):
        top = y + i * row_h
        out.append(svg_text(0, top + row_h / 2 + 3, layer, size=11))
        out.append(f'<rect x="{name_w}" y="{top}" width="{track}" height="{8 * len(series)}" fill="#f2f2f2"/>')
        for s in range(len(series)):
            v = float(values[i, s])
            frac = (math.log10(v) - lo) / (hi - lo) if v > 0 and math.isfinite(v) else 0.0
            out.append(f'<rect x="{name_w}" y="{top + 8 * s}" width="{track * min(max(frac, 0), 1):.1f}" '
                       f'height="7" fill="{COLORS[s % len(COLORS)] if math.isfinite(v) else "#000"}"/>')
        if view.reference > 0:
            x = name_w + track * (math.log10(view.reference) - lo) / (hi - lo)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + 8 * len(series)}" stroke="#333"/>')
        for s in range(len(series)):  # each bar's value beside it, as the browser view shows it
            out.append(svg_text(width, top + 8 * s + 7, labels[i * len(series) + s], size=9, anchor="end",
                                color=COLORS[s % len(COLORS)]))
    scale = f"log scale from {number(10 ** lo)} to {number(10 ** hi)}"
    out.append(svg_text(name_w, y + len(layers) * row_h + 10, scale, size=10, color="#666"))
    return out, 36 + len(layers) * row_h + 14


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
    parts.append(svg_text(0, y + 12, caption, size=11, color="#555"))
    y += 20
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="bpmagic-dashboard-static" width="{WIDTH}" '
            f'height="{int(y)}" viewBox="0 0 {WIDTH} {int(y)}"><rect width="100%" height="100%" fill="white"/>'
            + "".join(parts) + "</svg>")
