"""The %%backprop cell magic: a thin client of bp.fit.

It parses the annotated cell (cell.py), binds Params, Inputs and Targets from the notebook's namespace, starts
training in a worker thread, and — unless --background — waits for it while showing progress, so Run All,
nbclient and papermill see the trained result. Every error a user can cause is one short message naming the
cell line (IPython's UsageError), never a traceback through bpmagic.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import math
import sys
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Float, Int, Unicode

from . import live_comms, ops
from .backends import is_array
from .cell import CellError, layer, parse_cell
from .errors import BackpropError, did_you_mean
from .initializers import initializers
from .ops import constants
from .tracing import numpy_dispatch
from .train import fit, optim
from .train.describe import format_loss, status_text
from .train.metrics import report as report_metric
from .train.layers import layer_of

_DTYPES = ("float32", "float64")
_BUILTINS = frozenset(dir(builtins))


def _usage(error) -> UsageError:
    return UsageError(str(error))


def cell_namespace(user_ns: dict, dtype=np.float32) -> dict:
    """Globals of a cell's loss function: the notebook's names, with bpmagic's ops as bare names.

    bpmagic's ops win over imported names (`from numpy import zeros` would make float64 constants), but functions
    the user defined in the notebook itself win over bpmagic's, and so does data the notebook holds under an op's
    name (an array called `angle` or `gradient` stays the user's). Constants (zeros, ones, ...) make floats of the
    cell's `dtype`. Python's built-ins keep their meaning (`sum(losses)` adds a list, `max(2, n)` is a number):
    `abs` and `round` work on traced values as they do on arrays, and np.sum / h.max() reduce an array.
    """
    ns = dict(user_ns)
    for name, op in {**ops.registry(), **constants.for_cell(dtype)}.items():
        if name in _BUILTINS:
            continue
        mine = ns.get(name)
        if mine is None or callable(mine) and getattr(mine, "__module__", None) != "__main__":
            ns[name] = op
    ns["layer"] = layer
    ns["__bp_metric__"] = report_metric  # a Metric line: `acc: Metric = ...`
    # a[i] and .take(...) in the body (cell.py): a plain array indexed by traced integers
    ns.update(__bp_index__=numpy_dispatch.index, __bp_take__=numpy_dispatch.take, __bp_slice__=slice)
    return ns


def _eval(node, namespace, prog, what):
    expr = ast.Expression(node)
    ast.fix_missing_locations(expr)
    try:
        return eval(compile(expr, prog.filename, "eval"), namespace)
    except NameError as e:
        hint = did_you_mean(e.name, namespace) if getattr(e, "name", None) else ""
        raise CellError(f"line {node.lineno}: {what}: {e}; define it in an earlier cell.{hint}\n"
                        f"    {prog.line(node.lineno)}") from None
    except BackpropError:
        raise
    except Exception as e:
        raise CellError(f"line {node.lineno}: {what}: {type(e).__name__}: {e}\n    {prog.line(node.lineno)}"
                        ) from None


def bind_data(prog, user_ns, dtype):
    """name -> array for each Input and Target; floats converted to `dtype`; lengths checked."""
    data = {}
    for name, node, lineno in prog.inputs + prog.targets:
        value = _eval(node, user_ns, prog, f"{name} = {ast.unparse(node)}")
        if not is_array(value):
            try:
                value = np.asarray(value)
            except Exception:
                value = None
            if value is None or value.dtype == object:
                raise CellError(f"line {lineno}: {name} must be an array (or nested lists of numbers), got "
                                f"{type(value).__name__}\n    {prog.line(lineno)}")
        if value.dtype.kind in "USO":
            sample = ", ".join(repr(v) for v in value.ravel()[:3].tolist())
            what = "a Target" if any(n == name for n, _, _ in prog.targets) else "an Input"
            raise CellError(f"line {lineno}: {name} holds {'strings' if value.dtype.kind in 'US' else 'objects'} "
                            f"({sample}, ...): {what} must be numbers. For class labels, number them: "
                            f"classes, {name}_ids = np.unique({ast.unparse(node)}, return_inverse=True), then "
                            f"`{name}: {what.split()[1]} = {name}_ids` (cross_entropy takes class numbers)\n    {prog.line(lineno)}")
        if value.dtype.kind == "f" and value.dtype != dtype:
            value = value.astype(dtype)
        if value.ndim == 0:
            raise CellError(f"line {lineno}: {name} is a scalar; Inputs and Targets are data sets batched along "
                            f"axis 0\n    {prog.line(lineno)}")
        data[name] = value
    lengths = {n: int(a.shape[0]) for n, a in data.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{n} {tuple(data[n].shape)}" for n in data)
        raise CellError(f"Inputs and Targets must have the same length along axis 0: {detail}. Check that they "
                        "come from the same data set (and split them the same way)")
    return data


@dataclass
class Bound:
    """Arrays bound to a cell's declarations (Params or Buffers), one per trained array: a declaration of a list or
    a dict of arrays (`Ws: Param = [randn(32, 32) for _ in range(20)]`) gives one per entry, named Ws[0], Ws[1], ...
    (blocks['q'] for a dict), each its own layer."""

    arrays: dict  # name -> the array to train: the namespace's own when it fits, else `fresh`'s
    fresh: dict  # name -> the value its initialiser gives with the run's seed (what Reset goes back to)
    reshaped: list  # (name, old value, new shape): values in the namespace that no longer fit their declaration
    entries: dict = field(default_factory=dict)  # a list or dict declaration's name -> its entries' names, in form

    def namespace(self, arrays: dict) -> dict:
        """The declared names as the notebook sees them: an array, or a list or dict of the entries' arrays."""
        out = {}
        for name, form in self.entries.items():
            out[name] = [arrays[n] for n in form] if isinstance(form, list) else {k: arrays[n] for k, n in form.items()}
        out.update({n: a for n, a in arrays.items() if n in self.arrays and not self._entry(n)})
        return out

    def view(self, traced: dict) -> dict:
        """The loss function's params: the traced entries, and each list or dict declaration as a list or dict."""
        return {**traced, **self.namespace(traced)}

    def _entry(self, name) -> bool:
        return any(name in (form if isinstance(form, list) else form.values()) for form in self.entries.values())


def bind_params(prog, user_ns, *, seed, dtype, reset):
    """(Bound, groups): the namespace's trained array when it fits, else a fresh one from the initialiser. Params
    whose names end in the same number form a layer (W1, b1), as do those declared in `with layer(name):`; each
    entry of a list or dict of Params is a layer of its own (Ws[3])."""
    bound = _bind(prog, prog.params, "Param", user_ns, seed, dtype, reset)
    groups = {}
    for spec in prog.params:
        form = bound.entries.get(spec.name)
        names = [spec.name] if form is None else form if isinstance(form, list) else list(form.values())
        for name in names:
            groups[name] = spec.layer or (layer_of(spec.name) if form is None else name)
    return bound, groups


def bind_buffers(prog, user_ns, *, seed, dtype, reset):
    """Bound Buffers, as for Params: the value each reached when the cell last ran, if it fits."""
    return _bind(prog, prog.buffers, "Buffer", user_ns, seed, dtype, reset)


def _bind(prog, specs, kind, user_ns, seed, dtype, reset) -> Bound:
    init_ns = {**cell_namespace(user_ns, dtype), **initializers(np.random.default_rng(seed), dtype)}
    bound = Bound({}, {}, [])
    for spec in specs:
        value = _eval(spec.init, init_ns, prog, f"the initial value of {spec.name}")
        fresh = _entries(spec, value, kind, prog, dtype)  # entry name -> array
        old = user_ns.get(spec.name)
        if isinstance(value, (list, tuple, dict)):
            form = list(fresh) if not isinstance(value, dict) else dict(zip(value, fresh))
            bound.entries[spec.name] = form
            olds = dict(zip(fresh, old if isinstance(value, (list, tuple)) else old.values())) \
                if _same_form(old, value) else None
        else:
            olds = {spec.name: old}
        bound.fresh.update(fresh)
        fits = not reset and olds is not None and all(
            is_array(o) and o.dtype.kind == "f" and tuple(o.shape) == tuple(fresh[n].shape) for n, o in olds.items())
        if fits:
            bound.arrays.update({n: o if o.dtype == dtype else o.astype(dtype) for n, o in olds.items()})
            continue
        if not reset and old is not None and (olds is None or any(is_array(o) and o.dtype.kind == "f"
                                                                  for o in olds.values())):
            shape = [tuple(a.shape) for a in fresh.values()] if spec.name in bound.entries else \
                tuple(fresh[spec.name].shape)
            bound.reshaped.append((spec.name, old, shape))
        bound.arrays.update({n: a.copy() for n, a in fresh.items()})
    return bound


def _entries(spec, value, kind, prog, dtype) -> dict:
    """name -> array for a declaration's value: itself, or each entry of a list or dict of arrays."""
    if isinstance(value, (list, tuple, dict)):
        if kind != "Param":
            raise CellError(f"line {spec.lineno}: declare each {kind} by itself (a list or dict of them is for "
                            f"Params)\n    {prog.line(spec.lineno)}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        named = [(f"{spec.name}[{k!r}]", v) for k, v in items]
        if not named:
            raise CellError(f"line {spec.lineno}: {spec.name} is an empty {type(value).__name__}: a list or dict of "
                            f"Params needs at least one array\n    {prog.line(spec.lineno)}")
    else:
        named = [(spec.name, value)]
    out = {}
    for name, v in named:
        if not is_array(v) and not isinstance(v, (int, float)):
            raise CellError(f"line {spec.lineno}: the initial value of {kind} {name} must be an array, got "
                            f"{type(v).__name__}\n    {prog.line(spec.lineno)}")
        out[name] = np.asarray(v, dtype) if not is_array(v) or v.dtype != dtype else v
    return out


def _same_form(old, value) -> bool:
    """Whether the namespace's `old` is a list (or dict) as long as (with the keys of) the declared `value`."""
    if isinstance(value, dict):
        return isinstance(old, dict) and list(old) == list(value)
    return isinstance(old, (list, tuple)) and len(old) == len(value)


def make_loss_fn(prog, user_ns, dtype=np.float32, bound: Bound | None = None):
    """The cell as `loss_fn(params, *batch)` (with Buffers `loss_fn(params, buffers, *batch) -> (loss,
    new_buffers)`), checking that the Loss is a scalar. With `bound`, lists and dicts of Params reach the cell as
    lists and dicts."""
    inner = prog.loss_function(cell_namespace(user_ns, dtype))

    def loss_fn(params, *args):
        value = inner(bound.view(params) if bound is not None and bound.entries else params, *args)
        loss = value[0] if prog.buffers else value
        shape = tuple(getattr(loss, "shape", ()))
        if shape != ():
            raise CellError(f"line {prog.loss_lineno}: the Loss must be a scalar, but {prog.loss_name} has shape "
                            f"{shape}; reduce it, e.g. mean(...)\n    {prog.line(prog.loss_lineno)}")
        return value

    loss_fn.__signature__ = inspect.signature(inner)  # traced graphs name the batch after the cell's Inputs
    return loss_fn


def make_optimizer(kind: str, given: dict):
    """The optimizer `kind` ("sgd", "momentum" — SGD with momentum 0.9 unless given —, "adam" or a plugin's) with
    the hyperparameters `given` (name -> value; those it does not declare are one message naming the ones it does)."""
    cls = optim.optimizer_class("sgd" if kind == "momentum" else kind)
    declared = {h.name: h for h in cls.hypers}
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise UsageError(f"{', '.join(declared[n].option if n in declared else '--' + n.replace('_', '-') for n in unknown)}"
                         f": the {kind} optimizer has no such hyperparameter; it has "
                         f"{', '.join(h.option for h in cls.hypers)}")
    if kind == "momentum":
        given = {"momentum": 0.9, **given}
    optimizer = cls()  # its defaults, then what was given, checked against its declaration
    optimizer.set(**given)
    return optimizer


def make_schedule(args, per_epoch: int):
    """The schedule the options ask for (--schedule and its own options; one that it does not take is a message)."""
    from .train import schedules

    takes = {"step": {"decay", "decay_every"}, "exponential": {"decay", "decay_every"}, "cosine": {"warmup"},
             "plateau": {"decay", "plateau_patience"}}.get(args.schedule, set())
    for name in ("warmup", "decay", "decay_every", "plateau_patience"):
        if getattr(args, name) is not None and name not in takes:
            uses = [s for s, opts in (("step", "decay decay_every"), ("exponential", "decay decay_every"),
                                      ("cosine", "warmup"), ("plateau", "decay plateau_patience")) if name in opts]
            raise UsageError(f"--{name.replace('_', '-')} goes with --schedule {' or '.join(uses)}, not "
                             f"{args.schedule}")
    if args.schedule in ("step", "exponential"):
        return schedules.make_schedule(args.schedule, every=args.decay_every or per_epoch,
                                       decay=0.5 if args.decay is None else args.decay)
    if args.schedule == "cosine":
        return schedules.Cosine(warmup=args.warmup or 0)
    if args.schedule == "plateau":
        return schedules.Plateau(factor=0.1 if args.decay is None else args.decay, patience=args.plateau_patience or 10)
    return schedules.make_schedule(args.schedule)


@magics_class
class Backprop(Magics):
    """Defaults of %%backprop options: `%config Backprop.epochs = 500`, `%config Backprop.lr = 0.1`, ..."""

    epochs = Int(100, help="Epochs to train when --steps is not given.").tag(config=True)
    lr = Float(0.1, help="Learning rate.").tag(config=True)
    optimizer = Unicode("sgd", help="sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad (or a plugin's)."
                        ).tag(config=True)
    momentum = Float(0.0, help="Momentum (sgd, momentum).").tag(config=True)
    weight_decay = Float(0.0, help="Weight decay.").tag(config=True)
    batch_size = Int(32, help="Examples per step (capped at the data set size).").tag(config=True)
    backend = Unicode("auto", help="auto | numpy | cupy.").tag(config=True)
    seed = Int(0, help="Seed for initialisers and shuffling.").tag(config=True)
    dtype = Unicode("float32", help="float32 | float64.").tag(config=True)
    pace = Float(0.0, help="Steps per second at most (0: full speed).").tag(config=True)
    dashboard = Bool(True, help="Show the live dashboard under the cell.").tag(config=True)
    progress_interval = Float(0.5, help="Seconds between text progress updates.").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.cell_count = 0
        self._trained_by: dict = {}  # Param or Buffer name -> (--name of the run that trained it, weakref to it)

    @magic_arguments()
    @argument("--epochs", type=int, default=None,
              help="epochs to train (default: Backprop.epochs; with --background and no --steps: until Stop)")
    @argument("--steps", type=int, default=None, help="train for this many steps instead of epochs")
    @argument("--pace", type=float, default=None,
              help="at most this many steps per second, slow enough to watch (default: full speed)")
    @argument("--lr", type=float, default=None, help="learning rate (changeable while training)")
    @argument("--optimizer", default=None, help="sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad")
    @argument("--momentum", type=float, default=None, help="momentum for sgd / momentum")
    @argument("--weight-decay", type=float, default=None, help="weight decay")
    @argument("--clip-norm", type=float, default=None, metavar="MAX",
              help="scale the gradients down to a global norm of at most MAX before each update (live: clip_norm)")
    @argument("--clip-value", type=float, default=None, metavar="MAX",
              help="clip each gradient entry to [-MAX, MAX] before each update (live: clip_value)")
    @argument("--schedule", default=None, choices=("constant", "step", "exponential", "cosine", "onecycle", "plateau"),
              help="a learning-rate schedule: the rate set × its factor at each step (live changes scale it)")
    @argument("--warmup", type=int, default=None, metavar="STEPS", help="with --schedule cosine: a linear warm-up")
    @argument("--decay", type=float, default=None, metavar="FACTOR",
              help="with --schedule step / exponential (default 0.5) or plateau (default 0.1): the factor")
    @argument("--decay-every", type=int, default=None, metavar="STEPS",
              help="with --schedule step / exponential: how many steps one --decay takes (default: an epoch)")
    @argument("--plateau-patience", type=int, default=None, metavar="EPOCHS",
              help="with --schedule plateau: epochs without improvement before the rate drops (default 10)")
    @argument("--metrics", nargs="+", default=[], metavar="NAME",
              help="metrics computed in the step beside the loss: accuracy (a cell's Metric lines are added too)")
    @argument("--early-stop", type=int, default=None, metavar="EPOCHS",
              help="end the run when the monitored number has not improved for EPOCHS epochs")
    @argument("--monitor", default=None, metavar="NAME",
              help="what --early-stop watches: val_loss (default with --validate), loss, accuracy, val_accuracy, ...")
    @argument("--restore-best", action="store_true", help="with --early-stop: end with the best epoch's parameters")
    @argument("--hyper", action="append", default=[], metavar="NAME=VALUE",
              help="any hyperparameter the optimizer declares (--hyper beta2=0.99; a plugin optimizer's own too)")
    @argument("--batch-size", type=int, default=None, help="examples per step")
    @argument("--backend", default=None, help="auto | numpy | cupy")
    @argument("--seed", type=int, default=None, help="seed for initialisers and shuffling")
    @argument("--name", default="_bp", help="variable that receives the Run (default _bp)")
    @argument("--reset", action="store_true", help="re-initialise Params instead of continuing training")
    @argument("--background", action="store_true", help="return at once; the Run trains in the background")
    @argument("--no-dashboard", action="store_true", help="text progress instead of the live dashboard")
    @argument("--validate", nargs=2, metavar=("X", "Y"), default=None,
              help="names of validation Inputs and Targets, evaluated after each epoch")
    @argument("--dtype", default=None, help="float32 | float64")
    @argument("--check", choices=("jax", "fd"), default=None,
              help="before training, check the gradients on the first batch against JAX or finite differences")
    @argument("--export", metavar="PATH", default=None,
              help="after training, write the model to PATH as ONNX (bp.export_onnx)")
    @cell_magic
    def backprop(self, line, cell):
        """Train the model written in this cell by backpropagation, live.

        Annotate names in the cell: `W: Param = randn(2, 8)` (trained; keeps its value on re-runs unless
        --reset), `x: Input = X` and `y: Target = Y` (data sets from the notebook, batched along axis 0),
        `loss: Loss = ...` (the scalar to minimise), `m: Buffer = zeros(8)` (kept between steps, not trained:
        reassign it in the cell, e.g. batch_norm's running averages). All of bpmagic's ops are bare names (tanh,
        relu, softmax, cross_entropy, conv2d, ...), as are the initialisers randn, zeros, ones, normal and
        uniform, and the constants (zeros, ones, full, eye, arange, linspace, ..._like) in the body; Python's
        built-ins (sum, max, min, round, abs) keep their meaning; np.tanh, np.sum, h.mean() and friends work on
        traced values. Params whose names end in the same number form a layer (W1, b1); `with layer("name"):`
        names one. --check jax|fd checks the gradients on the first batch before training; --export PATH writes
        the trained model as ONNX.
        The cell blocks until training ends; --background returns at once (and without --steps or --epochs
        trains until Stop); --pace N takes at most N steps a second, slow enough to watch and steer. The Run is
        stored in --name (default _bp); its dashboard's Reset starts it over from the initialisers.
        """
        args = parse_argstring(self.backprop, line)
        opts = self._options(args)
        self.cell_count += 1
        user_ns = self.shell.user_ns
        try:
            prog = parse_cell(cell, filename=f"<backprop cell {self.cell_count}>")
            data = bind_data(prog, user_ns, opts["dtype"])
            bound, groups = bind_params(prog, user_ns, seed=opts["seed"], dtype=opts["dtype"], reset=args.reset)
            bound_buffers = bind_buffers(prog, user_ns, seed=opts["seed"], dtype=opts["dtype"], reset=args.reset)
            params, buffers = bound.arrays, bound_buffers.arrays
            self._say_reinitialised(bound.reshaped + bound_buffers.reshaped, args.name)
            validation = None
            if args.validate:
                validation = self._validation(args.validate, user_ns, prog, opts["dtype"])
            optimizer = make_optimizer(opts["optimizer"], opts["hyper"])
            if args.clip_norm is not None or args.clip_value is not None:
                optimizer.clipped(norm=args.clip_norm, value=args.clip_value)
            if args.schedule is not None:
                n = len(next(iter(data.values())))
                optimizer.scheduled(make_schedule(args, math.ceil(n / min(opts["batch_size"], n))))
            loss_fn = make_loss_fn(prog, user_ns, opts["dtype"], bound)
            if args.monitor is not None:
                measured = ["loss", *args.metrics, *(n for n, _ in prog.metrics)]
                measured += [f"val_{m}" for m in measured] if args.validate else []
                if args.monitor not in measured:
                    raise UsageError(f"--monitor {args.monitor}: this run measures {', '.join(measured)}"
                                     + ("" if args.validate else " (val_... need --validate X Y)"))
            if args.check:
                from .check import check_model

                batch = [data[n][:opts["batch_size"]] for n in prog.data_names]
                print(check_model(loss_fn, params, batch, buffers, against=args.check, layers=groups))
            until_stopped = args.background and args.steps is None and args.epochs is None
            run = fit(loss_fn, params, tuple(data[n] for n in prog.data_names),
                      epochs=None if args.steps or until_stopped else opts["epochs"],
                      steps=math.inf if until_stopped else args.steps,
                      batch_size=opts["batch_size"], optimizer=optimizer, backend=opts["backend"],
                      seed=opts["seed"], groups=groups, validation=validation, name=args.name, background=True,
                      buffers=buffers or None, pace=opts["pace"] or None, initial_params=bound.fresh,
                      metrics=args.metrics, early_stop=args.early_stop, monitor=args.monitor,
                      restore_best=args.restore_best)
        except (BackpropError, ValueError) as e:
            raise _usage(e) from None
        trained = {**bound.namespace(run.params), **run.buffers}  # the very arrays the worker updates in place
        user_ns.update(trained)
        for name, value in trained.items():
            self._trained_by[name] = (args.name, [weakref.ref(a) for a in _arrays_of(value)])
        user_ns[args.name] = run
        show_dashboard = opts["dashboard"] and not args.no_dashboard and has_widget_frontend(self.shell)
        if show_dashboard:
            from IPython.display import display

            from .dashboard import Dashboard

            run.dashboard = Dashboard(run)
            display(run.dashboard)
        if args.background:
            if args.export:
                print(f"bpmagic: --export applies when a cell waits for its run; with --background call "
                      f"bp.export_onnx({args.name}, {args.export!r}) once it has ended")
            return None
        self._wait(run, text=not show_dashboard)
        if args.export and run.status in ("finished", "stopped"):
            from .onnx_export import export_onnx

            try:
                export_onnx(run, args.export)
            except BackpropError as e:
                raise _usage(e) from None
            print(f"bpmagic: the trained model is exported to {args.export} (ONNX)")
        return None

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _options(self, args) -> dict:
        pick = lambda value, default: default if value is None else value  # noqa: E731
        opts = {
            "epochs": pick(args.epochs, self.epochs), "optimizer": pick(args.optimizer, self.optimizer),
            "batch_size": pick(args.batch_size, self.batch_size), "backend": pick(args.backend, self.backend),
            "seed": pick(args.seed, self.seed), "dtype": pick(args.dtype, self.dtype),
            "dashboard": self.dashboard, "pace": pick(args.pace, self.pace),
        }
        if opts["dtype"] not in _DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(_DTYPES)}, got {opts['dtype']!r}")
        if opts["optimizer"] != "momentum" and opts["optimizer"] not in optim_names():
            raise UsageError(f"--optimizer must be one of {', '.join(['momentum', *optim_names()])}, got "
                             f"{opts['optimizer']!r}")
        if opts["epochs"] is not None and opts["epochs"] < 1 or args.steps is not None and args.steps < 1:
            raise UsageError("--epochs and --steps must be at least 1")
        if not (math.isfinite(opts["pace"]) and opts["pace"] >= 0):
            raise UsageError(f"--pace is in steps per second and must be positive (0: full speed), got {opts['pace']}")
        for option, value in (("--clip-norm", args.clip_norm), ("--clip-value", args.clip_value)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{option} must be a positive number (the largest gradient norm or entry to let "
                                 f"through), got {value}")
        if args.restore_best and args.early_stop is None:
            raise UsageError("--restore-best goes with --early-stop EPOCHS (the best epoch is what early stopping "
                             "keeps)")
        if args.monitor is not None and args.early_stop is None:
            raise UsageError("--monitor says what --early-stop EPOCHS watches: give --early-stop too")
        if opts["batch_size"] < 1:
            raise UsageError(f"--batch-size must be at least 1, got {opts['batch_size']}")
        opts["dtype"] = np.dtype(opts["dtype"])
        opts["hyper"] = self._hyperparameters(args, opts["optimizer"])
        return opts

    def _hyperparameters(self, args, kind) -> dict:
        """The hyperparameters given: the options, `--hyper name=value`, and the defaults configured here (those the
        optimizer declares, when they are not the built-in ones)."""
        declared = {h.name for h in optim.optimizer_class("sgd" if kind == "momentum" else kind).hypers}
        given = {"lr": args.lr if args.lr is not None else self.lr}
        for name in ("momentum", "weight_decay"):
            value = getattr(args, name)
            if value is not None:
                given[name] = value
            elif name in declared and getattr(self, name) != self.traits()[name].default_value:
                given[name] = getattr(self, name)
        for item in args.hyper:
            name, eq, value = item.partition("=")
            try:
                given[name.strip().replace("-", "_")] = float(value)
            except ValueError:
                raise UsageError(f"--hyper {item}: write NAME=VALUE with a number, e.g. --hyper beta2=0.99") from None
            if not eq:
                raise UsageError(f"--hyper {item}: write NAME=VALUE, e.g. --hyper beta2=0.99")
        return given

    def _say_reinitialised(self, reshaped, run_name):
        """One line for the arrays whose shape no longer fits the cell, unless the learner would expect it: arrays
        another model's run (another --name) trained are that model's, and a new model starts afresh in silence."""
        def expected(name, old):
            owner, refs = self._trained_by.get(name, (None, []))
            olds = _arrays_of(old)
            return owner != run_name and len(refs) == len(olds) and all(r() is o for r, o in zip(refs, olds))

        def shape_of(value):
            if isinstance(value, (list, tuple, dict)):
                return f"{type(value).__name__} of {len(value)}"
            return str(tuple(value.shape)) if is_array(value) else type(value).__name__

        def new(shape):
            return f"list of {len(shape)}" if isinstance(shape, list) else str(shape)

        told = [f"{name} {shape_of(old)} -> {new(shape)}" for name, old, shape in reshaped if not expected(name, old)]
        if told:
            print(f"bpmagic: re-initialised {', '.join(told)}: their shapes changed, so they start from the "
                  "cell's initialisers")

    def _validation(self, names, user_ns, prog, dtype):
        arrays = []
        for name in names:
            if name not in user_ns:
                raise CellError(f"--validate {' '.join(names)}: {name!r} is not defined in the notebook")
            a = np.asarray(user_ns[name]) if not is_array(user_ns[name]) else user_ns[name]
            arrays.append(a.astype(dtype, copy=False) if a.dtype.kind == "f" else a)  # a float32 set: no copy
        if arrays[0].shape[0] != arrays[1].shape[0]:
            raise CellError(f"--validate {' '.join(names)}: different lengths {arrays[0].shape[0]} and "
                            f"{arrays[1].shape[0]}")
        return tuple(arrays)

    def _wait(self, run, text=True):
        """Block until the run ends, with a throttled progress line; Interrupt stops at a step boundary."""
        progress = TextProgress(run, self.progress_interval)
        try:
            with live_comms.waiting(controls_shown=not text) as waiting:  # the dashboard's controls stay live
                while not run.wait(waiting.interval).done:
                    waiting.poll()
                    if text:
                        progress.update()
        except KeyboardInterrupt:
            run.interrupt()
        progress.finish(text)


def _arrays_of(value) -> list:
    """The arrays a namespace value holds: itself, or a list's or dict's entries."""
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple)) else [value]


def has_widget_frontend(shell) -> bool:
    """True in a Jupyter kernel (widgets can render); False in terminal IPython."""
    return getattr(shell, "kernel", None) is not None


def optim_names():
    from .plugins import load_group

    return sorted(load_group("bpmagic.optimizers"))


class TextProgress:
    """One line, rewritten in place at most every `interval` seconds, then a summary."""

    def __init__(self, run, interval):
        self.run, self.interval, self.last, self.started = run, interval, 0.0, time.perf_counter()

    def line(self) -> str:
        return f"{self.run.name}: {status_text(self.run)}"

    def update(self):
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            sys.stdout.write("\r" + self.line())
            sys.stdout.flush()

    def finish(self, text=True):
        run = self.run
        if text:
            sys.stdout.write("\r" + self.line() + "\n")
        h = run.history
        took = h["time"][-1] if h.get("time") else time.perf_counter() - self.started
        if run.status == "failed":
            sys.stderr.write(f"Training stopped at step {run.steps_done}: {run.error}\n")
        elif run.ended_because == "interrupted":
            print(f"Interrupted: training stopped after step {run.steps_done}; the Params are those of that step.")
        elif run.ended_because == "stopped":
            print(f"Stopped after step {run.steps_done}; the Params are those of that step.")
        else:
            first = h["loss"][0] if h.get("loss") else float("nan")
            print(f"Trained {run.steps_done} steps in {took:.1f} s: loss {format_loss(first)} -> "
                  f"{format_loss(run.loss)}. The Run is in {run.name}; the Params are updated in the namespace.")
        sys.stdout.flush()


def load_ipython_extension(ipython):
    """%load_ext bpmagic"""
    magics = Backprop(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)  # so that %config Backprop.<option> finds it
    for name in ("Param", "Input", "Target", "Loss", "Buffer", "Metric"):
        ipython.user_ns.setdefault(name, getattr(__import__("bpmagic.cell", fromlist=[name]), name))
