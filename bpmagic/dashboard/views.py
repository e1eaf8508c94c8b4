"""The dashboard's browser views (anywidget modules built from frontend/src/widgets/ into bpmagic/widgets/)."""
from __future__ import annotations

import math
from contextlib import contextmanager

import anywidget
import numpy as np
from traitlets import Bool, Bytes, Dict, Float, Int, List, Unicode, observe

from ..assets import BuiltView, module
from ..record import Recorded
from .numbers import number, numbers
from .scales import curve_axes, decade_axis, layer_lines_axes
from .theme import THEME


def f32(values) -> bytes:
    """A float32 buffer (sent to the browser as a binary buffer, not JSON)."""
    return np.asarray(values, dtype=np.float32).tobytes()


def floats(buffer: bytes) -> np.ndarray:
    """A float32 buffer's values, as the browser reads them."""
    return np.frombuffer(buffer, np.float32) if buffer else np.zeros(0, np.float32)


class LossView(BuiltView, anywidget.AnyWidget, Recorded):
    _esm = module("loss_chart.js")
    steps = Bytes(b"").tag(sync=True)
    loss = Bytes(b"").tag(sync=True)
    val_steps = Bytes(b"").tag(sync=True)
    val_loss = Bytes(b"").tag(sync=True)
    clipped_steps = Bytes(b"").tag(sync=True)  # steps where gradient clipping engaged, marked under the curve
    previous_steps = Bytes(b"").tag(sync=True)  # the attempt before the last Reset, drawn faintly to compare
    previous_loss = Bytes(b"").tag(sync=True)
    status = Unicode("").tag(sync=True)
    log_scale = Bool(True).tag(sync=True)
    label = Unicode("loss").tag(sync=True)  # what the curve is (the metrics panel draws accuracy and others)
    theme = Dict(THEME).tag(sync=True)  # colours and sizes (dashboard/theme.py)
    axes = Dict().tag(sync=True)  # range, ticks and caption (dashboard/scales.py), kept in step with the data

    _rescaled = True

    @observe("steps", "loss", "val_loss", "clipped_steps", "previous_steps", "previous_loss", "log_scale", "label")
    def _rescale(self, change=None):
        if change is not None and self._holding_sync:  # a panel's update sets several buffers: the axes are
            self._rescaled = False  # computed once, at its end
            return
        self.axes = curve_axes(floats(self.steps), [floats(b) for b in (self.loss, self.val_loss, self.previous_loss)],
                               log=self.log_scale, label=self.label, previous_steps=floats(self.previous_steps),
                               clipped=bool(self.clipped_steps))
        self._rescaled = True

    @contextmanager
    def hold_sync(self):
        """ipywidgets' hold_sync (the changes go in one message), the axes computed for the data it holds."""
        with super().hold_sync():
            yield
            if not self._rescaled:
                self._rescale()  # still held: the axes join the same message


def strip_rows(layers: int, theme=THEME) -> tuple:
    """(a row's height, names every how many rows) of the layers x time strip: rows shrink so that many layers fit
    the strip's height, and a name goes on every row only where it fits."""
    row = max(theme["strip_row_least"], min(theme["strip_row"], theme["strip_height"] // max(layers, 1)))
    return row, names_every(row, theme)


def lines_row(layers: int, theme=THEME) -> int:
    """A layer's chart height in a run on workers' per-layer lines: charts shrink so that many layers fit the lines'
    height, not below a height that still has room for the layer's name."""
    return max(theme["lines_row_least"], min(theme["lines_row"], theme["lines_height"] // max(layers, 1)))


def bar_rows(layers: int, series: int, theme=THEME) -> tuple:
    """(a bar's height, a layer's row height) in the static image: full bars for up to rows_shown layers (where the
    browser's start to scroll), thinner ones past that, as thin as needed for all to fit about the height of
    rows_shown full rows (a bar at least a pixel)."""
    full = (theme["bar"] + 1) * series + 6
    if layers <= theme["rows_shown"]:
        return theme["bar"], full
    bar = max(1, min(theme["bar"], int((theme["rows_shown"] * full / layers - 2) // series) - 1))
    return bar, (bar + 1) * series + 2


def names_every(row: float, theme=THEME) -> int:
    """Every how many rows of `row` pixels a layer's name fits."""
    return max(1, math.ceil(theme["name_height"] / row))


def named(i: int, count: int, every: int) -> bool:
    """Whether row i of `count` carries its name: every `every` rows, counted from the last (the output layer)."""
    return (count - 1 - i) % every == 0


class LayerBarsView(BuiltView, anywidget.AnyWidget):
    _esm = module("layer_bars.js")
    title = Unicode("").tag(sync=True)
    layers = List(Unicode()).tag(sync=True)
    series = List(Unicode()).tag(sync=True)
    values = Bytes(b"").tag(sync=True)  # float32 [layers, series]
    value_labels = List(Unicode()).tag(sync=True)  # the values as written beside the bars (dashboard/numbers.py)
    strip = Bytes(b"").tag(sync=True)  # float32 [layers, strip_cols], log10 of the first series
    strip_cols = Int(0).tag(sync=True)
    strip_steps = Int(0).tag(sync=True)  # steps the strip spans (its time axis)
    reference = Float(0.0).tag(sync=True)  # a line across the bars (0: none)
    theme = Dict(THEME).tag(sync=True)  # colours, sizes and the strip's bands (dashboard/theme.py)
    axis = Dict(decade_axis([])).tag(sync=True)  # the bars' decades (dashboard/scales.py)
    reference_label = Unicode("").tag(sync=True)
    strip_row = Int(THEME["strip_row"]).tag(sync=True)  # one layer's row of the strip, in pixels
    names_every = Int(1).tag(sync=True)  # the strip names every this many rows (rows too thin for each name)

    @observe("layers")
    def _layers_changed(self, _change=None):
        self.strip_row, self.names_every = strip_rows(len(self.layers), {**THEME, **self.theme})

    def show(self, values):
        """values: [layers][series] numbers; sent as float32 with their labels and the axis that frames them."""
        flat = [v for row in values for v in row]
        self.values = f32(values)
        self.value_labels = numbers(flat)
        self.axis = decade_axis(flat, self.reference)

    @observe("reference")
    def _reference_changed(self, _change=None):
        self.reference_label = number(self.reference) if self.reference > 0 else ""
        self.axis = decade_axis(floats(self.values), self.reference)


class LayerLinesView(BuiltView, anywidget.AnyWidget):
    """A run on workers: per layer over time, the averaged gradient's norm (thick) amid each worker's own (thin)."""

    _esm = module("layer_lines.js")
    title = Unicode("").tag(sync=True)
    layers = List(Unicode()).tag(sync=True)
    series = List(Unicode()).tag(sync=True)  # the legend: [the thick line, the thin ones]
    workers = Int(0).tag(sync=True)
    steps = Bytes(b"").tag(sync=True)  # float32 [points]
    values = Bytes(b"").tag(sync=True)  # float32 [layers, 1 + workers, points]: the average, then each worker
    theme = Dict(THEME).tag(sync=True)
    axes = Dict().tag(sync=True)  # per layer ranges, ticks and the caption (dashboard/scales.py)
    row = Int(THEME["lines_row"]).tag(sync=True)  # one layer's chart, in pixels

    @observe("layers")
    def _layers_changed(self, _change=None):
        self.row = lines_row(len(self.layers), {**THEME, **self.theme})

    def show(self, steps, values):
        """steps [points], values [layers, 1 + workers, points]: sent as float32 with the axes that frame them."""
        steps, values = np.asarray(steps, np.float32), np.asarray(values, np.float32)  # the axes frame what is sent
        self.steps, self.values = steps.tobytes(), values.tobytes()
        self.axes = layer_lines_axes(steps, values, self.workers)


class NumberControlView(BuiltView, anywidget.AnyWidget):
    """An exact number: a slider (log or linear) and a field with the exact value. `version` counts the values
    the kernel set; the browser sends each value with `base`, the version it was showing (see panels/controls).
    A dragged slider sends its value once, when it is let go: one gesture, one change."""

    _esm = module("number_control.js")
    description = Unicode("").tag(sync=True)
    value = Float(0.0).tag(sync=True, echo_update=False)  # a flood of browser values sends nothing back
    base = Int(-1).tag(sync=True, echo_update=False)
    version = Int(0).tag(sync=True)
    min = Float(0.0).tag(sync=True)
    max = Float(1.0).tag(sync=True)
    log = Bool(False).tag(sync=True)
    disabled = Bool(False).tag(sync=True)
    error = Unicode("").tag(sync=True)
    # when set, a label for the value 0 at the slider's far end, beyond max: no limit (the pace's "full speed")
    unlimited = Unicode("").tag(sync=True)
    note = Unicode("").tag(sync=True)  # how the value in use comes about (a schedule's part), shown beside it
