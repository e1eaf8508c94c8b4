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
import sys
import time

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
from .train import fit, optim
from .train.trainer import format_loss, status_text
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


def bind_params(prog, user_ns, *, seed, dtype, reset):
    """name -> array: the namespace's trained array when it fits, else a fresh one from the initialiser."""
    params, notices = _bind(prog, prog.params, "Param", user_ns, seed, dtype, reset)
    groups = {spec.name: spec.layer or layer_of(spec.name) for spec in prog.params}
    return params, groups, notices


def bind_buffers(prog, user_ns, *, seed, dtype, reset):
    """name -> array for each Buffer, as for Params: the value it reached when the cell last ran, if it fits."""
    return _bind(prog, prog.buffers, "Buffer", user_ns, seed, dtype, reset)


def _bind(prog, specs, kind, user_ns, seed, dtype, reset):
    init_ns = {**cell_namespace(user_ns, dtype), **initializers(np.random.default_rng(seed), dtype)}
    arrays, notices = {}, []
    for spec in specs:
        fresh = _eval(spec.init, init_ns, prog, f"the initial value of {spec.name}")
        if not is_array(fresh) and not isinstance(fresh, (int, float)):
            raise CellError(f"line {spec.lineno}: the initial value of {kind} {spec.name} must be an array, got "
                            f"{type(fresh).__name__}\n    {prog.line(spec.lineno)}")
        fresh = np.asarray(fresh, dtype) if not is_array(fresh) or fresh.dtype != dtype else fresh
        old = user_ns.get(spec.name)
        if not reset and is_array(old) and old.dtype.kind == "f":
            if tuple(old.shape) == tuple(fresh.shape):
                arrays[spec.name] = old if old.dtype == dtype else old.astype(dtype)
                continue
            notices.append(f"{spec.name} changed shape {tuple(old.shape)} -> {tuple(fresh.shape)}: re-initialised")
        arrays[spec.name] = fresh.copy()
    return arrays, notices


def make_loss_fn(prog, user_ns, dtype=np.float32):
    """The cell as `loss_fn(params, *batch)` (with Buffers `loss_fn(params, buffers, *batch) -> (loss,
    new_buffers)`), checking that the Loss is a scalar."""
    inner = prog.loss_function(cell_namespace(user_ns, dtype))

    def loss_fn(*args):
        value = inner(*args)
        loss = value[0] if prog.buffers else value
        shape = tuple(getattr(loss, "shape", ()))
        if shape != ():
            raise CellError(f"line {prog.loss_lineno}: the Loss must be a scalar, but {prog.loss_name} has shape "
                            f"{shape}; reduce it, e.g. mean(...)\n    {prog.line(prog.loss_lineno)}")
        return value

    loss_fn.__signature__ = inspect.signature(inner)  # traced graphs name the batch after the cell's Inputs
    return loss_fn


def make_optimizer(kind, lr, momentum, weight_decay):
    if kind == "sgd":
        return optim.SGD(lr=lr, momentum=momentum or 0.0, weight_decay=weight_decay)
    if kind == "momentum":
        return optim.SGD(lr=lr, momentum=momentum or 0.9, weight_decay=weight_decay)
    if kind == "adam":
        return optim.Adam(lr=lr, weight_decay=weight_decay)
    return optim.get_optimizer(kind, lr=lr)  # a plugin's


@magics_class
class Backprop(Magics):
    """Defaults of %%backprop options: `%config Backprop.epochs = 500`, `%config Backprop.lr = 0.1`, ..."""

    epochs = Int(100, help="Epochs to train when --steps is not given.").tag(config=True)
    lr = Float(0.1, help="Learning rate.").tag(config=True)
    optimizer = Unicode("sgd", help="sgd | momentum | adam (or a plugin optimizer's name).").tag(config=True)
    momentum = Float(0.0, help="Momentum (sgd, momentum).").tag(config=True)
    weight_decay = Float(0.0, help="Weight decay.").tag(config=True)
    batch_size = Int(32, help="Examples per step (capped at the data set size).").tag(config=True)
    backend = Unicode("auto", help="auto | numpy | cupy.").tag(config=True)
    seed = Int(0, help="Seed for initialisers and shuffling.").tag(config=True)
    dtype = Unicode("float32", help="float32 | float64.").tag(config=True)
    dashboard = Bool(True, help="Show the live dashboard under the cell.").tag(config=True)
    progress_interval = Float(0.5, help="Seconds between text progress updates.").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.cell_count = 0

    @magic_arguments()
    @argument("--epochs", type=int, default=None, help="epochs to train (default: Backprop.epochs)")
    @argument("--steps", type=int, default=None, help="train for this many steps instead of epochs")
    @argument("--lr", type=float, default=None, help="learning rate (changeable while training)")
    @argument("--optimizer", default=None, help="sgd | momentum | adam")
    @argument("--momentum", type=float, default=None, help="momentum for sgd / momentum")
    @argument("--weight-decay", type=float, default=None, help="weight decay")
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
        The cell blocks until training ends; the Run is stored in --name (default _bp).
        """
        args = parse_argstring(self.backprop, line)
        opts = self._options(args)
        self.cell_count += 1
        user_ns = self.shell.user_ns
        try:
            prog = parse_cell(cell, filename=f"<backprop cell {self.cell_count}>")
            data = bind_data(prog, user_ns, opts["dtype"])
            params, groups, notices = bind_params(prog, user_ns, seed=opts["seed"], dtype=opts["dtype"],
                                                  reset=args.reset)
            buffers, buffer_notices = bind_buffers(prog, user_ns, seed=opts["seed"], dtype=opts["dtype"],
                                                   reset=args.reset)
            for notice in notices + buffer_notices:
                print(f"bpmagic: {notice}")
            validation = None
            if args.validate:
                validation = self._validation(args.validate, user_ns, prog, opts["dtype"])
            optimizer = make_optimizer(opts["optimizer"], opts["lr"], opts["momentum"], opts["weight_decay"])
            loss_fn = make_loss_fn(prog, user_ns, opts["dtype"])
            if args.check:
                from .check import check_model

                batch = [data[n][:opts["batch_size"]] for n in prog.data_names]
                print(check_model(loss_fn, params, batch, buffers, against=args.check, layers=groups))
            run = fit(loss_fn, params, tuple(data[n] for n in prog.data_names),
                      epochs=None if args.steps else opts["epochs"], steps=args.steps,
                      batch_size=opts["batch_size"], optimizer=optimizer, backend=opts["backend"],
                      seed=opts["seed"], groups=groups, validation=validation, name=args.name, background=True,
                      buffers=buffers or None)
        except (BackpropError, ValueError) as e:
            raise _usage(e) from None
        user_ns.update(run.params)  # the very arrays the worker updates in place
        user_ns.update(run.buffers)
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
            "epochs": pick(args.epochs, self.epochs), "lr": pick(args.lr, self.lr),
            "optimizer": pick(args.optimizer, self.optimizer), "momentum": pick(args.momentum, self.momentum),
            "weight_decay": pick(args.weight_decay, self.weight_decay),
            "batch_size": pick(args.batch_size, self.batch_size), "backend": pick(args.backend, self.backend),
            "seed": pick(args.seed, self.seed), "dtype": pick(args.dtype, self.dtype),
            "dashboard": self.dashboard,
        }
        if opts["dtype"] not in _DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(_DTYPES)}, got {opts['dtype']!r}")
        if opts["optimizer"] not in ("sgd", "momentum", "adam") and opts["optimizer"] not in optim_names():
            raise UsageError(f"--optimizer must be sgd, momentum or adam (or a plugin's: "
                             f"{', '.join(optim_names()) or 'none installed'}), got {opts['optimizer']!r}")
        if opts["epochs"] is not None and opts["epochs"] < 1 or args.steps is not None and args.steps < 1:
            raise UsageError("--epochs and --steps must be at least 1")
        if opts["batch_size"] < 1:
            raise UsageError(f"--batch-size must be at least 1, got {opts['batch_size']}")
        opts["dtype"] = np.dtype(opts["dtype"])
        return opts

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
    for name in ("Param", "Input", "Target", "Loss"):
        ipython.user_ns.setdefault(name, getattr(__import__("bpmagic.cell", fromlist=[name]), name))
