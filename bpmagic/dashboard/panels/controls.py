"""Controls panel: learning rate, per-layer multipliers, momentum, weight decay; Pause / Resume, Step, Stop.

A change is written into the run's Controls (thread-safe) and takes effect at the next step. Values that arrive
from the browser are checked first: a NaN or out-of-range value is rejected and the control snaps back, so a
crafted message cannot reach the optimizer. Updates from the browser are not echoed back, so even a flood of
them sends nothing to the browser.
"""
from __future__ import annotations

import math
import threading
import time

import ipywidgets as widgets
from traitlets import CFloat

from ..dashboard import Panel


class _Guarded:
    """Mixin for sliders: reject non-finite or out-of-range values from the browser, and snap back."""

    SNAP_INTERVAL = 0.1  # at most ten snap-backs a second, however many bad messages arrive
    rejected = 0

    def bounds(self):
        return self.min, self.max

    def set_state(self, sync_data):
        if "value" in sync_data:
            try:
                v = float(sync_data["value"])
            except (TypeError, ValueError):
                v = math.nan
            lo, hi = self.bounds()
            if not (math.isfinite(v) and lo <= v <= hi):
                self.rejected += 1
                sync_data = {k: val for k, val in sync_data.items() if k != "value"}
                self._snap_back()
        if sync_data:
            super().set_state(sync_data)

    def _snap_back(self):
        now = time.monotonic()
        last = getattr(self, "_last_snap", 0.0)
        if now - last >= self.SNAP_INTERVAL:
            self._last_snap = now
            self.send_state("value")
        elif getattr(self, "_snap_timer", None) is None:
            def later():
                self._snap_timer = None
                self._last_snap = time.monotonic()
                self.send_state("value")

            self._snap_timer = threading.Timer(self.SNAP_INTERVAL, later)
            self._snap_timer.daemon = True
            self._snap_timer.start()


class GuardedFloatSlider(_Guarded, widgets.FloatSlider):
    value = CFloat(0.0).tag(sync=True, echo_update=False)


class GuardedFloatLogSlider(_Guarded, widgets.FloatLogSlider):
    value = CFloat(1.0).tag(sync=True, echo_update=False)

    def bounds(self):
        return self.base ** self.min, self.base ** self.max


def _exp(v):
    return math.floor(math.log10(v))


class ControlsPanel(Panel):
    order = 40

    def __init__(self, run):
        super().__init__(run)
        controls = run.controls
        hyper = controls.optimizer.hyperparameters()
        lr = hyper["lr"]
        style = {"description_width": "110px"}
        self.lr = GuardedFloatLogSlider(value=lr, base=10, min=_exp(lr) - 3, max=_exp(lr) + 2, step=0.05,
                                        description="learning rate", readout_format=".2e", style=style,
                                        continuous_update=True, layout=widgets.Layout(width="98%"))
        self.lr.add_class("bpmagic-lr")
        self.lr.observe(lambda ch: self._set(lr=ch.new), names="value")
        rows = [self.lr]
        self.hyper_sliders = {}
        if "momentum" in hyper:
            s = GuardedFloatSlider(value=hyper["momentum"], min=0.0, max=0.99, step=0.01, description="momentum",
                                   style=style, layout=widgets.Layout(width="98%"))
            s.observe(lambda ch: self._set(momentum=ch.new), names="value")
            self.hyper_sliders["momentum"] = s
        if "weight_decay" in hyper:
            wd = hyper["weight_decay"]
            s = GuardedFloatSlider(value=wd, min=0.0, max=max(0.1, 10 * wd), step=1e-4, description="weight decay",
                                   readout_format=".4f", style=style, layout=widgets.Layout(width="98%"))
            s.observe(lambda ch: self._set(weight_decay=ch.new), names="value")
            self.hyper_sliders["weight_decay"] = s
        rows += list(self.hyper_sliders.values())
        self.multipliers = {}
        for layer in run.layers:
            m = GuardedFloatSlider(value=hyper["lr_multipliers"].get(layer, 1.0), min=0.0, max=4.0, step=0.05,
                                   description=f"× lr {layer}", style=style, layout=widgets.Layout(width="98%"))
            m.add_class("bpmagic-multiplier")
            m.observe(lambda ch, layer=layer: self._multiplier(layer, ch.new), names="value")
            self.multipliers[layer] = m
        rows += list(self.multipliers.values())

        self.pause = widgets.Button(description="Pause", icon="pause")
        self.step = widgets.Button(description="Step", icon="step-forward", disabled=True)
        self.stop = widgets.Button(description="Stop", icon="stop", button_style="danger")
        self.pause.on_click(self._toggle_pause)
        self.step.on_click(lambda _: run.step_once())
        self.stop.on_click(lambda _: run.stop())
        for b, cls in ((self.pause, "bpmagic-pause"), (self.step, "bpmagic-step"), (self.stop, "bpmagic-stop")):
            b.add_class(cls)
        self.message = widgets.HTML("")
        self.live_widgets = [self.lr, *self.hyper_sliders.values(), *self.multipliers.values(), self.pause,
                             self.step, self.stop]
        self.widget = widgets.VBox([widgets.HTML("<b>Controls</b> <small>(take effect at the next step)</small>"),
                                    *rows, widgets.HBox([self.pause, self.step, self.stop]), self.message])

    def _set(self, **hyper):
        current = self.run.controls.optimizer.hyperparameters()
        if all(current.get(k) == v for k, v in hyper.items()):
            return
        try:
            self.run.controls.set(**hyper)
        except ValueError as e:
            self.message.value = f"<small>rejected: {e}</small>"

    def _multiplier(self, layer, value):
        try:
            self.run.controls.set_lr_multiplier(layer, value)
        except ValueError as e:
            self.message.value = f"<small>rejected: {e}</small>"

    def _toggle_pause(self, _=None):
        if self.run.controls.paused:
            self.run.resume()
        else:
            self.run.pause()
        self._sync_buttons()

    def _sync_buttons(self):
        paused = self.run.controls.paused
        self.pause.description, self.pause.icon = ("Resume", "play") if paused else ("Pause", "pause")
        self.step.disabled = not paused or self.run.done
        if self.run.done:
            self.pause.disabled = self.stop.disabled = True

    def update(self, run):
        """Show values changed elsewhere (from Python, another view) and the run's state."""
        hyper = run.controls.optimizer.hyperparameters()
        if self.lr.value != hyper["lr"]:
            self.lr.value = hyper["lr"]
        for k, s in self.hyper_sliders.items():
            if s.value != hyper[k]:
                s.value = hyper[k]
        for layer, s in self.multipliers.items():
            m = hyper["lr_multipliers"].get(layer, 1.0)
            if s.value != m:
                s.value = m
        self._sync_buttons()
        if run.done and run.status != "running":
            self.message.value = f"<small>{run.status}: {run.ended_because or ''}</small>"
