"""Live graph widgets (anywidget; the browser lays the graph out with Graphviz compiled to wasm, bundled from
frontend/ into bpmagic/widgets/graph_view.js): a Run's graph whose edges follow gradient magnitudes while it trains,
and the backprop step-through. Both work in JupyterLab, Notebook 7 and VS Code, with or without a system Graphviz.

Each is followed by its record (bpmagic/record.py): a static image of the graph for GitHub, nbviewer, nbconvert and
a notebook reopened without a kernel. The browser view writes what it drew into the record (no system Graphviz
needed), and the live graph records its final colours when the run ends; where the kernel has Graphviz's `dot`, the
record has an image from the start."""
from __future__ import annotations

import threading
import time

import anywidget
from traitlets import Dict, Int, List, Unicode, observe

from ..assets import BuiltView, module
from ..record import Record, Recorded
from ..train.describe import format_loss
from .dot import edge_colour, edge_width, graph_to_dot, log_scale, weight
from .flow import gradient_flow
from .render import svg_of
from .steps import backprop_steps, show


class GraphView(BuiltView, anywidget.AnyWidget, Recorded):
    """A Graphviz drawing (DOT) shown in the browser, with live edge weights and an optional step-through."""

    _esm = module("graph_view.js")
    unbuilt_hint = ", or draw the graph statically with bp.viz.draw(...)"
    dot = Unicode("").tag(sync=True)
    dot_expanded = Unicode("").tag(sync=True)  # the same graph with every composite open ("" when it has none)
    edge_weights = Dict()  # Graphviz edge id "in0->e3" -> weight in [0, 1], in either drawing
    # what the browser draws for each weighted edge: [colour, width], as the static drawing's (viz/dot.py)
    edge_styles = Dict().tag(sync=True)
    steps = List().tag(sync=True)  # [{"node", "edges", "text"}]: the step-through, empty for a plain drawing
    index = Int(-1).tag(sync=True)  # the step shown; -1 = before the first
    intro = Unicode("").tag(sync=True)
    status = Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._record = Record()
        self.record_token = self._record.token

    @observe("edge_weights")
    def _restyle(self, _change=None):
        self.edge_styles = {key: [edge_colour(w), edge_width(w)] for key, w in self.edge_weights.items()}

    def _ipython_display_(self):
        from IPython.display import display

        bundle = self._repr_mimebundle_()  # None, a dict, or (data, metadata)
        data = dict(bundle[0] if isinstance(bundle, tuple) else bundle or {})
        # what a reader without the widget sees above the record (nbconvert's HTML, a plain frontend): a title, not
        # the view's state at display time (the record below holds the latest), nor a request for a kernel
        data["text/plain"] = self.title()
        display(data, raw=True)
        self._record.show(self.record_bundle())

    def record_bundle(self) -> dict:
        """The record: the drawing laid out here where Graphviz's `dot` is installed, else the summary (the
        browser view then records what it drew)."""
        return self._record.bundle(svg_of(self.static_drawing()), self.summary())

    def summary(self) -> str:
        return self.status or self.intro or "bpmagic graph view"

    def title(self) -> str:
        return "bpmagic graph view"

    def static_drawing(self):
        """The graphviz drawing of what the view shows now, for the output's static image."""
        import graphviz

        return graphviz.Source(self.dot)


class StepThrough(GraphView):
    """Walk the backward pass node by node: `.step()`, `.back()`, `.reset()` here or the buttons in the browser.
    `.steps_data` holds the numbers (a BackpropSteps); `.current` is the step shown."""

    def __init__(self, fn, *args, name=None):
        data = backprop_steps(fn, *args, name=name)
        super().__init__(
            dot=data.dot.source,
            steps=[{"node": s.node, "edges": s.edges, "text": s.text} for s in data],
            intro=(f"L = {data.value:.6g}. Press Step ▶ to send the adjoint dL/dL = 1 backwards, one node at a "
                   f"time, in reverse topological order ({len(data)} steps)."))
        self.steps_data = data
        # the step after which each input's gradient is complete: its answer stays hidden until then
        self._complete_at = {name: max((s.index for s in data for c in s.contributions if c.input == name),
                                       default=-1) for name in data.gradients}
        self.observe(self._show_known_gradients, names="index")
        self._show_known_gradients()

    def _show_known_gradients(self, _=None):
        shown = [f"dL/d{k} = {show(v)}" if self.index >= self._complete_at[k] else f"dL/d{k} = ?"
                 for k, v in self.steps_data.gradients.items()]
        self.status = "gradients at the inputs: " + ", ".join(shown)

    def title(self) -> str:
        n = len(self.steps)
        return f"Backpropagation through {self.steps_data.graph.name}, node by node ({n} step{'s' * (n != 1)})"

    @property
    def current(self):
        return self.steps_data[self.index] if self.index >= 0 else None

    def step(self):
        self.index = min(self.index + 1, len(self.steps) - 1)
        return self.current

    def back(self):
        self.index = max(self.index - 1, -1)
        return self.current

    def reset(self):
        self.index = -1


class LiveGraph(GraphView):
    """A Run's forward graph; while it trains, edge colour and width follow the gradient magnitude at each value,
    refreshed about once a second. The colour scale is fixed when the view is made (log10 |gradient|, from a decade
    below the smallest edge to the largest), so edges fade as gradients shrink and redden as they grow.

    The drawing's first colours come from one gradient flow computed here; from then on the training step itself
    measures the gradient at every value (step.watch_values: one more reduction per value and step, until the run
    ends or the view is closed), so an update only reads the last step's numbers. The drawing stays that of the
    run's full batch: an epoch's last, partial batch runs a plan of its own, whose k-th value is the same value of
    the program, so its numbers colour the same edges."""

    def __init__(self, run, interval=1.0):
        run.step.watch_values()  # first: the drawing below is then of the plan the run will go on with
        graph, _, norms = gradient_flow(run)
        self._layers = run.step.groups
        drawing = graph_to_dot(graph, layers=self._layers, grad_norms=norms)
        expanded = graph_to_dot(graph, layers=self._layers, expand=True) if drawing.bp_composites else None
        self._order = _value_order(graph)
        self._edge_position = {key: self._order[var] for d in (drawing, expanded) if d is not None
                               for key, var in d.bp_edges.items() if var in self._order}
        lo, hi = drawing.bp_scale or log_scale(norms.values()) or (0.0, 1.0)
        self.scale = (lo - 1.0, hi)
        super().__init__(dot=drawing.source, dot_expanded=expanded.source if expanded is not None else "")
        self._run, self._interval, self._last = run, interval, 0.0
        self._graph = graph
        self._measured = (None, {})  # (the plan whose values were measured last, their positions)
        self._lock = threading.Lock()
        self._show({i: norms[v] for v, i in self._order.items() if v in norms})
        run.subscribe(self._update)

    def _update(self, run):
        now = time.monotonic()
        finished = run.ended
        if not finished and now - self._last < self._interval:
            return
        if not self._lock.acquire(blocking=not finished):  # the final update must not be skipped
            return
        try:
            self._last = now
            step = run.step
            info = step.last
            if info is not None and info.value_grads:  # a step since watching began
                order = self._order_of(step, info.value_grads)
                self._show({order[v]: n for v, n in info.value_grads.items() if v in order})
            if finished:  # the step measures for nobody now; the record shows the final colours (the browser
                step.watch_values(False)  # view records what it drew too)
                self._record.update(self.record_bundle(), self)
        finally:
            self._lock.release()

    def _order_of(self, step, value_grads) -> dict:
        """Var -> position in the loss graph of the plan that measured `value_grads` (the latest step's plan, read
        apart from its numbers: a step may have run between the two reads)."""
        some = next(iter(value_grads))
        plan, order = self._measured
        if plan is None or some not in order:
            plan = next((p for p in [step.plan, *list(step.plans.values())] if some in p.layout.watched), None)
            order = _value_order(plan.loss_graph) if plan is not None else {}
            self._measured = (plan, order)
        return order

    def title(self) -> str:
        return (f"The graph of {self._run.name!r}: each edge's colour and width show the size of the gradient "
                "flowing back along it")

    def close(self):
        """A closed view no longer follows the run, nor has its step measure for it."""
        run = getattr(self, "_run", None)  # None when the widget failed while it was made (ipywidgets closes it)
        if run is not None:
            run.unsubscribe(self._update)
            run.step.watch_values(False)
        super().close()

    def _show(self, by_position):
        """by_position: position of a value in the program (see _value_order) -> |gradient| there."""
        self._by_position = by_position
        self.edge_weights = {key: round(weight(by_position[i], self.scale), 3)
                             for key, i in self._edge_position.items() if i in by_position}
        run = self._run
        loss = f" · loss {format_loss(run.loss)}" if run.loss is not None else ""
        largest = max((by_position[i] for i in set(self._edge_position.values()) if i in by_position), default=0.0)
        lo, hi = self.scale
        self.status = (f"{run.status}, step {run.steps_done}{loss} · largest |gradient| on an edge {largest:.3g} · "
                       f"edge colour: log10 |gradient| from {lo:.1f} (pale blue) to {hi:.1f} (dark red), "
                       "fixed at the start")

    def static_drawing(self):
        norms = {v: self._by_position[i] for v, i in self._order.items() if i in self._by_position}
        return graph_to_dot(self._graph, layers=self._layers, grad_norms=norms, scale=self.scale)


def _value_order(graph) -> dict:
    """Var -> its position among the graph's inputs and equation outputs."""
    values = list(graph.inputs) + [e.outputs[0] for e in graph.eqns]
    return {v: i for i, v in enumerate(values)}
