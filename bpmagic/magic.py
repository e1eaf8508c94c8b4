"""The %%backprop cell magic: a thin client of bp.fit.

It parses the annotated cell (cell.py), binds Params, Inputs and Targets from the notebook's namespace
(binding.py), starts training (in a worker thread, or where there are no threads — JupyterLite — in the cell while it
waits and as an event-loop task after it) and — unless --background — waits for it while showing progress, so Run
All, nbclient and papermill see the trained result. Every error a user can cause is one short message naming the
cell line (IPython's UsageError), never a traceback through bpmagic.
"""
from __future__ import annotations

import ast
import math
import weakref

import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Float, Int, Unicode

from . import live_comms
from .backends import is_array
from .binding import arrays_of, bind_buffers, bind_data, bind_params, make_loss_fn
from .cell import CellError, parse_cell
from .errors import BackpropError, ShapeError
from .progress import TextProgress
from .train import fit, optim
from .train.datacheck import data_problem

_DTYPES = ("float32", "float64")


def _usage(error, hint="") -> UsageError:
    return UsageError(str(error) + hint)


def _say_buffers_never_assigned(prog):
    """A Buffer keeps the value the cell last assigns it: one the cell never assigns after declaring it (`h, m, v =
    batch_norm(h, g, b, mean1, var1)`, the new values under other names) never changes, silently."""
    stores = [n.id if isinstance(n, ast.Name) else n.value.id for n in ast.walk(ast.parse("\n".join(prog.source_lines)))
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)  # and an entry's (a list of Buffers)
              or isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name)]
    for spec in prog.buffers:
        if stores.count(spec.name) < 2:  # its declaration is one
            print(f"bpmagic: the Buffer {spec.name} is never assigned after line {spec.lineno}, so it never changes: "
                  "assign the new value to it (as in h, mean1, var1 = batch_norm(h, g1, b1, mean1, var1))")


def _assigned_whole(error, prog, user_ns, data, batch_size) -> str:
    """A hint for a shapes' mistake made by a data set assigned whole, its annotation forgotten (`x = X` for
    `x: Input = X`): the model meets all its rows beside a batch of the declared ones."""
    rows = {int(a.shape[0]) for a in (data or {}).values()}
    if not isinstance(error, ShapeError) or len(rows) != 1 or batch_size >= min(rows):
        return ""
    n, declared = rows.pop(), {*prog.data_names, *(spec.name for spec in prog.params + prog.buffers)}
    for node in ast.walk(ast.parse("\n".join(prog.source_lines))):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Name) and node.value.id not in declared:
            value = user_ns.get(node.value.id)
            if is_array(value) and value.ndim >= 1 and value.shape[0] == n:
                name, whole = node.targets[0].id, node.value.id
                return (f"\n{name} = {whole} (line {node.lineno}) is the whole data set ({n} rows) beside batches of "
                        f"the others: did you mean `{name}: Input = {whole}` (or Target)?")
    return ""


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
    @argument("--batch-size", type=int, default=None, help="examples per step (with --workers: the global batch)")
    @argument("--workers", default=None, metavar="N",
              help="train data-parallel on N MPI workers (an ipyparallel cluster this kernel starts once and "
                   "reuses), or on a running cluster: profile:NAME")
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
    @argument("--checkpoint", metavar="PATH", default=None,
              help="save the run to PATH (.npz, atomically) every --every and when it ends: --resume PATH goes on")
    @argument("--every", default=None, metavar="WHEN",
              help="with --checkpoint: how often, a time (60s, 5m) or a number of steps (500steps); default 60s")
    @argument("--resume", metavar="PATH", default=None,
              help="continue the run saved in PATH (by --checkpoint or run.save) where it was, to the same total")
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
        data = None
        try:
            prog = parse_cell(cell, filename=f"<backprop cell {self.cell_count}>")
            _say_buffers_never_assigned(prog)
            data = bind_data(prog, user_ns, opts["dtype"])
            bound, groups = bind_params(prog, user_ns, seed=opts["seed"], dtype=opts["dtype"], reset=args.reset)
            bound_buffers = bind_buffers(prog, user_ns, seed=opts["seed"], dtype=opts["dtype"], reset=args.reset)
            params, buffers = bound.arrays, bound_buffers.arrays
            self._say_reinitialised(bound.reshaped + bound_buffers.reshaped, args.name)
            continued = self._continued({**bound.namespace(params), **buffers}, args.name)
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
                      restore_best=args.restore_best, workers=_workers(args.workers),
                      checkpoint=args.checkpoint, checkpoint_every=args.every or "60s", resume=args.resume)
        except (BackpropError, ValueError) as e:
            raise _usage(e, _assigned_whole(e, prog, user_ns, data, opts["batch_size"]) if data else "") from None
        if continued:
            print(f"bpmagic: {continued}; --reset starts them from the cell's initialisers")
        trained = {**bound.namespace(run.params), **run.buffers}  # the very arrays the worker updates in place
        user_ns.update(trained)
        for name, value in trained.items():
            self._trained_by[name] = (args.name, [weakref.ref(a) for a in arrays_of(value)])
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
        if args.every is not None and args.checkpoint is None:
            raise UsageError("--every says how often --checkpoint PATH saves the run: give --checkpoint too")
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

    def _trainer_of(self, name, value):
        """(the --name of the run that last trained `name`, or None; whether `value` holds the very arrays it
        left there)."""
        owner, refs = self._trained_by.get(name, (None, []))
        olds = arrays_of(value)
        return owner, len(refs) == len(olds) and all(r() is o for r, o in zip(refs, olds))

    def _continued(self, arrays, run_name) -> str:
        """What this run continues from that another run (another --name) trained: a Param is kept by its name, so a
        new model declaring W1 of the same shape starts where the last model left it (a diverged one's too)."""
        by = {}
        for name, value in arrays.items():
            owner, same = self._trainer_of(name, value)
            if same and owner not in (None, run_name):
                by.setdefault(owner, []).append(name)
        return "; ".join(f"{', '.join(names)} {'continue' if len(names) > 1 else 'continues'} from the values run "
                         f"{owner} trained" for owner, names in by.items())

    def _say_reinitialised(self, reshaped, run_name):
        """One line for the arrays whose shape no longer fits the cell, unless the learner would expect it: arrays
        another model's run (another --name) trained are that model's, and a new model starts afresh in silence."""
        def expected(name, old):
            owner, same = self._trainer_of(name, old)
            return same and owner != run_name

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
        for name, a in zip(names, arrays):
            problem = data_problem(a, "validate")
            if problem:
                raise CellError(f"--validate {' '.join(names)}: {name} {problem}")
        return tuple(arrays)

    def _wait(self, run, text=True):
        """Block until the run ends, with a throttled progress line; Interrupt stops at a step boundary."""
        progress = TextProgress(run, self.progress_interval)
        try:
            with live_comms.waiting(controls_shown=not text) as waiting:  # the dashboard's controls stay live
                while not run.wait(waiting.interval).done:
                    if run.waits_for_resume:  # no thread could resume it while this cell waits (Pyodide)
                        print(f"bpmagic: {run.name} is paused; this cell ends here, and Resume (or "
                              f"{run.name}.resume()) trains it on in the background")
                        return
                    waiting.poll()
                    if text:
                        progress.update()
        except KeyboardInterrupt:
            run.interrupt()
        progress.finish(text)


def _workers(option):
    """--workers N (a local cluster of N MPI engines) or profile:NAME (a running ipcluster), as fit takes it."""
    if option is None or option.startswith("profile:"):
        return option
    if not option.isdigit() or int(option) < 1:
        raise UsageError(f"--workers {option}: give a number of workers (--workers 2) or profile:NAME of a running "
                         "ipyparallel cluster")
    return int(option)


def has_widget_frontend(shell) -> bool:
    """True in a Jupyter kernel (widgets can render); False in terminal IPython."""
    return getattr(shell, "kernel", None) is not None


def optim_names():
    from .plugins import load_group

    return sorted(load_group("bpmagic.optimizers"))


def load_ipython_extension(ipython):
    """%load_ext bpmagic"""
    magics = Backprop(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)  # so that %config Backprop.<option> finds it
    for name in ("Param", "Input", "Target", "Loss", "Buffer", "Metric"):
        ipython.user_ns.setdefault(name, getattr(__import__("bpmagic.cell", fromlist=[name]), name))
