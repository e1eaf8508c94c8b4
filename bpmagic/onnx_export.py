"""Export to ONNX: a trained model's forward graph, with its parameters as initializers, for onnxruntime and friends.

Each primitive declares its ONNX counterpart with its other facets (`Primitive.onnx`, helpers in ops/onnx.py); this
module walks a Graph and asks each equation's primitive for its nodes. Values keep the names the user's code gave
them (W1, h, logits), so the exported model reads like the cell. A primitive with no counterpart is one message
naming it and the user's line.
"""
from __future__ import annotations

import numpy as np

from .errors import BackpropError
from .ir import Graph, Literal, Var, assigned_names
from .ir.printer import Namer
from .trace import at_source

OPSET = 18  # Reduce* take their axes as an input from 18 on


class _Context:
    """What a primitive's ONNX rule may use (see ops/onnx.py): nodes, constants, the operands' and result's types."""

    def __init__(self, helper, numpy_helper, namer):
        self.helper, self.numpy_helper, self.fresh = helper, numpy_helper, namer
        self.nodes, self.initializers = [], []
        self.operands, self.result = (), None

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
        return self.const(np.asarray(list(values), np.int64))

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


def export_graph(graph: Graph, path=None, initializers: dict | None = None, opset: int = OPSET, names_given=None):
    """`graph` as an ONNX ModelProto (written to `path` when given); `initializers` maps some of its inputs to
    arrays stored in the model (trained parameters), the other inputs stay the model's inputs. `names_given`:
    Var -> the name the user's code gave it (default: found from the graph's source lines)."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise BackpropError("exporting to ONNX needs the onnx package: pip install onnx") from None
    initializers = initializers or {}
    # the names the user's code gave the values; an output without one is the model's "output"
    hints = {**{v: "output" if len(graph.outputs) == 1 else f"output{k}" for k, v in enumerate(graph.outputs)},
             **(names_given or assigned_names(graph))}
    namer = Namer(hints)
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
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), list(v.shape))

    inputs = []
    for v in graph.inputs:
        names[v] = namer(v)
        ctx._dtypes[names[v]] = np.dtype(v.dtype)
        if v in initializers:
            array = np.asarray(_host(initializers[v]), v.dtype)
            ctx.initializers.append(numpy_helper.from_array(array, names[v]))
        else:
            inputs.append(tensor_info(v, names[v]))
    for v, value in graph.consts.items():
        names[v] = namer(v)
        array = np.asarray(_host(value))
        ctx.initializers.append(numpy_helper.from_array(array, names[v]))
        ctx._dtypes[names[v]] = array.dtype
    for e in graph.eqns:
        rule = e.primitive.onnx
        ctx.operands, ctx.result = e.inputs, e.outputs[0]
        first_new = len(ctx.nodes)
        out = None
        if rule is not None:
            out = rule(ctx, *(name_of(v, e) for v in e.inputs), **e.params)
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


def export_onnx(model, path, inputs=None, outputs=None, include_loss=False, opset: int = OPSET):
    """Write a trained model to `path` as ONNX (opset 18), checked by onnx.checker; returns the ModelProto.

    model: a Run (from %%backprop or bp.fit) or a Graph. For a Run, its forward graph is traced afresh on `inputs`
    (arrays for the loss function's first batch arguments, the model's inputs; default: the run's first batch
    without its last argument, the targets), with the trained parameters (and buffers) stored as initializers. The
    model's outputs are what the loss reads from the model — the values computed without the targets that the
    loss's equations use (the logits, say) — or the values named in `outputs` (the names of the cell's variables,
    e.g. ["h", "logits"]). include_loss=True also takes the targets as inputs and returns the loss.
    """
    if isinstance(model, Graph):
        return export_graph(model, path, opset=opset)
    graph, initializers, names = _forward_graph(model, inputs, outputs, include_loss)
    return export_graph(graph, path, initializers, opset, names)


def _forward_graph(run, inputs, outputs, include_loss):
    from .backends import get_backend
    from .trace import new_trace

    step = run.step
    if step is None:
        raise BackpropError("this Run was loaded from a file: export from the run that trained it (or bp.fit again)")
    batch = [np.asarray(_host(d[:run.batch_size])) for d in run.data]
    if inputs is None:
        inputs = batch[:-1] if len(batch) > 1 else batch
    inputs = [np.asarray(_host(x)) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
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
    names = assigned_names(graph)  # on the whole program: a line's last value is the one the user named
    if outputs is not None:
        by_name = {**{v: v.name for v in graph.inputs}, **names}
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
    graph = _needed(Graph(keep_inputs, graph.eqns, model_outputs, graph.consts, graph.name))
    params = {**run.params, **step.buffers}
    initializers = {v: params[v.name] for v in graph.inputs if v.name in params}
    return graph, initializers, names


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


def _needed(graph: Graph) -> Graph:
    """Only the equations the outputs need."""
    need = set(graph.outputs)
    eqns = []
    for e in reversed(graph.eqns):
        if any(o in need for o in e.outputs):
            eqns.append(e)
            need.update(v for v in e.inputs if isinstance(v, Var))
    eqns.reverse()
    inputs = [v for v in graph.inputs if v in need]
    consts = {v: a for v, a in graph.consts.items() if v in need}
    return Graph(inputs, eqns, graph.outputs, consts, graph.name)
