"""Optimizers whose hyperparameters can be changed at any time, from any thread, taking effect at the next step.

An optimizer holds its hyperparameters behind a lock; the training step reads one consistent snapshot per step and
passes the values into the compiled graph as inputs, so changing them never recompiles. Only a change of
*structure* (momentum switched on, weight decay turned from zero to non-zero) compiles a new plan once.

Update rules are written with bpmagic ops, so they are traced into the same graph as forward and backward.
Per-group learning-rate multipliers (a group is usually a layer) scale the learning rate of their parameters.

Each optimizer declares its hyperparameters (`hypers`: a `Hyper` each, with its bounds, scale and whether the layer
multiplier scales it); the magic's options, the run's history columns, `changes()` and the dashboard's controls are
read from that declaration, so a plugin optimizer's own hyperparameter gets all of them with no other change.
"""
from __future__ import annotations

import functools
import math
import operator
import threading
from dataclasses import dataclass

__all__ = ["Optimizer", "SGD", "Nesterov", "Adam", "AdamW", "RMSprop", "Adagrad", "Hyper", "get_optimizer",
           "optimizer_class"]


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter of an optimizer: its name (the history's column, `--name` with dashes as the magic's
    option), its default, the values it may take (lo/hi, open or closed), how a dashboard control shows it (label,
    log scale, the slider's range: a (lo, hi) pair or a function of the value in use; widened to hold any value set)
    and whether a layer's learning-rate multiplier scales it (the learning rate does)."""

    name: str
    default: float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    label: str | None = None
    log: bool = False
    slider: object = None
    per_layer: bool = False
    control: bool = True  # shown on the dashboard (an epsilon is not a thing to steer)

    def check(self, value) -> float:
        return _check(self.name, value, self.lo, self.hi, self.lo_open, self.hi_open)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def slider_range(self, value) -> tuple:
        """The dashboard slider's range around the value in use."""
        if callable(self.slider):
            return tuple(self.slider(value))
        if self.slider is not None:
            return tuple(self.slider)
        if self.log and value > 0:  # three decades below, two above
            return 10.0 ** (math.floor(math.log10(value)) - 3), 10.0 ** (math.floor(math.log10(value)) + 2)
        lo = self.lo if self.lo is not None else min(0.0, value)
        return lo, self.hi if self.hi is not None else max(1.0, 10 * abs(value))


LEARNING_RATE = Hyper("lr", 0.01, lo=0, lo_open=True, label="learning rate", log=True, per_layer=True)
CLIP_NORM = Hyper("clip_norm", 1.0, lo=0, lo_open=True, label="clip |gradient| at", log=True)
CLIP_VALUE = Hyper("clip_value", 1.0, lo=0, lo_open=True, label="clip each gradient at", log=True)
WEIGHT_DECAY = Hyper("weight_decay", 0.0, lo=0, label="weight decay", slider=lambda v: (0.0, max(0.1, 10 * v)))


def _check(name, value, lo=None, hi=None, lo_open=False, hi_open=False):
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or (
        hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        raise ValueError(f"{name} must be a finite number {' and '.join(filter(None, [lo_s, hi_s]))}, got {value!r}")
    return v


class Optimizer:
    """Base class. Subclasses declare `hypers` and define `structure`, `state_slots`, `scalars` and `update`."""

    name = "optimizer"
    # True when scalars() depends on the step number (Adam's bias corrections), so it is called every step
    step_dependent = False
    hypers: tuple = (LEARNING_RATE,)
    # the scalars (of scalars()) that a layer's learning-rate multiplier scales
    per_layer_scalars: tuple = ("lr",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        rules = cls.__dict__.get("hyper_rules")
        if rules is not None and "hypers" not in cls.__dict__:  # a plugin written before hypers were declared
            cls.hypers = tuple(LEARNING_RATE if name == "lr" else Hyper(name, 0.0, **bounds)
                               for name, bounds in rules.items())
            del cls.hyper_rules  # the declaration is read through `hypers` from now on

    @property
    def hyper_rules(self) -> dict:
        """name -> Hyper: the declared hyperparameters by name."""
        return {h.name: h for h in self.hypers}

    def __init__(self, **hyper):
        object.__setattr__(self, "hypers", type(self).hypers)  # clipped() adds its thresholds to this one's
        object.__setattr__(self, "clipping", (False, False))  # (by global norm, by value)
        object.__setattr__(self, "schedule", None)  # a learning-rate schedule (train/schedules.py), or None
        object.__setattr__(self, "now", 0)  # the step being taken, or the last one taken (a schedule's position)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_hyper", {})
        object.__setattr__(self, "_multipliers", {})
        object.__setattr__(self, "version", 0)
        self.set(**hyper)

    # -- live hyperparameters -------------------------------------------------------------------------------------
    def set(self, **changes):
        """Change hyperparameters (validated; an invalid value raises ValueError and changes nothing)."""
        checked = {}
        for k, v in changes.items():
            if k not in self.hyper_rules:
                raise ValueError(f"{type(self).__name__} has no hyperparameter {k!r}; it has "
                                 f"{', '.join(self.hyper_rules)}")
            checked[k] = self._validate(k, v)
        with self._lock:
            self._hyper.update(checked)
            object.__setattr__(self, "version", self.version + 1)

    def _validate(self, key, value):
        return self.hyper_rules[key].check(value)

    def __getattr__(self, key):
        hyper = self.__dict__.get("_hyper", {})
        if key in hyper:
            return hyper[key]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {key!r}")

    def __setattr__(self, key, value):
        if any(h.name == key for h in self.hypers):
            self.set(**{key: value})
        else:
            object.__setattr__(self, key, value)

    def hyperparameters(self) -> dict:
        """A consistent snapshot of all hyperparameters, with the learning-rate multipliers under 'lr_multipliers'."""
        return self.snapshot()[1]

    def snapshot(self):
        """(version, hyperparameters): the version changes whenever any hyperparameter or multiplier does."""
        with self._lock:
            snap = dict(self._hyper)
            snap["lr_multipliers"] = dict(self._multipliers)
            return self.version, snap

    def set_lr_multiplier(self, group: str, value: float):
        """Scale the learning rate of the parameters in `group` (a layer) by `value` (1 = no change)."""
        v = _check(f"lr multiplier of {group!r}", value, lo=0)
        with self._lock:
            self._multipliers[str(group)] = v
            object.__setattr__(self, "version", self.version + 1)

    def set_if(self, name: str, expected: float, value) -> bool:
        """Set hyperparameter `name` (or "lr_multiplier/<group>") to `value` only if it still holds `expected`,
        in one step under the lock: a value decided on an old reading never overwrites a newer one. False (and
        nothing changed) when it no longer holds `expected`; ValueError for an invalid value."""
        group = name[len("lr_multiplier/"):] if name.startswith("lr_multiplier/") else None
        if group is not None:
            v = _check(f"lr multiplier of {group!r}", value, lo=0)
        elif name in self.hyper_rules:
            v = self._validate(name, value)
        else:
            raise ValueError(f"{type(self).__name__} has no hyperparameter {name!r}")
        with self._lock:
            current = self._multipliers.get(group, 1.0) if group is not None else self._hyper.get(name)
            if current != expected:
                return False
            if group is not None:
                self._multipliers[group] = v
            else:
                self._hyper[name] = v
            object.__setattr__(self, "version", self.version + 1)
        return True

    @property
    def lr_multipliers(self) -> dict:
        with self._lock:
            return dict(self._multipliers)

    def clipped(self, norm=None, value=None) -> "Optimizer":
        """Clip the gradients before each update (as in the step graph, before the optimizer reads them): each entry
        to [-value, value], then all the parameters' gradients together scaled down to a global norm of at most
        `norm` (optax.clip_by_value, optax.clip_by_global_norm). The thresholds are live hyperparameters (clip_value,
        clip_norm: a dashboard control and a history column each); `run.history["clipped"]` marks the steps where
        clipping engaged. Returns the optimizer."""
        added, hyper = [], {}
        if value is not None:
            added.append(CLIP_VALUE)
            hyper["clip_value"] = value
        if norm is not None:
            added.append(CLIP_NORM)
            hyper["clip_norm"] = norm
        object.__setattr__(self, "hypers", tuple(h for h in self.hypers if h not in added) + tuple(added))
        clipping = (self.clipping[0] or norm is not None, self.clipping[1] or value is not None)
        object.__setattr__(self, "clipping", clipping)
        self.set(**hyper)
        return self

    def clip(self, grads: dict, s: dict) -> tuple:
        """(clipped gradients, measurements [global norm, clipped?]) for the step graph: `s` holds the thresholds
        as traced scalars. The measurements are the norm before clipping by it, and 1 where clipping engaged."""
        from .. import ops
        from .stats import sum_of_squares

        by_norm, by_value = self.clipping
        engaged = []
        if by_value:
            biggest = functools.reduce(ops.maximum, (ops.max(ops.abs(g)) for g in grads.values()))
            engaged.append(ops.greater(biggest, s["clip_value"]))
            grads = {n: ops.clip(g, -s["clip_value"], s["clip_value"]) for n, g in grads.items()}
        norm = ops.sqrt(functools.reduce(operator.add, (sum_of_squares(g) for g in grads.values())))
        if by_norm:
            engaged.append(ops.greater(norm, s["clip_norm"]))
            scale = s["clip_norm"] / ops.maximum(norm, s["clip_norm"])
            # scaled in the scale's float (float32 at least): in float16 a scale under 6e-5 would lose digits, and
            # one under 3e-8 would be 0
            grads = {n: g * scale if g.dtype == scale.dtype else ops.astype(g * scale, g.dtype)
                     for n, g in grads.items()}
        flag = engaged[0] if len(engaged) == 1 else ops.logical_or(*engaged)
        return grads, [norm, ops.astype(flag, norm.dtype)]

    def scheduled(self, schedule) -> "Optimizer":
        """Follow a learning-rate schedule (train/schedules.py: a Schedule, or a name such as "cosine"): at step n
        the learning rate in use is the one set × schedule.factor(n). Returns the optimizer."""
        from .schedules import Schedule, make_schedule

        schedule = make_schedule(schedule) if isinstance(schedule, str) else schedule
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a bp.train.schedules.Schedule or a name, got {schedule!r}")
        object.__setattr__(self, "schedule", schedule)
        return self

    @property
    def changes_every_step(self) -> bool:
        """Whether the step graph's scalars change from one step to the next (bias corrections, a schedule)."""
        return self.step_dependent or self.schedule is not None

    def in_use(self, hyper: dict, step: int) -> dict:
        """The hyperparameters in use at step `step`: those set, the learning rate scaled by the schedule."""
        if self.schedule is None:
            return hyper
        return {**hyper, "lr": hyper["lr"] * self.schedule.factor(step)}

    def set_in_use(self, name: str, value):
        """Set `name` so that its value in use at the coming step is `value`: with a schedule, the learning rate set
        becomes value / factor, so that the schedule goes on from the value asked for, scaled."""
        factor = self.schedule.factor(self.now + 1) if self.schedule is not None and name == "lr" else 1.0
        value = self._validate(name, value)
        self.set(**{name: value / factor if factor > 0 else value})

    def step_scalars(self, hyper, step: int) -> dict:
        """scalars() of the hyperparameters in use, and the clipping thresholds: every per-step scalar input of the
        step graph."""
        hyper = self.in_use(hyper, step)
        out = self.scalars(hyper, step)
        out.update({k: hyper[k] for k, on in zip(("clip_norm", "clip_value"), self.clipping) if on})
        return out

    # -- what a compiled step needs --------------------------------------------------------------------------------
    def structure(self, hyper) -> tuple:
        """What decides the graph's shape (not its numbers): a new structure compiles a new plan."""
        return ()

    def state_slots(self, structure) -> tuple:
        """Names of the per-parameter state arrays (each shaped like its parameter)."""
        return ()

    def initial_state(self, slot: str) -> float:
        """The value a state array starts from (Adagrad's accumulator starts above zero)."""
        return 0.0

    def scalars(self, hyper, step: int) -> dict:
        """Scalar inputs of step number `step` (1-based), shared by all parameters.

        Those named in `per_layer_scalars` are multiplied by the parameter's group learning-rate multiplier."""
        return {"lr": hyper["lr"]}

    def update(self, p, g, state: dict, s: dict, structure):
        """(new p, new state) for one parameter. `s` holds its scalars as traced values."""
        raise NotImplementedError

    def __repr__(self):
        hyper = ", ".join(f"{k}={v:g}" for k, v in self.hyperparameters().items() if k != "lr_multipliers")
        return f"{type(self).__name__}({hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy ball or Nesterov) and L2 weight decay.

    Matches torch.optim.SGD: v = momentum * v + g; p -= lr * (g + momentum * v if nesterov else v).
    """

    name = "sgd"
    hypers = (LEARNING_RATE, Hyper("momentum", 0.0, lo=0, hi=1, hi_open=True, slider=(0.0, 0.99)), WEIGHT_DECAY)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay)
        object.__setattr__(self, "nesterov", bool(nesterov))

    def structure(self, hyper):
        return (hyper["momentum"] > 0, self.nesterov and hyper["momentum"] > 0, hyper["weight_decay"] > 0)

    def state_slots(self, structure):
        return ("velocity",) if structure[0] else ()

    def scalars(self, hyper, step):
        return {"lr": hyper["lr"], "momentum": hyper["momentum"], "weight_decay": hyper["weight_decay"]}

    def update(self, p, g, state, s, structure):
        use_momentum, nesterov, decay = structure
        if decay:
            g = g + s["weight_decay"] * p
        if not use_momentum:
            return p - s["lr"] * g, {}
        v = s["momentum"] * state["velocity"] + g
        d = g + s["momentum"] * v if nesterov else v
        return p - s["lr"] * d, {"velocity": v}


class Adam(Optimizer):
    """Adam; with weight decay, decoupled (AdamW) by default. Matches torch.optim.Adam / AdamW."""

    name = "adam"
    step_dependent = True
    hypers = (LEARNING_RATE, Hyper("beta1", 0.9, lo=0, hi=1, hi_open=True, label="β1 (momentum)", slider=(0.5, 0.999)),
              Hyper("beta2", 0.999, lo=0, hi=1, hi_open=True, label="β2", slider=(0.9, 0.9999)),
              Hyper("eps", 1e-8, lo=0, lo_open=True, control=False), WEIGHT_DECAY)
    per_layer_scalars = ("lr", "lr_decay")

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=True):
        super().__init__(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)
        object.__setattr__(self, "decoupled", bool(decoupled))

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    def structure(self, hyper):
        return (hyper["weight_decay"] > 0, self.decoupled)

    def state_slots(self, structure):
        return ("m", "v")

    def scalars(self, hyper, step):
        b1, b2 = hyper["beta1"], hyper["beta2"]
        # bias corrections folded into two scalars, as PyTorch does
        return {"lr": hyper["lr"] / (1 - b1 ** step), "lr_decay": hyper["lr"] * hyper["weight_decay"],
                "beta1": b1, "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2,
                "inv_sqrt_bc2": 1 / math.sqrt(1 - b2 ** step), "eps": hyper["eps"],
                "weight_decay": hyper["weight_decay"]}

    def update(self, p, g, state, s, structure):
        from .. import ops

        decay, decoupled = structure
        if decay and not decoupled:
            g = g + s["weight_decay"] * p
        m = s["beta1"] * state["m"] + s["one_minus_beta1"] * g
        v = s["beta2"] * state["v"] + s["one_minus_beta2"] * (g * g)
        if decay and decoupled:
            p = p - s["lr_decay"] * p
        denom = ops.sqrt(v) * s["inv_sqrt_bc2"] + s["eps"]
        return p - s["lr"] * (m / denom), {"m": m, "v": v}


class Nesterov(SGD):
    """SGD with Nesterov momentum (0.9 unless given): the gradient is taken where momentum is about to carry the
    parameters (Sutskever et al., 2013), as torch.optim.SGD(nesterov=True) and optax.sgd(nesterov=True)."""

    name = "nesterov"

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Hinton's 2012 lecture): each parameter's step divided by a running root mean square of its
    gradients: v = alpha v + (1 - alpha) g²; p -= lr g / (√v + eps). As torch.optim.RMSprop and
    optax.rmsprop(eps_in_sqrt=False); weight decay is L2 (added to the gradient)."""

    name = "rmsprop"
    hypers = (LEARNING_RATE, Hyper("alpha", 0.9, lo=0, hi=1, hi_open=True, label="α (averaging)", slider=(0.5, 0.999)),
              Hyper("eps", 1e-8, lo=0, lo_open=True, control=False), WEIGHT_DECAY)

    def __init__(self, lr=0.001, alpha=0.9, eps=1e-8, weight_decay=0.0):
        super().__init__(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)

    def structure(self, hyper):
        return (hyper["weight_decay"] > 0,)

    def state_slots(self, structure):
        return ("square_avg",)

    def scalars(self, hyper, step):
        return {"lr": hyper["lr"], "alpha": hyper["alpha"], "one_minus_alpha": 1 - hyper["alpha"],
                "eps": hyper["eps"], "weight_decay": hyper["weight_decay"]}

    def update(self, p, g, state, s, structure):
        from .. import ops

        if structure[0]:
            g = g + s["weight_decay"] * p
        v = s["alpha"] * state["square_avg"] + s["one_minus_alpha"] * (g * g)
        return p - s["lr"] * (g / (ops.sqrt(v) + s["eps"])), {"square_avg": v}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): each parameter's step divided by the root of the sum of all its squared
    gradients so far: s += g²; p -= lr g / √(s + eps), s starting from `initial_accumulator_value`. As
    optax.adagrad; weight decay is L2 (added to the gradient)."""

    name = "adagrad"
    hypers = (LEARNING_RATE, Hyper("eps", 1e-7, lo=0, lo_open=True, control=False), WEIGHT_DECAY)

    def __init__(self, lr=0.01, eps=1e-7, weight_decay=0.0, initial_accumulator_value=0.1):
        super().__init__(lr=lr, eps=eps, weight_decay=weight_decay)
        # the sum of squares it starts from: below 0, its root is nan wherever the gradient is small
        _check("initial_accumulator_value", initial_accumulator_value, lo=0)
        object.__setattr__(self, "initial_accumulator_value", float(initial_accumulator_value))

    def structure(self, hyper):
        return (hyper["weight_decay"] > 0,)

    def state_slots(self, structure):
        return ("sum_sq",)

    def initial_state(self, slot):
        return self.initial_accumulator_value

    def scalars(self, hyper, step):
        return {"lr": hyper["lr"], "eps": hyper["eps"], "weight_decay": hyper["weight_decay"]}

    def update(self, p, g, state, s, structure):
        from .. import ops

        if structure[0]:
            g = g + s["weight_decay"] * p
        acc = state["sum_sq"] + g * g
        return p - s["lr"] * (g / ops.sqrt(acc + s["eps"])), {"sum_sq": acc}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p -= lr·wd·p beside Adam's step, instead of
    wd·p added to the gradient, so the decay is not rescaled by Adam's denominator. bpmagic's `adam` decays this
    way too when given --weight-decay; `adamw` differs in its default, weight decay 0.01, as torch.optim.AdamW
    and optax.adamw (though optax's default is 1e-4)."""

    name = "adamw"

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=True)


def optimizer_class(name: str) -> type:
    """An optimizer class by entry-point name (bpmagic.optimizers: 'sgd', 'adam', or a plugin's)."""
    from ..plugins import load_group

    classes = load_group("bpmagic.optimizers")
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(sorted(classes))}")
    return classes[name]


def get_optimizer(name: str, **hyper) -> Optimizer:
    """An optimizer by entry-point name (bpmagic.optimizers: 'sgd', 'adam', or a plugin's)."""
    return optimizer_class(name)(**hyper)
