"""Export to ONNX: a trained model's forward graph, with its parameters as initializers, for onnxruntime and friends.

Each primitive declares its ONNX counterpart with its other facets (`Primitive.onnx`, helpers in ops/onnx.py); this
module walks a Graph and asks each equation's primitive for its nodes. Values keep the names the user's code gave
them (W1, h, logits), so the exported model reads like the cell. A primitive with no counterpart is one message
naming it and the user's line.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compile.passes import dead_code_elimination
from .errors import BackpropError
from .ir import Graph, Literal, Var
from .ir.printer import Namer
from .usercode import at_source

OPSET = 18  # Reduce* take their axes as an input from 18 on


@dataclass(frozen=True)
class BatchDim:
    """A dimension that grows with the batch: scale × batch + offset. Found by tracing the model at two batch
    sizes: a dimension that differs between them is one of these (a reshape to (x.shape[0], 64), a constant
    zeros((x.shape[0], 16)))."""

    scale: int
    offset: int

    def __str__(self):
        text = "batch" if self.scale == 1 else f"{self.scale}*batch"
        return text + (f"{self.offset:+d}" if self.offset else "")


@dataclass(frozen=True)
class Shaped:
    """What a rule sees of a value (ctx.operands, ctx.result): its dtype and its shape, BatchDims included."""

    shape: tuple
    dtype: object


class _Context:
    """What a primitive's ONNX rule may use (see ops/onnx.py): nodes, constants, the operands' and result's types."""

    def __init__(self, helper, numpy_helper, namer):
        self.helper, self.numpy_helper, self.fresh = helper, numpy_helper, namer
        self.nodes, self.initializers = [], []
        self.operands, self.result = (), None
        self.batch_input, self._batch = None, None  # the model input whose first dimension is the batch

    def node(self, op_type, inputs, outputs=1, **attrs):
        names = [self.fresh(op_type) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value, like=None):
        """An initializer holding `value` (with `like`, a scalar in the dtype of that ONNX value)."""
        dtype = self._dtypes[like] if like is not None else None
        array = np.asarray(value, dtype)
        name = self.fresh("const")
        self.initializers.append(self.numpy_helper.from_array(array, name))
        self._dtypes[name] = array.dtype
        return name

    def ints(self, values):
        """A 1-d int64 tensor of `values`; an entry that is a BatchDim is computed from the model's batch input."""
        values = list(values)
        if not any(isinstance(v, BatchDim) for v in values):
            return self.const(np.asarray(values, np.int64))
        parts, run = [], []
        for v in values + [None]:
            if isinstance(v, BatchDim) or v is None:
                if run:
                    parts.append(self.const(np.asarray(run, np.int64)))
                    run = []
                if v is not None:
                    part = self.batch()
                    if v.scale != 1:
                        part = self.node("Mul", [part, self.const(np.asarray([v.scale], np.int64))])
                    if v.offset:
                        part = self.node("Add", [part, self.const(np.asarray([v.offset], np.int64))])
                    parts.append(part)
            else:
                run.append(int(v))
        return parts[0] if len(parts) == 1 else self.node("Concat", parts, axis=0)

    def batch(self):
        """[the batch size] (1-d int64), read from the model's batch input's shape."""
        if self._batch is None:
            if self.batch_input is None:
                raise BackpropError("the model's shapes depend on the batch size, but no input of the model carries "
                                    "the batch: export with batch_size=N")
            self._batch = self.node("Shape", [self.batch_input], start=0, end=1)
        return self._batch

    def cast(self, name, dtype):
        """`name` as `dtype` (a Cast node unless it has that dtype already; the dtypes of the graph's values and
        constants are known, a rule's intermediate results are taken to be of the result's dtype)."""
        dtype = np.dtype(dtype)
        if self._dtypes.get(name, np.dtype(self.result.dtype)) == dtype:
            return name
        out = self.node("Cast", [name], to=self.helper.np_dtype_to_tensor_dtype(dtype))
        self._dtypes[out] = dtype
        return out

    def cast_to_result(self, names):
        return [self.cast(n, self.result.dtype) for n in names]

    def cast_common(self, names):
        common = np.result_type(*(self._dtypes[n] for n in names))
        return [self.cast(n, common) for n in names]


def export_graph(graph: Graph, path=None, initializers: dict | None = None, opset: int = OPSET,
                 batch: "Batched | None" = None):
    """`graph` as an ONNX ModelProto (written to `path` when given); `initializers` maps some of its inputs to
    arrays stored in the model (trained parameters), the other inputs stay the model's inputs; values keep the
    names their trace gave them (the user's, trace.name_values). `batch`: where the
    graph's shapes grow with the batch (see Batched): those dimensions are symbolic in the model."""
    batch = batch or Batched()
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise BackpropError("exporting to ONNX needs the onnx package: pip install onnx") from None
    initializers = initializers or {}
    # an output the user's code did not name is the model's "output"
    namer = Namer({v: "output" if len(graph.outputs) == 1 else f"output{k}" for k, v in enumerate(graph.outputs)})
    counters: dict = {}

    def fresh(op_type):
        counters[op_type] = counters.get(op_type, 0) + 1
        return f"{op_type}_{counters[op_type]}"

    ctx = _Context(helper, numpy_helper, fresh)
    ctx._dtypes = {}
    names = {}

    def name_of(v, eqn=None):
        if isinstance(v, Literal):
            return ctx.const(np.asarray(v.value, v.dtype_in(eqn) if eqn is not None else v.dtype))
        return names[v]

    def tensor_info(v, name):
        dims = [str(d) if isinstance(d, BatchDim) else d for d in batch.shape(v)]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), dims)

    inputs = []
    for v in graph.inputs:
        names[v] = namer(v)
        ctx._dtypes[names[v]] = np.dtype(v.dtype)
        if v in initializers:
            array = np.asarray(_host(initializers[v]), v.dtype)
            ctx.initializers.append(numpy_helper.from_array(array, names[v]))
        else:
            inputs.append(tensor_info(v, names[v]))
            if ctx.batch_input is None and batch.shape(v)[:1] == (BatchDim(1, 0),):
                ctx.batch_input = names[v]
    for v, value in graph.consts.items():
        names[v] = namer(v)
        array = np.asarray(_host(value))
        ctx._dtypes[names[v]] = array.dtype
        if batch.shape(v) == tuple(array.shape):
            ctx.initializers.append(numpy_helper.from_array(array, names[v]))
        else:  # filled with one value (zeros((x.shape[0], 16)) as an RNN's first state): made at the batch's size
            ctx.nodes.append(helper.make_node("ConstantOfShape", [ctx.ints(batch.shape(v))], [names[v]],
                                              value=numpy_helper.from_array(array.reshape(-1)[:1])))
    for e in graph.eqns:
        rule = e.primitive.onnx
        ctx.operands = tuple(Shaped(batch.shape(v), v.dtype) for v in e.inputs)
        ctx.result = Shaped(batch.shape(e.outputs[0]), e.outputs[0].dtype)
        first_new = len(ctx.nodes)
        out = None
        if rule is not None:
            try:
                out = rule(ctx, *(name_of(v, e) for v in e.inputs), **batch.params(e))
            except TypeError as error:  # a rule that computes with a dimension that grows with the batch
                if not batch.symbolic:
                    raise
                raise at_source(e.source, BackpropError(
                    f"{e.primitive.name} of {', '.join(str(o.shape) for o in ctx.operands)} is exported for one "
                    f"batch size only: export with batch_size=N to fix the batch ({error})")) from None
        if out is None:
            raise at_source(e.source, BackpropError(
                f"{e.primitive.name} has no ONNX counterpart, so this model cannot be exported"
                + (" (randomness such as dropout: export a model without it)" if "random" in e.primitive.effects
                   else " (it appears in backward passes, or this use of it is not mapped)")))
        if ctx._dtypes.get(out, np.dtype(e.outputs[0].dtype)) != e.outputs[0].dtype:  # known, and not the result's
            out = ctx.cast(out, e.outputs[0].dtype)
        final = namer(e.outputs[0])
        made_here = ctx.nodes[first_new:]
        if any(out in n.output for n in made_here):  # the rule's own node: give its result the user's name
            for n in made_here:
                n.output[:] = [final if o == out else o for o in n.output]
                n.input[:] = [final if i == out else i for i in n.input]
        else:  # the rule passed an operand through (an index that selects everything, say)
            ctx.nodes.append(helper.make_node("Identity", [out], [final]))
        names[e.outputs[0]] = final
        ctx._dtypes[final] = np.dtype(e.outputs[0].dtype)
    outputs = [tensor_info(v, names[v]) for v in graph.outputs]
    model = helper.make_model(
        helper.make_graph(ctx.nodes, graph.name, inputs, outputs, ctx.initializers),
        opset_imports=[helper.make_opsetid("", opset)], producer_name="bpmagic",
        ir_version=10)  # onnxruntime reads up to IR 13; onnx writes newer by default
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, str(path))
    return model


def _host(x):
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x


def export_onnx(model, path, inputs=None, outputs=None, include_loss=False, opset: int = OPSET, batch_size=None):
    """Write a trained model to `path` as ONNX (opset 18), checked by onnx.checker; returns the ModelProto.

    model: a Run (from %%backprop or bp.fit) or a Graph. For a Run, its forward graph is traced afresh on `inputs`
    (arrays for the loss function's first batch arguments, the model's inputs; default: the run's first batch
    without its last argument, the targets), with the trained parameters (and buffers) stored as initializers. The
    model's outputs are what the loss reads from the model — the values computed without the targets that the
    loss's equations use (the logits, say) — or the values named in `outputs` (the names of the cell's variables,
    e.g. ["h", "logits"]). include_loss=True also takes the targets as inputs and returns the loss.

    The batch axis is symbolic: the model runs at any batch size (as torch.onnx's dynamic axes), found by tracing
    the model at two batch sizes. batch_size=N fixes it to N instead (the inputs are cut or repeated to that size).
    Randomness such as dropout is off: the model is exported as it is evaluated.
    """
    if isinstance(model, Graph):
        return export_graph(model, path, opset=opset)
    if batch_size is not None:
        graph, initializers, _ = _forward_graph(model, inputs, outputs, include_loss, int(batch_size))
        return export_graph(graph, path, initializers, opset)
    graph, initializers, n = _forward_graph(model, inputs, outputs, include_loss)
    grown, *_ = _forward_graph(model, inputs, outputs, include_loss, grow=1)
    return export_graph(graph, path, initializers, opset, Batched.compare(graph, grown, n))


class Batched:
    """Where a graph traced at batch size N grows at N + 1: each Var's shape with BatchDims, and the equations'
    `shape` parameters likewise. Compared equation by equation with the same model traced at N + 1."""

    def __init__(self, shapes=None, params=None, n=None):
        self.shapes, self._params, self.n = shapes or {}, params or {}, n

    @property
    def symbolic(self) -> bool:
        return self.n is not None

    def shape(self, v) -> tuple:
        return self.shapes.get(v, tuple(v.shape))

    def params(self, e) -> dict:
        return self._params.get(e, e.params)

    @classmethod
    def compare(cls, graph, grown, n: int) -> "Batched":
        if len(graph.eqns) != len(grown.eqns) or len(graph.inputs) != len(grown.inputs):
            raise BackpropError("the model computes differently at another batch size (Python code that branches on "
                                "x.shape[0]?): export it for one size with batch_size=N")

        def dims(a, b):
            return tuple(d if d == g else BatchDim(g - d, d - (g - d) * n) for d, g in zip(a, b))

        shapes = {}
        pairs = [*zip(graph.inputs, grown.inputs), *zip(graph.consts, grown.consts)]
        pairs += [(o, g) for e, f in zip(graph.eqns, grown.eqns) for o, g in zip(e.outputs, f.outputs)]
        for v, w in pairs:
            if tuple(v.shape) != tuple(w.shape):
                shapes[v] = dims(v.shape, w.shape)
        for v, w in zip(graph.consts, grown.consts):
            if v in shapes and not _uniform(graph.consts[v]):
                raise BackpropError(f"a constant of the model of shape {tuple(v.shape)} grows with the batch and is "
                                    "not filled with one value: export with batch_size=N to fix the batch")
        params = {}
        for e, f in zip(graph.eqns, grown.eqns):
            if e.primitive is not f.primitive:
                raise BackpropError(f"the model computes differently at another batch size ({e.primitive.name} here, "
                                    f"{f.primitive.name} there): export it for one size with batch_size=N")
            for a, b in zip(e.inputs, f.inputs):
                if isinstance(a, Literal) and not np.array_equal(np.asarray(a.value), np.asarray(b.value)):
                    raise at_source(e.source, BackpropError(
                        f"{e.primitive.name} uses the number {a.value} here, which changes with the batch size (a "
                        "mean over the batch?): export with batch_size=N to fix the batch"))
            if e.params != f.params:
                changed = {k for k in e.params if e.params[k] != f.params.get(k)}
                if changed != {"shape"}:
                    raise at_source(e.source, BackpropError(
                        f"{e.primitive.name}'s {', '.join(sorted(changed))} changes with the batch size: export with "
                        "batch_size=N to fix the batch"))
                params[e] = {**e.params, "shape": dims(e.params["shape"], f.params["shape"])}
        return cls(shapes, params, n)


def _uniform(array) -> bool:
    flat = np.asarray(_host(array)).reshape(-1)
    return flat.size == 0 or bool((flat == flat[0]).all())


def _forward_graph(run, inputs, outputs, include_loss, batch_size=None, grow=0):
    from .backends import get_backend
    from .tracing import new_trace

    step = run.step
    if step is None:
        raise BackpropError("this Run was loaded from a file: export from the run that trained it (or bp.fit again)")
    batch = [np.asarray(_host(d[:run.batch_size])) for d in run.data]
    if inputs is None:
        inputs = batch[:-1] if len(batch) > 1 else batch
    inputs = [np.asarray(_host(x)) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    if batch_size is not None:  # cut or repeated to that size
        inputs = [np.resize(x, (batch_size,) + x.shape[1:]) for x in inputs]
    if grow:  # one example more: what grows with the batch (Batched.compare)
        inputs = [np.concatenate([x, x[:grow]]) for x in inputs]
    if len(inputs) > len(batch):
        raise BackpropError(f"inputs: {len(inputs)} arrays, but the loss function takes {len(batch)} batch arguments")
    n = inputs[0].shape[0]
    # the targets: only their shapes matter (the model's outputs do not depend on them)
    targets = [np.zeros((n,) + b.shape[1:], b.dtype) for b in batch[len(inputs):]]
    names = step.batch_names
    with new_trace(get_backend("numpy")) as tr:
        p_in = {k: tr.new_input(np.asarray(_host(p)), name=k) for k, p in run.params.items()}
        buf_in = {k: tr.new_input(np.asarray(_host(b)), name=k) for k, b in step.buffers.items()}
        x_in = [tr.new_input(x, name=nm) for x, nm in zip(inputs, names)]
        t_in = [tr.new_input(t, name=nm) for t, nm in zip(targets, names[len(inputs):])]
        loss, _ = step.call_loss(p_in, x_in + t_in, buf_in)
        graph = tr.graph(list(p_in.values()) + list(buf_in.values()) + x_in + t_in, [loss], name=run.name)
    targets_v = {t._bp_var for t in t_in}
    if outputs is not None:  # named on the whole program (a line's last value is the one the user named)
        by_name = {v: v.name for v in graph.inputs + [o for e in graph.eqns for o in e.outputs] if v.name}
        wanted = [outputs] if isinstance(outputs, str) else list(outputs)
        found = {name: v for v, name in by_name.items() if name in wanted}
        missing = [w for w in wanted if w not in found]
        if missing:
            raise BackpropError(f"outputs: no value named {', '.join(missing)} in the model; its named values are "
                                f"{', '.join(sorted(set(by_name.values())))}")
        model_outputs = [found[w] for w in wanted]
    else:
        model_outputs = _read_by_the_loss(graph, targets_v) if targets_v else [graph.outputs[0]]
    if include_loss and graph.outputs[0] not in model_outputs:
        model_outputs.append(graph.outputs[0])
    keep_inputs = [v for v in graph.inputs if v not in targets_v or include_loss]
    graph = dead_code_elimination(Graph(keep_inputs, graph.eqns, model_outputs, graph.consts, graph.name),
                                  drop_inputs=True)
    params = {**run.params, **step.buffers}
    initializers = {v: params[v.name] for v in graph.inputs if v.name in params}
    return graph, initializers, n


def _read_by_the_loss(graph, targets):
    """What the loss reads from the model: the values computed without the targets that an equation using the
    targets reads — from outside the composite it belongs to (cross_entropy reads the logits, not its own
    log-softmax)."""
    groups, group, previous = [], -1, None
    for e in graph.eqns:  # a composite call records its equations one after the other
        top = e.scope[0] if e.scope else None
        if top is None or top != previous:
            group += 1
        groups.append(group)
        previous = top
    made_in = {o: g for e, g in zip(graph.eqns, groups) for o in e.outputs}
    tainted, found = set(targets), []
    using = {g for e, g in zip(graph.eqns, groups) if any(v in tainted for v in e.inputs if isinstance(v, Var))}
    for e, g in zip(graph.eqns, groups):
        if any(v in tainted for v in e.inputs if isinstance(v, Var)) or g in using and e.scope:
            tainted.update(e.outputs)
    for e, g in zip(graph.eqns, groups):
        if e.outputs[0] not in tainted:
            continue
        for v in e.inputs:
            if (isinstance(v, Var) and v not in tainted and v not in found and v not in graph.inputs
                    and v not in graph.consts
                    and made_in.get(v) != g):
                found.append(v)
    return found

