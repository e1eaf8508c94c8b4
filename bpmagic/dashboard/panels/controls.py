"""Controls panel: learning rate, per-layer multipliers, momentum, weight decay, speed; Pause / Resume, Step, Stop,
Reset.

Each control holds exactly the value in use. Showing it never changes it (the browser view sends only what a
person does, never a value of its own), a value typed or set in code is shown as it is, and a value changed in
code appears on the control within a tenth of a second. An older value from the browser never overrides a newer
one: the browser sends each value with the version of the value it was showing, and a value made before the
browser saw a newer one from code is dropped. Values from the browser are checked in one place, `Controls.offer`,
against the range the control shows (which only the kernel sets); a NaN, a string or an out-of-range value is
rejected and the control snaps back, so a crafted message cannot reach the optimizer.

The speed control sets the run's pace (steps per second, from full speed down to a pace a person can watch), and
Reset starts the run over from its initial parameters with the controls as they are: a learner tries another
learning rate without running the cell again. Both are live like the rest, and a pace change is in the history.
"""
from __future__ import annotations

import math
import threading
import time

import ipywidgets as widgets

from ... import threads
from ...train.controls import Stale
from ..dashboard import Panel
from ..views import NumberControlView


class ExactControl(NumberControlView):
    """One control of a run's `Controls` ("lr", "momentum", "weight_decay" or "lr_multiplier/<layer>"). `read()`
    gives the value in use. The browser may set `value` (with `base`) and nothing else: the range, version, label
    and the rest are the kernel's; a value from the browser goes to `Controls.offer`, which checks it against the
    range this control shows.

    A scheduled control (the learning rate under a schedule) shows the value in use, which moves at every step,
    and its `note` says how ("cosine ×0.43 of 0.1"); its version counts changes of the value *set* (`set_value()`),
    not the schedule's movement, and a value from the browser is the one to use from the coming step on."""

    SNAP_INTERVAL = 0.1  # at most ten snap-backs a second, however many bad messages arrive
    FROM_BROWSER = ("value", "base")

    def __init__(self, controls, control, read, set_value=None, explain=None, **traits):
        self._controls, self._control, self._read = controls, control, read
        self._set_value, self._note = set_value, explain  # a scheduled control: the value set, and how it moves
        self._set_seen = set_value() if set_value else None
        self._unlimited = bool(traits.get("unlimited"))  # then 0 means no limit, beyond the slider's top
        self._lock = threading.RLock()  # a browser message (kernel thread) and follow() (trainer thread) meet here
        self.rejected = self.stale = self.ignored = 0
        self._last_snap, self._snap_pending = 0.0, False
        super().__init__(value=read(), note=explain() if explain else "", **traits)
        self._include(self.value)  # a value set in code outside the usual range is shown, and may be set again

    # -- from the browser -------------------------------------------------------------------------------------------
    def set_state(self, sync_data):
        if not isinstance(sync_data, dict):
            raise ValueError(f"widget state must be a dict, got {type(sync_data).__name__}")
        self.ignored += sum(1 for k in sync_data if k not in self.FROM_BROWSER)
        if "value" not in sync_data:
            return
        with self._lock:
            # absent: a client that does not order its values; it may still only change what it was shown (below)
            base = sync_data.get("base")
            if isinstance(base, bool) or not isinstance(base, (int, type(None))):
                base = -1  # not a version: as old as can be
            moved = self._set_value is None and self._read() != self.value  # a schedule moves what is shown
            if moved or (base is not None and base < self.version):
                # made before the browser saw a newer value from code: that one stays
                self.stale += 1
                self._follow_locked()
            else:
                try:
                    # set only if the value in use is still the one shown: code may change it at any moment (a
                    # scheduled one moves at every step: its version is what orders it, checked above)
                    scheduled = self._set_value is not None
                    value = self._controls.offer(self._control, sync_data["value"],
                                                 expected=None if scheduled else self.value, in_use=scheduled)
                    if scheduled:
                        self._set_seen = self._set_value()  # the browser's own change: no new version
                except Stale:
                    self.stale += 1
                    self._follow_locked()
                except ValueError as e:
                    self.rejected += 1
                    self.error = f"rejected: {e}"
                    self._snap_back()
                else:
                    super().set_state({"value": value})
                    self.error = ""

    def _snap_back(self):
        now = time.monotonic()
        if now - self._last_snap >= self.SNAP_INTERVAL:
            self._last_snap = now
            self.send_state(["value", "version"])
        elif not self._snap_pending:
            def later():
                self._snap_pending = False
                self._last_snap = time.monotonic()
                self.send_state(["value", "version"])

            self._snap_pending = True
            threads.later(self.SNAP_INTERVAL, later)  # a timer thread, or the event loop (Pyodide)

    # -- from the kernel ----------------------------------------------------------------------------------------------
    def follow(self):
        """Show the value in use if it was changed elsewhere (code, another view)."""
        with self._lock:
            self._follow_locked()

    def _follow_locked(self):
        value = self._read()
        if self._set_value is not None:  # scheduled: a new version only when the value set changed elsewhere
            set_now, note = self._set_value(), self._note()
            changed = set_now != self._set_seen
            if value == self.value and note == self.note and not changed:
                return
            with self.hold_sync():
                self._include(value)
                self.value, self.note = value, note
                if changed:
                    self._set_seen = set_now
                    self.version += 1
                    self.error = ""
            return
        if value == self.value:
            return
        with self.hold_sync():
            self._include(value)
            self.value = value
            self.version += 1
            self.error = ""

    def _include(self, value):
        """Widen the range to hold `value` (set in code: it may be set again from the control)."""
        if self._unlimited and value == 0:
            pass
        elif self.log and 0 < value < self.min:
            self.min = 10.0 ** math.floor(math.log10(value))
        elif value < self.min:
            self.min = value
        if self.log and value > self.max:
            self.max = 10.0 ** math.ceil(math.log10(value))
        elif value > self.max:
            self.max = value
        self._controls.offer_range(self._control, self.min, self.max)


def _schedule_note(opt) -> str:
    """How a schedule makes the learning rate in use: "cosine, warm-up 100: ×0.43 of 0.1"."""
    from ..numbers import number

    return f"{opt.schedule.describe()}: ×{number(opt.schedule.factor(max(opt.now, 1)))} of {number(opt.lr)}"


#: with more layers than this, the per-layer multipliers are folded away (one click opens them)
MULTIPLIERS_SHOWN = 8


class ControlsPanel(Panel):
    order = 40

    def __init__(self, run):
        super().__init__(run)
        controls = run.controls
        opt = controls.optimizer
        hyper = opt.hyperparameters()

        def hyperparameter(name):
            return lambda: opt.hyperparameters()[name]

        # one control per hyperparameter the optimizer declares (a plugin's own too), as it declares it
        self.hyper_controls = {}
        schedule = opt.schedule
        for h in opt.hypers:
            if not h.control:
                continue
            lo, hi = h.slider_range(hyper[h.name])
            label = h.label or h.name.replace("_", " ")
            if h.name == "lr" and schedule is not None:  # the value in use at the coming step, and the schedule's part
                # the rate of the step being taken (or the last one taken): what the loss and the history show
                c = ExactControl(controls, "lr", lambda: opt.in_use(opt.hyperparameters(), max(opt.now, 1))["lr"],
                                 set_value=hyperparameter("lr"), explain=lambda: _schedule_note(opt),
                                 description=label, log=h.log, min=lo, max=hi)
            else:
                c = ExactControl(controls, h.name, hyperparameter(h.name), description=label, log=h.log, min=lo,
                                 max=hi)
            c.add_class(f"bpmagic-{h.name.replace('_', '-')}")
            self.hyper_controls[h.name] = c
        self.lr = self.hyper_controls["lr"]
        self.multipliers = {}
        for layer in run.layers:
            m = ExactControl(controls, f"lr_multiplier/{layer}", lambda layer=layer: opt.lr_multipliers.get(layer, 1.0),
                             description=f"layer {layer}: lr ×", min=0.0, max=4.0)
            m.add_class("bpmagic-multiplier")
            self.multipliers[layer] = m
        self.pace = ExactControl(controls, "pace", lambda: controls.pace or 0.0, description="speed (steps/s)",
                                 log=True, min=1.0, max=1000.0, unlimited="full speed")
        self.pace.add_class("bpmagic-pace")

        self.pause = widgets.Button(description="Pause", icon="pause")
        self.step = widgets.Button(description="Step", icon="step-forward", disabled=True)
        self.stop = widgets.Button(description="Stop", icon="stop", button_style="danger")
        self.reset = widgets.Button(description="Reset", icon="undo",
                                    tooltip="Start over from the initial parameters, with the controls as they are")
        self.pause.on_click(self._toggle_pause)
        self.step.on_click(lambda _: run.step_once())
        self.stop.on_click(lambda _: run.stop())
        self.reset.on_click(self._reset)
        for b, cls in ((self.pause, "bpmagic-pause"), (self.step, "bpmagic-step"), (self.stop, "bpmagic-stop"),
                       (self.reset, "bpmagic-reset")):
            b.add_class(cls)
        self.message = widgets.HTML("")
        self.message.add_class("bpmagic-controls-message")
        self.number_controls = [*self.hyper_controls.values(), *self.multipliers.values(), self.pace]
        self.buttons = [self.pause, self.step, self.stop, self.reset]
        self.live_widgets = [*self.number_controls, *self.buttons]
        self._lock = threading.Lock()  # button clicks (kernel thread) and update (trainer thread)
        multipliers = list(self.multipliers.values())
        if len(multipliers) > MULTIPLIERS_SHOWN:  # a deep net's 50 sliders would push speed and the buttons away
            folded = widgets.Accordion(children=[widgets.VBox(multipliers)], selected_index=None,
                                       titles=(f"learning rate × per layer ({len(multipliers)} layers)",))
            folded.add_class("bpmagic-multipliers")
            multipliers = [folded]
        self.widget = widgets.VBox([widgets.HTML("<b>Controls</b> <small>(take effect at the next step)</small>"),
                                    *self.hyper_controls.values(), *multipliers, self.pace,
                                    widgets.HBox(self.buttons), self.message])

    def _toggle_pause(self, _=None):
        if self.run.controls.paused:
            self.run.resume()
        else:
            self.run.pause()
        self._sync_buttons()

    def _reset(self, _=None):
        self.run.reset()
        self._sync_buttons()

    def _sync_buttons(self):
        with self._lock:
            run = self.run
            ended = run.ended
            for c in self.number_controls:
                c.disabled = ended
            self.pause.disabled = self.stop.disabled = ended
            self.stop.button_style = "" if ended else "danger"
            paused = run.controls.paused
            self.pause.description, self.pause.icon = ("Resume", "play") if paused and not ended else ("Pause", "pause")
            self.step.disabled = ended or not paused
            self.message.value = (f"<small>The run {run.outcome}; its controls are off until Reset starts it over."
                                  "</small>" if ended else "")

    def update(self, run):
        """Show values changed elsewhere (from Python, another view) and the run's state."""
        for c in self.number_controls:
            c.follow()
        self._sync_buttons()

    def static_svg(self, width, y):
        from ..numbers import number
        from ..static import svg_text

        def shown(c):
            if c is self.pace:
                return f"speed {'full' if c.value == 0 else number(c.value) + ' steps/s'}"
            if c in self.multipliers.values():
                return f"{c.description}{number(c.value)}"
            return f"{c.description} {number(c.value)}" + (f" ({c.note})" if c.note else "")

        parts = [shown(c) for c in self.hyper_controls.values()]
        if len(self.multipliers) > MULTIPLIERS_SHOWN:  # one line: the changed layers by name, the rest counted
            changed = [c for c in self.multipliers.values() if c.value != 1]
            parts += [shown(c) for c in changed]
            rest = len(self.multipliers) - len(changed)
            parts += [f"{'the other ' if changed else ''}{rest} layers: lr ×1"] if rest else []
        else:
            parts += [shown(c) for c in self.multipliers.values()]
        values = "  ·  ".join(parts + [shown(self.pace)])
        return [svg_text(0, y + 12, "Controls", size=12, weight="bold"), svg_text(0, y + 30, values, size=11)], 36
