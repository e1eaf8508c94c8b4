"""compile_step: forward, backward and optimizer update traced into one graph, compiled once per input shape.

The step graph's inputs are the parameters, the optimizer state, the buffers (arrays the model keeps between steps
without training them, such as batch_norm's running averages), the batch and the per-step scalars (learning rates,
...). Its outputs are the loss, a finiteness check, the new parameters, state and buffers, and optionally per-layer
statistics. Parameters, state and buffers are donated: the update writes into their arrays in place, but only after
the loss and gradients were checked finite, so a NaN step leaves them as they were.
"""
from __future__ import annotations

import contextlib
import functools
import math
import operator
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from .. import autodiff
from ..pytree import arg_names
from ..backends import get_backend
from ..compile.executor import Executable, GuardFailed, fuses, quiet_guarded_steps
from ..ops.collective import allreduce
from ..ops.evaluate import evaluate
from ..compile.passes import optimize
from ..errors import BackpropError, NonFiniteError, call_user, described
from ..ir import Graph, Source
from ..ir.printer import Namer
from ..tracing import new_trace
from .layers import Layers, default_groups
from .optim import Optimizer, SGD
from .metrics import BUILT_IN as BUILT_IN_METRICS, accuracy_from, classification_inputs, \
    collecting as collecting_metrics
from .stats import WORKER_GRAD, from_sums, layer_outputs, layer_sums, sum_of_squares


@dataclass(frozen=True)
class Layout:
    """The step graph's inputs and outputs, in order and by name.

    inputs:  params, optimizer state ((param, slot) pairs), buffers, batch, the step's random key (when the model
             draws random numbers: dropout, noise), the worker's share of the batch (a step compiled for workers),
             per-step scalars ((param, scalar))
    outputs: the loss, the finiteness checks (one per param or one for all; then clipping's norm, when it clips by
             norm), the loss over every worker's batch
             (workers), the new params, state and buffers, then the statistics (per layer, sums of squares keyed
             (sum, layer): train.stats) and, for each watched value (a Var of the forward pass), the sum of squares of
             the gradient there
    """

    params: tuple
    state: tuple
    buffers: tuple
    batch: tuple
    scalars: tuple
    key: tuple = ()  # ("step_key",) when the step draws random numbers: a fresh key at every step
    stats: tuple = ()
    clip: tuple = ()  # ("grad_norm", "clipped") when the optimizer clips the gradients
    metrics: tuple = ()  # the model's metrics (train/metrics.py), by name
    watched: tuple = ()
    shard: tuple = ()  # ("shard_weight",) in a step compiled for workers: this worker's share of the global batch
    meeting: tuple = ()  # ("loss",) in a step compiled for workers: the loss summed over them, guarded too
    checks: int = 0  # how many finiteness checks: one per param or one of all the gradients, and clipping's norm

    @property
    def n_guarded(self) -> int:
        """How many outputs come before the new params: the loss, the checks, the workers' loss."""
        return 1 + self.checks + len(self.meeting)

    @property
    def n_held(self) -> int:
        """How many inputs are the same arrays at every step (params, state, buffers): they come first."""
        return len(self.params) + len(self.state) + len(self.buffers)

    def donate(self) -> dict:
        """{output index: input index}: the new params, state and buffers are written into the old ones."""
        first_new = self.n_guarded
        return {first_new + i: i for i in range(self.n_held)}

    def guards(self) -> list:
        """The outputs that must be finite before anything donated is written: the loss and the checks."""
        return list(range(self.n_guarded))

    def measured(self, outputs) -> list:
        """The outputs that are measurements: the statistics, the clipping's, the metrics, then the watched values."""
        return list(outputs[self.n_guarded + self.n_held:])


@dataclass(eq=False)  # a plan is itself: kept in dicts by identity (Measurements)
class Plan:
    """One compiled step: for one batch shape and one optimizer structure."""

    graph: object
    executable: Executable
    layout: Layout
    compile_seconds: float

    @property
    def loss_graph(self):
        """The forward pass alone: the params (all of them, in order) and whatever else of the step's inputs it
        reads (buffers, the batch), in the step's order, to the loss."""
        g = self.graph
        forward = g.subgraph([e for e in g.eqns if e.phase == "forward"], [g.outputs[0]], name="loss")
        reads = set(forward.inputs) | set(g.inputs[:len(self.layout.params)])
        return Graph([v for v in g.inputs if v in reads], forward.eqns, forward.outputs, forward.consts, "loss")



@dataclass
class _StepTrace:
    """A training step while it is traced, filled phase by phase (CompiledStep._compile): inputs, loss,
    gradients, update."""

    tr: object
    names: list  # the params, in order
    slots: list  # the optimizer's state per param
    params: dict = field(default_factory=dict)  # traced inputs...
    state: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    batch: list = field(default_factory=list)
    key: object = None
    shard: object = None  # this worker's share of the global batch (workers)
    scalars: dict = field(default_factory=dict)
    start: int = 0  # the first equation of the user's loss function
    loss: object = None  # ... the forward pass
    new_buffers: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    forward_values: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)  # ... the backward pass: layer -> its params
    probes: dict = field(default_factory=dict)  # layer -> its output's Var (the statistics' signal)
    adjoints: object = None
    grads: dict = field(default_factory=dict)
    global_loss: object = None  # ... where the workers meet: the loss over all of them
    worker_sums: dict = field(default_factory=dict)  # ((WORKER_GRAD, rank), layer) -> each worker's own gradient
    clip_measured: list = field(default_factory=list)
    checks: list = field(default_factory=list)  # ... the update
    new_params: dict = field(default_factory=dict)
    new_state: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    watched: dict = field(default_factory=dict)


def _named_once(graph: Graph) -> Graph:
    """One name per value across the whole step, so its forward, backward and update parts, printed or drawn
    apart, call each value alike (the backward graph's t6 is the forward graph's t6)."""
    namer, seen = Namer(), set()
    for v in graph.vars:
        printed = namer(v)  # a param keeps its key; a second h becomes h_2; t1, t2, ... avoid them all
        if v.name is None or v.name in seen:
            v.name = printed
        seen.add(v.name)
    return graph

@dataclass
class _Prepared:
    """What stays the same from step to step until the batch's shape or a hyperparameter changes."""

    signature: tuple
    version: int
    watching: bool
    plan: Plan
    hyper: dict
    held: list  # the params, state and buffers: updated in place, so the same arrays at every step
    scalars: list
    lrs: dict

    def __post_init__(self):  # read at every step: worked out once (a step of a small model is ~30 µs)
        layout = self.plan.layout
        self.run = self.plan.executable.run
        self.quiet = self.plan.executable.quiet
        self.per_step = bool(layout.key or layout.shard)  # inputs made anew at each step (a key, a worker's share)
        self.loss_at = layout.n_guarded - 1 if layout.meeting else 0  # workers: the global batch's loss
        self.measures = bool(layout.stats or layout.watched)


PRECISIONS = ("fp32", "tf32", "bf16")



class Measurements:
    """The steps' measurements (per-layer sums for the statistics, the watched values' gradients), kept on the step's
    device: each step writes its row into a ring there, and the host fetches the rows in one copy when asked — the
    trainer at most ~10 times a second — never once per step (on a GPU a copy would wait for the step to finish;
    the writes are queued with the step and replayed CUDA graphs are left alone)."""

    CAPACITY = 16384  # rows per plan; the trainer takes them long before a ring comes round

    def __init__(self, backend):
        self.backend = backend
        self._rings: dict = {}  # plan -> [CAPACITY, width] array on the device
        self._written: dict = {}  # plan -> rows written into its ring so far
        self._pending: list = []  # [plan, first step, first row, count]: written, not yet taken, in step order
        self.last = None  # (plan, row) of the newest step
        self._lock = threading.Lock()  # the trainer takes while a view (another thread) may publish

    @property
    def pending(self) -> int:
        return sum(segment[3] for segment in self._pending)

    def write(self, plan, step: int, values: list):
        with self._lock:
            self._write(plan, step, values)

    def _write(self, plan, step, values):
        ring = self._rings.get(plan)
        if ring is None:
            dtype = np.result_type(*(np.dtype(v.dtype) for v in values))
            ring = self._rings[plan] = self.backend.xp.empty((self.CAPACITY, len(values)), dtype)
            self._written[plan] = 0
        row = self._written[plan]
        self.backend.xp.stack(values, out=ring[row % self.CAPACITY])
        self._written[plan] = row + 1
        self.last = (plan, row)
        segment = self._pending[-1] if self._pending else None
        if segment is not None and segment[0] is plan and segment[1] + segment[3] == step:
            segment[3] += 1
        else:
            self._pending.append([plan, step, row, 1])

    def take(self) -> list:
        """[(plan, first step, rows on the host [steps, width])] for the steps written since the last take, oldest
        first (one copy per plan's stretch of steps)."""
        with self._lock:
            pending, self._pending = self._pending, []
        out = []
        for plan, first_step, first, count in pending:
            lost = max(0, self._written[plan] - self.CAPACITY - first)  # overwritten before anyone took them
            first, first_step, count = first + lost, first_step + lost, count - lost
            if count > 0:
                out.append((plan, first_step, self.rows(plan, first, count)))
        return out

    def rows(self, plan, first: int, count: int):
        ring, start = self._rings[plan], first % self.CAPACITY
        xp = self.backend.xp
        block = ring[start:start + count] if start + count <= self.CAPACITY else \
            xp.concatenate([ring[start:], ring[:start + count - self.CAPACITY]])
        return self.backend.to_numpy(block)


class StepInfo:
    """What the last step did: its loss, the hyperparameters it used, and — when the step measures them — its
    per-layer statistics (`stats`, column -> value, for each train.stats.LayerStat and layer), its metrics
    (`metrics`) and the gradient's size at each watched value (`value_grads`, Var of the plan's graph ->
    |dL/d value|), fetched from the device when first read."""

    __slots__ = ("step", "loss", "hyper", "lrs", "_measured", "_row")

    def __init__(self, step, loss, hyper, lrs, measured=None):
        self.step, self.loss, self.hyper, self.lrs = step, loss, hyper, lrs
        self._measured, self._row = measured, None  # (Measurements, plan, row)

    def _values(self):
        if self._row is None:
            if self._measured is None:
                return None, None
            measurements, plan, row = self._measured
            self._row = (plan, measurements.rows(plan, row, 1)[0])
        return self._row

    @property
    def stats(self) -> dict:
        plan, row = self._values()
        if plan is None or not plan.layout.stats:
            return {}
        return from_sums(dict(zip(plan.layout.stats, row[:len(plan.layout.stats)].tolist())))

    @property
    def metrics(self) -> dict:
        """The model's metrics at this step (accuracy, a cell's Metric lines): name -> value."""
        plan, row = self._values()
        if plan is None:
            return {}
        first = len(plan.layout.stats) + len(plan.layout.clip)
        return dict(zip(plan.layout.metrics, row[first:first + len(plan.layout.metrics)].tolist()))

    @property
    def value_grads(self) -> dict:
        plan, row = self._values()
        if plan is None:
            return {}
        layout = plan.layout
        sums = row[len(layout.stats) + len(layout.clip) + len(layout.metrics):].tolist()
        return {v: math.sqrt(x) for v, x in zip(plan.layout.watched, sums)}


class CompiledStep:
    """A training step for `loss_fn(params, *batch)`. Call it with a batch; returns the loss as a float.

    Created by `bp.compile_step`. Attributes: params (updated in place), buffers (likewise), optimizer (change its
    hyperparameters at any time), groups (param name -> layer), state (optimizer state), last (a StepInfo), step_graph
    (forward, backward and update as one graph) / forward_graph / backward_graph / update_graph (of the latest
    plan, for the full batch after an epoch's last, partial one), as on a Run; source (the code one step runs).
    """

    def __init__(self, loss_fn, params, example_batch, optimizer=None, backend="auto", groups=None, stats=False,
                 cuda_graph=True, matmul_precision="fp32", buffers=None, seed=0, metrics=(), workers=None):
        if not isinstance(params, dict) or not params:
            raise BackpropError("params must be a non-empty dict mapping names to arrays")
        if buffers is not None and not isinstance(buffers, dict):
            raise BackpropError("buffers must be a dict mapping names to arrays (or None)")
        if matmul_precision not in PRECISIONS:
            raise BackpropError(f"matmul_precision={matmul_precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.backend = get_backend(backend, verbose=(backend == "auto"))
        self.cuda_graph, self.matmul_precision = cuda_graph, matmul_precision
        if matmul_precision != "fp32" and getattr(self.backend, "matmul_kernel", None) is None:
            print(f"bpmagic: matmul_precision={matmul_precision!r} applies on the GPU (CuPy); the {self.backend.name} "
                  "backend computes matmuls in the parameters' own precision")
        for name, p in params.items():
            if not isinstance(name, str) or isinstance(p, (dict, list, tuple)):
                raise BackpropError(
                    "params must be a flat dict from names (str) to arrays, but "
                    + (f"params[{name!r}] is a {type(p).__name__}" if isinstance(p, (dict, list, tuple))
                       else f"the key {name!r} is not a str")
                    + ": flatten nested parameters into one dict, e.g. {'l1.W': ..., 'l1.b': ...} (the loss function "
                    "reads p['l1.W'])")
            kind = np.dtype(getattr(p, "dtype", np.float64)).kind
            if kind != "f":
                raise BackpropError(
                    f"parameter {name!r} has dtype {getattr(p, 'dtype', type(p).__name__)} {tuple(np.shape(p))}: "
                    "parameters must be floating point to be trained. Create it as floats, e.g. "
                    f"params[{name!r}] = params[{name!r}].astype(np.float32)")
            if not self.backend.owns(p) or not getattr(getattr(p, "flags", None), "writeable", True):
                params[name] = self.backend.asarray(np.array(p) if not self.backend.owns(p) else p.copy())
        self.buffers = {} if buffers is None else buffers
        for name, b in self.buffers.items():
            if name in params:
                raise BackpropError(f"{name!r} is both a parameter and a buffer; give them different names")
            if not self.backend.owns(b) or not getattr(getattr(b, "flags", None), "writeable", True):
                self.buffers[name] = self.backend.asarray(np.array(b) if not self.backend.owns(b) else b.copy())
        self.loss_fn = loss_fn
        self.params = params
        self._arrays = dict(params)  # the arrays the step writes into: one replaced in `params` is seen at a call
        self._largest = min(float(np.finfo(p.dtype).max) for p in params.values())  # an update's scalar, cast
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        if not isinstance(self.optimizer, Optimizer):
            raise BackpropError(f"optimizer must be a bpmagic optimizer (bp.optim.SGD, bp.optim.Adam, ...), "
                                f"got {type(self.optimizer).__name__}")
        self.groups = default_groups(params) if groups is None else Layers((n, str(groups.get(n, n))) for n in params)
        self.with_stats = stats
        # data parallel (backends/collective.py): the step sums the gradients over the workers before its update
        self.workers = workers
        self.shard_weight = 1.0 if workers is None else 1.0 / workers.size  # this worker's share of the next batch
        self.seed = int(seed)  # with the step number, the key of each step's random draws
        unknown = [m for m in metrics if m not in BUILT_IN_METRICS]
        if unknown:
            raise BackpropError(f"metrics: {', '.join(map(repr, unknown))} is not a metric bpmagic computes by itself "
                                f"({', '.join(BUILT_IN_METRICS)}); report your own with a Metric line in the cell "
                                "(bp.train.metrics.report in code)")
        self.metric_names = tuple(metrics)  # built-in metrics to compute (accuracy)
        self.watching_values = False
        self.state: dict = {name: {} for name in params}
        self.plans: dict = {}
        self.step_count = 0
        self.last: StepInfo | None = None
        self.measurements = Measurements(self.backend)
        self._prepared: _Prepared | None = None
        self._lock = threading.Lock()
        n_lead = 2 if self.buffers else 1  # params (and buffers) come before the batch
        self.batch_names = arg_names(loss_fn, n_lead + len(example_batch))[n_lead:]
        example = self._prepare(example_batch)
        self._full_batch = tuple((tuple(b.shape), str(b.dtype)) for b in example)  # the batch its graphs show
        self._plan_for(example, self.optimizer.hyperparameters(), False)

    def call_loss(self, params, batch, buffers=None):
        """(loss, new buffers) of the model on `params`, `batch` and `buffers` (traced or concrete): the one place
        that knows the loss function's calling convention, `loss_fn(params, *batch)`, or with buffers
        `loss_fn(params, buffers, *batch) -> (loss, new_buffers)`."""
        if not self.buffers:
            return call_user(self.loss_fn, params, *batch), {}
        result = call_user(self.loss_fn, params, self.buffers if buffers is None else buffers, *batch)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], dict)):
            raise BackpropError("with buffers, the loss function must return (loss, new_buffers): a dict with a new "
                                f"value for each buffer ({', '.join(self.buffers)})")
        loss, new = result
        if set(new) != set(self.buffers):
            raise BackpropError(f"the loss function returned new values for buffers {sorted(new)}, but the buffers "
                                f"are {sorted(self.buffers)}")
        for name, value in new.items():
            if tuple(getattr(value, "shape", ())) != tuple(self.buffers[name].shape):
                raise BackpropError(f"buffer {name!r} has shape {tuple(self.buffers[name].shape)}, but its new value "
                                    f"has shape {tuple(getattr(value, 'shape', ()))}: a buffer keeps its shape")
        return loss, new

    # -- compiling ----------------------------------------------------------------------------------------------------
    def _prepare(self, batch):
        if hasattr(self, "batch_names") and len(batch) != len(self.batch_names):
            raise BackpropError(f"the step takes {len(self.batch_names)} batch array"
                                f"{'s' if len(self.batch_names) != 1 else ''} ({', '.join(self.batch_names)}), as it was "
                                f"compiled with, but got {len(batch)}")
        owns = self.backend.owns
        return [b if owns(b) else self.backend.asarray(b) for b in batch]

    def _plan_for(self, batch, hyper, watch) -> Plan:
        structure = self.optimizer.structure(hyper)
        key = self._plan_key(tuple((tuple(b.shape), str(b.dtype)) for b in batch), hyper, watch)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = self._compile(batch, hyper, structure, watch)
        return plan

    def _plan_key(self, batch: tuple, hyper, watch) -> tuple:
        """What makes one plan differ from another: the batch's shapes and dtypes, the optimizer's structure and
        clipping, and whether values are watched."""
        return batch, self.optimizer.structure(hyper), self.optimizer.clipping, watch

    def watch_values(self, on=True):
        """Also measure, at every step, the gradient at every value of the forward pass (in step.last.value_grads):
        what bp.viz.live draws. From the next step on, which compiles the step once more."""
        self.watching_values = bool(on)

    def _ensure_state(self, structure):
        xp = self.backend.xp
        for name, p in self.params.items():
            for slot in self.optimizer.state_slots(structure):
                if slot not in self.state[name]:
                    self.state[name][slot] = xp.full_like(p, self.optimizer.initial_state(slot))

    def _scalars(self, hyper, step):
        """name -> {scalar: value} per parameter: the shared scalars, those the optimizer declares per-layer scaled by
        the parameter's group's learning-rate multiplier."""
        shared = self.optimizer.step_scalars(hyper, step)
        mult = hyper.get("lr_multipliers", {})
        out = {}
        for name in self.params:
            m = mult.get(self.groups[name], 1.0)
            out[name] = {k: (v * m if k in self.optimizer.per_layer_scalars else v) for k, v in shared.items()}
        return out

    def _compile(self, batch, hyper, structure, watch) -> Plan:
        """Trace forward, backward and update into one graph, in the order a reader follows them; name its values
        once; make it an executable."""
        t0 = time.perf_counter()
        self._ensure_state(structure)
        alone = self.workers.alone() if self.workers is not None else contextlib.nullcontext()
        with alone, new_trace(self.backend) as tr:  # a worker compiles alone (concrete values: its own gradients)
            st = self._trace_inputs(tr, batch, hyper, structure)
            self._trace_loss(st, watch)
            self._trace_gradients(st)
            self._trace_update(st, structure, watch)
            graph, layout = self._step_graph(st, structure)
        graph = _named_once(optimize(graph))
        exe = Executable(graph, self.backend, donate=layout.donate(), guards=layout.guards(),
                         cuda_graph=self.cuda_graph, matmul_precision=self.matmul_precision)
        return Plan(graph, exe, layout, time.perf_counter() - t0)

    def _trace_inputs(self, tr, batch, hyper, structure) -> "_StepTrace":
        """The step graph's inputs, named as printed: params, optimizer state, buffers, batch, the step's random
        key, and the per-step scalars (learning rates, ... per param, in the param's dtype)."""
        names, slots = list(self.params), self.optimizer.state_slots(structure)
        scalars = self._scalars(hyper, max(self.step_count, 0) + 1)
        dtype = {n: self.params[n].dtype for n in names}
        st = _StepTrace(tr, names, slots)
        st.params = {n: tr.new_input(self.params[n], name=n) for n in names}
        st.state = {n: {s: tr.new_input(self.state[n][s], name=f"{n}_{s}") for s in slots} for n in names}
        st.buffers = {n: tr.new_input(b, name=n) for n, b in self.buffers.items()}
        st.batch = [tr.new_input(b, name=bn) for b, bn in zip(batch, self.batch_names)]
        # dropout and noise draw from a key that is new at every step (ops/nn.py): an input of the step
        tr.step_key = st.key = tr.new_input(np.asarray(0, np.int64), name="step_key")
        tr.float_dtype = np.result_type(*dtype.values())
        if self.workers is not None:
            st.shard = tr.new_input(np.asarray(self.shard_weight, tr.float_dtype), name="shard_weight")
        with np.errstate(over="ignore"):  # a scalar too large for the dtype: refused before any step (_prepare_call)
            st.scalars = {n: {k: tr.new_input(np.asarray(v, dtype[n]), name=f"{k}_{n}") for k, v in scalars[n].items()}
                          for n in names}
        st.start = len(tr.eqns)
        return st

    def _trace_loss(self, st, watch):
        """The user's loss function on the traced inputs: the loss, the buffers' new values and the metrics."""
        tr = st.tr
        with collecting_metrics() as metrics:
            loss, new_buf = self.call_loss(st.params, st.batch, st.buffers)  # a mistake in it: one message at its line
        # integer classes straight from the data: fit checks the whole data set's (tracing saw one batch's)
        found = classification_inputs(tr, st.start)
        self.classes_of = None  # (the batch argument holding class numbers, how many classes the logits have)
        batch_vars = [b._bp_var for b in st.batch]
        if found is not None and found[0] == "cross_entropy" and np.dtype(found[2].dtype).kind in "iu" \
                and found[2]._bp_var in batch_vars:
            self.classes_of = (batch_vars.index(found[2]._bp_var), int(found[1].shape[-1]))
        if "accuracy" in self.metric_names:
            found = accuracy_from(tr, st.start)
            if found is None:
                raise BackpropError("--metrics accuracy: the loss is not a classification loss (cross_entropy or "
                                    "binary_cross_entropy), so there is no accuracy to read from it; report your "
                                    "own with a Metric line, e.g. acc: Metric = mean(argmax(logits, 1) == y)")
            metrics["accuracy"] = found
        st.metrics = metrics
        st.forward_values = [v for e in tr.eqns[st.start:] for v in e.outputs] if watch else []
        # a buffer's new value never carries a gradient, and keeps the buffer's dtype
        st.new_buffers = {n: ops.astype(v if getattr(v, "_bp_trace", None) is tr else tr.const(getattr(v, "value", v)),
                                        self.buffers[n].dtype) for n, v in new_buf.items()}
        if isinstance(loss, (tuple, list, dict)):
            raise BackpropError(f"loss_fn must return the loss, a scalar, but it returned {described(loss)}"
                                + ("; with buffers it returns (loss, new_buffers)" if not self.buffers else ""))
        if tuple(getattr(loss, "shape", ())) != ():
            raise BackpropError(f"the loss must be a scalar, but loss_fn returned shape {tuple(loss.shape)}; "
                                "reduce it (e.g. .mean())")
        if getattr(loss, "_bp_trace", None) is not tr:
            raise BackpropError("the loss does not depend on the parameters, so there is nothing to train")
        st.loss = loss

    def _trace_gradients(self, st):
        """The backward pass from the loss to every param (zeros where none reaches it), keeping what the
        statistics and watched values read (each layer's output), then the optimizer's clipping."""
        tr, loss, p_in = st.tr, st.loss, st.params
        st.layers = self.groups.members
        if self.with_stats:
            st.probes = layer_outputs(tr.eqns[st.start:], {layer: [p_in[n]._bp_var for n in members]
                                                                    for layer, members in st.layers.items()})
        tr.name_values(st.start)  # the user's names first (the loss may be their L)
        loss._bp_var.name = loss._bp_var.name or "loss"  # its seed is then dloss
        seed = tr.const(np.ones((), loss.dtype))
        st.adjoints = autodiff.backward(tr, st.start, loss, seed, [p_in[n] for n in st.names],
                                        keep=set(st.probes.values()) | set(st.forward_values))
        st.grads = {n: g if g is not None else tr.const(np.zeros(p_in[n].shape, p_in[n].dtype))
                    for n, g in zip(st.names, st.adjoints.grads)}
        self._say_unreached([n for n, g in zip(st.names, st.adjoints.grads) if g is None])
        if self.workers is not None:
            self._trace_meeting(st)
        opt = self.optimizer
        if any(opt.clipping):  # the end of the backward pass: what the optimizer will read
            with tr.recording(phase="backward", source=Source("<clipping>", 0, f"gradient clipping of {opt!r}")):
                st.grads, st.clip_measured = opt.clip(st.grads, st.scalars[st.names[0]])

    def _say_unreached(self, names):
        """A param the loss does not depend on is a learner's mistake more often than not (a layer left out of the
        forward pass): no param reached is refused; some are said once, as their gradient is 0 at every step."""
        if names and len(names) == len(self.params):
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise BackpropError(f"the loss does not depend on any parameter ({shown}), so there is nothing to train: "
                                "compute it from them")
        if names and not getattr(self, "_said_unreached", False):
            self._said_unreached = True
            print(f"bpmagic: the loss does not depend on {', '.join(names)} (the gradient is 0 at every step, so "
                  f"{'they stay' if len(names) > 1 else 'it stays'} as initialised): is "
                  f"{'each' if len(names) > 1 else 'it'} used in the model?")

    def _trace_meeting(self, st):
        """Where the workers meet: each worker's gradients and loss, weighted by its share of the global batch (and,
        with statistics, the size of its own gradient per layer, in its row of a workers × layers block), packed into
        one buffer and summed over the workers. From here on every worker holds the same gradients, as one process
        would on the global batch; the guard after it sees the same sums everywhere, so every worker applies or
        skips the same steps."""
        w, tr, names = self.workers, st.tr, st.names
        label = f"the {w.size} workers meet: gradients and loss x each one's share of the batch, summed (allreduce)"
        with tr.recording(phase="backward", source=Source("<workers>", 0, label)):
            dtype = np.result_type(*(st.grads[n].dtype for n in names), st.loss.dtype)
            cast = lambda x, to: x if x.dtype == to else ops.astype(x, to)  # noqa: E731
            parts = [ops.ravel(cast(st.grads[n] * st.shard, dtype)) for n in names]
            parts.append(ops.reshape(cast(st.loss * st.shard, dtype), (1,)))
            layers = list(st.layers) if self.with_stats else []
            if layers:
                mine = ops.stack([functools.reduce(operator.add, [sum_of_squares(cast(st.grads[n], dtype))
                                                                  for n in st.layers[layer]]) for layer in layers])
                row = np.zeros(w.size, dtype)
                row[w.rank] = 1
                parts.append(ops.ravel(ops.outer(tr.const(row), mine)))
            total = allreduce(ops.concatenate(parts), workers=w)
            grads, at = {}, 0
            for n in names:
                g = st.grads[n]
                size = int(np.prod(g.shape, dtype=np.int64))
                grads[n] = cast(ops.reshape(total[at:at + size], tuple(g.shape)), g.dtype)
                at += size
            st.global_loss = cast(ops.reshape(total[at:at + 1], ()), st.loss.dtype)
            if layers:
                block = ops.reshape(total[at + 1:], (w.size, len(layers)))
                st.worker_sums = {((WORKER_GRAD, r), layer): block[r, i] for r in range(w.size)
                                  for i, layer in enumerate(layers)}
            st.grads = grads

    def _trace_update(self, st, structure, watch):
        """The optimizer's update of each param, the finiteness checks the step's guard reads, and the
        measurements: per-layer statistics and the gradient at each watched value."""
        opt, names, grads, kept = self.optimizer, st.names, st.grads, st.adjoints.kept
        with st.tr.recording(phase="update", source=Source("<optimizer>", 0, f"{opt!r} update")):
            sq = {n: sum_of_squares(grads[n]) for n in names} if self.with_stats or watch else {}
            st.checks = self._checks(grads, names, sq)
            if opt.clipping[0]:  # the norm clipping read: overflowed, it would scale every gradient to 0, silently
                st.checks.append(st.clip_measured[0])
            for n in names:
                st.new_params[n], st.new_state[n] = opt.update(st.params[n], grads[n], st.state[n], st.scalars[n],
                                                               structure)
            signals = {layer: kept[v] for layer, v in st.probes.items() if v in kept}
            st.stats = layer_sums(st.layers, sq, st.params, st.new_params, signals) if self.with_stats else {}
            st.stats.update(st.worker_sums)
            # watched values: the gradient's sum of squares at each (the params' is their gradient's)
            st.watched = {st.params[n]._bp_var: sq[n] for n in names} if watch else {}
            st.watched.update({v: sum_of_squares(kept[v]) for v in st.forward_values if v in kept})

    def _checks(self, grads, names, squares) -> list:
        """The finiteness checks the guard reads: the gradients' sums of squares, as the statistics (`squares`, when
        measured) have them — one BLAS dot each, finite only if every entry is; a float32 gradient beyond ~1e19
        overflows them, and the step is refused as exploding, dashboard or not (float16's are summed in float32:
        see sum_of_squares). One check of all the gradients joined where the plan writes each gradient into its
        block of the join (one call instead of one per gradient, 1.5-2 us each at small sizes), else one per
        gradient: for gradients of several dtypes, on workers (whose gradients are views of the meeting's buffer)
        and on a backend that fuses kernels (the join would be a copy)."""
        if squares:
            return [squares[n] for n in names]
        joined = not fuses(self.backend) and self.workers is None and len({grads[n].dtype for n in names}) == 1
        if len(names) > 1 and joined:
            return [sum_of_squares(ops.concatenate([ops.ravel(grads[n]) for n in names]))]
        return [sum_of_squares(grads[n]) for n in names]

    def _step_graph(self, st, structure) -> tuple:
        """(graph, layout): the traced step as one graph, its inputs and outputs in the Layout's order."""
        names, slots = st.names, st.slots
        random = any(st.key._bp_var in e.inputs for e in st.tr.eqns)
        layout = Layout(params=tuple(names), state=tuple((n, s) for n in names for s in slots),
                        buffers=tuple(self.buffers), batch=tuple(self.batch_names),
                        scalars=tuple((n, k) for n in names for k in st.scalars[n]),
                        key=("step_key",) if random else (), stats=tuple(st.stats),
                        clip=("grad_norm", "clipped") if st.clip_measured else (), metrics=tuple(st.metrics),
                        watched=tuple(st.watched), shard=("shard_weight",) if st.shard is not None else (),
                        meeting=("loss",) if st.global_loss is not None else (), checks=len(st.checks))
        inputs = ([st.params[n] for n in layout.params] + [st.state[n][s] for n, s in layout.state]
                  + [st.buffers[n] for n in layout.buffers] + st.batch + ([st.key] if random else [])
                  + ([st.shard] if layout.shard else []) + [st.scalars[n][k] for n, k in layout.scalars])
        outputs = ([st.loss] + st.checks + ([st.global_loss] if layout.meeting else [])
                   + [st.new_params[n] for n in layout.params]
                   + [st.new_state[n][s] for n, s in layout.state] + [st.new_buffers[n] for n in layout.buffers]
                   + list(st.stats.values()) + st.clip_measured
                   + [ops.astype(m, st.loss.dtype) for m in st.metrics.values()] + list(st.watched.values()))
        return st.tr.graph(inputs, outputs, name="train_step"), layout

    # -- running ------------------------------------------------------------------------------------------------------
    def __call__(self, *batch) -> float:
        with self._lock:
            batch = self._prepare(batch)
            opt = self.optimizer
            signature = tuple([(b.shape, b.dtype) for b in batch])
            ready = self._prepared
            # where a schedule stands; `now` is no hyperparameter: set without the optimizer's check of the name
            object.__setattr__(opt, "now", self.step_count + 1)
            if not (len(self.params) == len(self._arrays) and all(map(operator.is_, self.params.values(),
                                                                       self._arrays.values()))):
                self._take_replaced()
            if (ready is None or ready.signature != signature or ready.version != opt.version or opt.changes_every_step
                    or ready.watching != self.watching_values):
                ready = self._prepared = self._prepare_call(batch, signature)
            plan = ready.plan
            if ready.per_step:
                inputs = ready.held + batch + self._key(plan, self.step_count + 1) + self._shard(plan) + ready.scalars
            else:
                inputs = ready.held + batch + ready.scalars
            if ready.quiet:
                quiet_guarded_steps()
            try:
                outs = ready.run(*inputs)
            except GuardFailed:
                raise self._diagnose(plan, inputs) from None
            self.step_count += 1
            loss, measured = float(outs[ready.loss_at]), None
            if ready.measures:  # kept on the device: the trainer fetches them ~10 times a second
                self.measurements.write(plan, self.step_count, plan.layout.measured(outs))
                measured = (self.measurements, *self.measurements.last)
            self.last = StepInfo(self.step_count, loss, ready.hyper, ready.lrs, measured)
            return loss

    def reset(self, params: dict, buffers: dict | None = None):
        """Start over from `params` (and `buffers`): their values are copied into the step's own arrays (the
        arrays a notebook holds stay the same objects), the optimizer's state is as at the start and the step count
        is 0."""
        with self._lock:
            for name, target in [*self.params.items(), *self.buffers.items()]:
                source = params.get(name) if name in self.params else (buffers or {}).get(name)
                if source is None:
                    continue
                if tuple(source.shape) != tuple(target.shape):
                    raise BackpropError(f"{name} has shape {tuple(target.shape)}, but the value to reset it to has "
                                        f"shape {tuple(source.shape)}")
                target[...] = self.backend.asarray(source)
            for slots in self.state.values():
                for slot, value in slots.items():
                    value[...] = self.optimizer.initial_state(slot)
            self.step_count = self.optimizer.now = 0
            self.last = None
            self.measurements.take()  # the measurements of the steps before are not this attempt's
            self._prepared = None  # step-dependent scalars (Adam's bias corrections) start again from step 1

    def inputs(self, *batch) -> list:
        """Every input of the step graph for `batch`, in its layout's order, as the next step would get them
        (the params, state and buffers as copies)."""
        return self.plan_and_inputs(*batch)[1]

    def plan_and_inputs(self, *batch):
        """(plan, inputs): the plan the next step on `batch` would run (compiled now if it is new), and its inputs:
        copies of the params, state and buffers as they are now."""
        with self._lock:
            batch = self._prepare(batch)
            ready = self._prepare_call(batch, None)
            # copies: a training thread updates the params in place while the caller reads these
            key = self._key(ready.plan, self.step_count + 1) + self._shard(ready.plan)
            return ready.plan, [a.copy() for a in ready.held] + batch + key + ready.scalars

    def _key(self, plan, step: int) -> list:
        """[the key of step `step`'s random draws] for a plan that draws, else []: from the seed and the step
        number, so the same run draws the same numbers (and a Reset replays them)."""
        if not plan.layout.key:
            return []
        return [self.backend.asarray(np.asarray(step_key(self.seed, step), np.int64))]

    def _shard(self, plan) -> list:
        """[this worker's share of the batch, in the dtype traced] for a step compiled for workers, else []."""
        layout = plan.layout
        if not layout.shard:
            return []
        var = plan.graph.inputs[layout.n_held + len(layout.batch) + len(layout.key)]
        return [self.backend.asarray(np.asarray(self.shard_weight, var.dtype))]

    @property
    def plan(self) -> Plan:
        """The compiled plan of the latest step (of the first compiled one before any step)."""
        return self._latest()

    @property
    def source(self) -> str:
        """The Python code that runs one step: generated from the step graph (print(step) shows it)."""
        return self.plan.executable.source

    def __str__(self):
        return self.source

    def _refuse_scalars(self, names, raw, hyper):
        for (n, k), x in zip(names, raw):
            dtype = np.dtype(self.params[n].dtype)
            largest = float(np.finfo(dtype).max)
            if abs(float(x)) > largest:
                cause = (f"from lr = {hyper['lr']:g}), beyond {dtype}'s largest number ({largest:.3g}): the update "
                         "would be inf; choose a smaller lr" if k in self.optimizer.per_layer_scalars else
                         f"from {', '.join(f'{h} = {v:.10g}' for h, v in hyper.items() if isinstance(v, float))}), "
                         f"beyond {dtype}'s largest number ({largest:.3g}): choose hyperparameters that keep it finite")
                raise BackpropError(f"the update's {k} for {n} comes to {x:g} at step {self.step_count + 1} ({cause}")

    def _take_replaced(self):
        """The params dict changed since the step was compiled (params["W"] = new): the new values are copied into
        the step's own array, which goes back into the dict (the arrays a compiled step, or a replayed CUDA graph,
        writes into stay the same), so params["W"] trains on from them; another shape or dtype, or a name added or
        removed, is said and the dict put back as it was."""
        mine = self._arrays
        if set(self.params) != set(mine):
            added, gone = sorted(set(self.params) - set(mine)), sorted(set(mine) - set(self.params))
            for n in added:
                del self.params[n]
            self.params.update({n: mine[n] for n in gone})
            raise BackpropError(
                "the params dict changed after the step was compiled"
                + (f": {', '.join(map(repr, added))} added" if added else "")
                + (f"{';' if added else ':'} {', '.join(map(repr, gone))} removed" if gone else "")
                + " (put back as they were); compile a new step (bp.compile_step) for another set of parameters")
        for n, array in mine.items():
            new = self.params[n]
            if new is array:
                continue
            self.params[n] = array
            if tuple(np.shape(new)) != tuple(array.shape) or np.dtype(getattr(new, "dtype", None) or np.float64) \
                    != np.dtype(array.dtype):
                raise BackpropError(
                    f"params[{n!r}] was replaced by an array of shape {tuple(np.shape(new))} and dtype "
                    f"{getattr(new, 'dtype', type(new).__name__)}, but the step was compiled for "
                    f"{tuple(array.shape)} {array.dtype} (the old array is put back): assign into it "
                    "(params[...][...] = value) or compile a new step")
            array[...] = self.backend.asarray(new)
        self._arrays = {n: mine[n] for n in self.params}  # in the dict's order (a key deleted and put back moves)

    def _prepare_call(self, batch, signature):
        """What stays the same from step to step until the batch shape or a hyperparameter changes."""
        version, hyper = self.optimizer.snapshot()
        watch = self.watching_values  # read once: watch_values() may change it from another thread meanwhile
        plan = self._plan_for(batch, hyper, watch)
        structure = self.optimizer.structure(hyper)
        self._ensure_state(structure)
        scalars = self._scalars(hyper, self.step_count + 1)
        # 0-d arrays of each parameter's dtype (as traced): float32 math stays float32, and NumPy's ufuncs take
        # a same-dtype 0-d array about twice as fast as a Python float
        layout = plan.layout
        raw = [scalars[n][k] for n, k in layout.scalars]
        if raw and max(map(abs, raw)) > self._largest:  # cast, it would be inf in every update: say which
            self._refuse_scalars(layout.scalars, raw, hyper)
        values = [self.backend.asarray(np.asarray(x, self.params[n].dtype)) for (n, _), x in zip(layout.scalars, raw)]
        lrs = {n: scalars[n].get("lr") for n in self.params}
        held = ([self.params[n] for n in layout.params] + [self.state[n][s] for n, s in layout.state]
                + [self.buffers[n] for n in layout.buffers])
        if self.optimizer.schedule is not None:  # what the step uses, and what was set ("lr_set")
            hyper = {**self.optimizer.in_use(hyper, self.step_count + 1), "lr_set": hyper["lr"]}
        return _Prepared(signature, version, watch, plan, hyper, held, values, lrs)

    def _diagnose(self, plan, inputs) -> NonFiniteError:
        """Find the first equation whose value is not finite, and name the user's line."""
        xp = self.backend.xp
        found, values = [], {}

        def check(eqn, value):
            values[eqn.outputs[0]] = value
            if not found and np.dtype(value.dtype).kind == "f" and not bool(xp.isfinite(value).all()):
                found.append((eqn, value))

        step = self.step_count + 1
        broken = [n for n, a in zip(plan.layout.params, inputs) if not bool(xp.isfinite(a).all())]
        if broken and step == 1:
            err = NonFiniteError(f"{', '.join(broken)} {'hold' if len(broken) > 1 else 'holds'} values that are not "
                                 "finite before the first step: give the parameters finite initial values")
            err.source, err.step = None, step
            return err
        if broken:  # an update the guard does not see overflowed (it checks the gradients): say so, not "kept"
            err = NonFiniteError(
                f"step {step}: {', '.join(broken)} {'are' if len(broken) > 1 else 'is'} not finite at the start of "
                f"the step: the update of step {step - 1} made {'them' if len(broken) > 1 else 'it'} so (finite "
                f"gradients, but the learning rate times a gradient overflowed {inputs[0].dtype}), and the parameters "
                "cannot go back past that step. Choose a smaller learning rate and start over (--reset, run.reset()).")
            err.source, err.step = None, step
            return err
        alone = self.workers.alone() if self.workers is not None else contextlib.nullcontext()
        with np.errstate(all="ignore"), alone:  # each worker looks at its own shard: the others are doing the same
            evaluate(plan.graph, inputs, xp, on_value=check)
        if not found and self.workers is not None:
            err = NonFiniteError(f"step {step}: another worker's shard of the batch made the loss or a gradient not "
                                 "finite; every worker skipped the step, and the parameters keep their values from "
                                 "before it.")
            err.source, err.step = None, step
            return err
        if not found:
            return NonFiniteError(f"step {step}: the loss or a gradient was not finite; the step was not applied "
                                  "and the parameters keep their values from before it.")
        eqn, value = found[0]
        measuring = eqn.phase == "update" or (eqn.source is not None and eqn.source.filename == "<clipping>")
        if measuring:  # the loss and the gradients are finite: a sum of squares (the guard's, clipping's) overflowed
            operands = [values.get(v, v) for v in eqn.inputs]
            largest = max((float(xp.max(xp.abs(a))) for a in operands if getattr(a, "size", 0)), default=math.inf)
            err = NonFiniteError(
                f"step {step}: a gradient is too large to measure (entries up to {largest:.3g}): its sum of squares, "
                f"which the guard, the dashboard and clipping read, overflows {np.dtype(value.dtype).name}. The run is "
                "exploding; the step was not applied: the parameters keep their values from before it. Lower the "
                "learning rate, or clip each gradient entry (--clip-value).")
            err.source, err.step = None, step
            return err
        kind = "nan" if bool(xp.isnan(value).any()) else "inf"
        src = eqn.source
        where = f"line {src.lineno}: " if src else ""
        part = {"forward": "", "backward": "the backward pass of this line: ", "update": "the optimizer update: "}
        shapes = " and ".join(str(tuple(v.shape)) for v in eqn.inputs)
        code = f"\n    {src.line}" if src and src.line else ""
        err = NonFiniteError(
            f"{where}{part.get(eqn.phase, '')}{eqn.primitive.name} of {shapes} produced {kind} at step {step}.{code}\n"
            "The step was not applied: the parameters keep their values from before it. Common causes: a learning "
            "rate too high (the gradients exploded), or log / division / sqrt of zero or a negative number.")
        err.source, err.step = src, step
        return err

    # -- graphs --------------------------------------------------------------------------------------------------------
    def _latest(self):
        """The plan of the latest step (of the first compiled one before any step): the one that runs, not the
        latest compiled (a drawing may compile one for a batch of its own)."""
        return self._prepared.plan if self._prepared is not None else next(iter(self.plans.values()))

    def _shown(self):
        """The plan whose graphs the step shows: the latest step's, unless that step ran the last, partial batch of
        an epoch (1,500 examples in batches of 32 end with one of 28): then the same plan for the full batch, the
        example batch the step was made with (fit: the cell's batch size), where it is compiled."""
        latest, ready = self._latest(), self._prepared
        if ready is None or not self._partial(ready.signature):
            return latest
        return self.plans.get(self._plan_key(self._full_batch, ready.hyper, ready.watching), latest)

    def _partial(self, signature) -> bool:
        """Whether a batch is the full batch cut short: fewer rows, each array's other axes and dtype the same."""
        batch = [(tuple(shape), str(dtype)) for shape, dtype in signature]
        rows = {shape[0] for shape, _ in batch if shape}
        full = {shape[0] for shape, _ in self._full_batch if shape}
        return (len(batch) == len(self._full_batch) and len(rows) == len(full) == 1 and min(rows) < min(full)
                and all(len(s) == len(f) and s[1:] == f[1:] and d == g
                        for (s, d), (f, g) in zip(batch, self._full_batch)))

    step_graph = property(lambda self: self._shown().graph, doc="The whole step graph (forward, backward, update).")

    @property
    def graph(self):
        """Deprecated: the whole step graph, which Run.graph is not (that is the forward graph): use step_graph."""
        import warnings

        warnings.warn("CompiledStep.graph is the whole step graph; it is now called step_graph (Run.graph is the "
                      "forward graph: step.forward_graph)", DeprecationWarning, stacklevel=2)
        return self.step_graph
    forward_graph = property(lambda self: self._shown().graph.part("forward"))
    backward_graph = property(lambda self: self._shown().graph.part("backward"))
    update_graph = property(lambda self: self._shown().graph.part("update"))



def step_key(seed: int, step: int) -> int:
    """The key of a step's random draws: a run's seed and the step number, both kept whole (64 bits)."""
    return ((int(seed) & 0x7FFFFFFF) << 32) | (int(step) & 0xFFFFFFFF)


def compile_step(loss_fn, params, *example_batch, optimizer=None, backend="auto", groups=None, stats=False,
                 cuda_graph=True, matmul_precision="fp32", buffers=None, seed=0, metrics=()):
    """Compile one training step of `loss_fn(params, *batch)` -> scalar loss.

    params: dict name -> float array, updated in place by each call. optimizer: bp.optim.SGD(...) or Adam(...)
    (default SGD(lr=0.01)); its hyperparameters may be changed at any time. backend: "numpy", "cupy" or "auto".
    groups: param name -> layer name for per-layer learning-rate multipliers (default: names ending in the same
    number form a layer). stats=True also measures every layer's gradient norm, backpropagated signal and update
    ratio (step.last.stats, keyed "grad_norm/<layer>" and so on: bp.train.stats).
    On CuPy, runs of elementwise operations are fused into generated kernels and, with cuda_graph=True (the
    default), the step is replayed as CUDA graphs; matmul_precision="tf32" or "bf16" uses tensor-core math with
    fp32 accumulation for float32 matmuls (default "fp32": exact fp32).
    buffers: dict name -> array the model keeps between steps without training it (batch_norm's running averages);
    then `loss_fn(params, buffers, *batch)` returns `(loss, new_buffers)`, and each step stores the new values in
    place (no gradient flows through them). seed: with the step number, the key of each step's random draws
    (dropout, normal(...) in the model): new numbers at every step, the same for the same seed.

        step = bp.compile_step(loss_fn, params, X[:32], Y[:32], optimizer=bp.optim.SGD(lr=0.1))
        for xb, yb in batches:
            loss = step(xb, yb)
    """
    return CompiledStep(loss_fn, params, example_batch, optimizer, backend, groups, stats, cuda_graph,
                        matmul_precision, buffers, seed, metrics)
