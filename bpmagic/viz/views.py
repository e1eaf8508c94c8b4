"""Live graph widgets (anywidget; the browser lays the graph out with Graphviz compiled to wasm, bundled in
widgets/dist/graph_view.js): a Run's graph whose edges follow gradient magnitudes while it trains, and the
backprop step-through. Both work in JupyterLab, Notebook 7 and VS Code, with or without a system Graphviz."""
from __future__ import annotations

import threading
import time

import anywidget
from traitlets import Dict, Int, List, Unicode

from ..assets import asset
from ..errors import BackpropError
from .dot import graph_to_dot
from .flow import gradient_flow
from .steps import backprop_steps, show


def _bundle():
    try:
        return asset("dist/graph_view.js")
    except FileNotFoundError:
        return ""


class GraphView(anywidget.AnyWidget):
    """A Graphviz drawing (DOT) shown in the browser, with live edge weights and an optional step-through."""

    _esm = _bundle()
    dot = Unicode("").tag(sync=True)
    edge_weights = Dict().tag(sync=True)  # Graphviz edge id "in0->e3" -> weight in [0, 1]
    steps = List().tag(sync=True)  # [{"node", "edges", "text"}]: the step-through, empty for a plain drawing
    index = Int(-1).tag(sync=True)  # the step shown; -1 = before the first
    intro = Unicode("").tag(sync=True)
    status = Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        if not self._esm:
            raise BackpropError("bpmagic's graph view was not built (widgets/dist/graph_view.js is missing): "
                                "reinstall bpmagic with `pip install .` (needs node ≥ 20 to build from source), or "
                                "draw the graph statically with bp.viz.draw(...)")
        super().__init__(**kwargs)


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
    """A Run's forward graph; while it trains, edge colour and width follow the gradient magnitude at each value
    (log scale, relative to the largest), refreshed about once a second from the run's own thread."""

    def __init__(self, run, interval=1.0):
        graph, stats = gradient_flow(run)
        dot = graph_to_dot(graph, layers=run.step.groups)
        order = _value_order(graph)
        self._edge_position = {key: order[var] for key, var in dot.bp_edges.items() if var in order}
        super().__init__(dot=dot.source)
        self._run, self._interval, self._last = run, interval, 0.0
        self._lock = threading.Lock()
        self._show(graph, stats)
        run.subscribe(self._update)

    def _update(self, run):
        now = time.monotonic()
        finished = run.status not in ("running", "created")
        if not finished and now - self._last < self._interval:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._last = now
            self._show(*gradient_flow(run))
        finally:
            self._lock.release()

    def _show(self, graph, stats):
        # the run's loss is traced afresh each time: the k-th value of every trace is the same value of the program
        weights = stats.get("_weights", {})
        by_position = {i: weights[v] for v, i in _value_order(graph).items() if v in weights}
        self.edge_weights = {key: round(by_position[i], 3) for key, i in self._edge_position.items()
                             if i in by_position}
        run = self._run
        loss = f" · loss {run.loss:.4g}" if run.loss is not None else ""
        self.status = (f"{run.status}, step {run.steps_done}{loss} · edges: |gradient| on a log scale, "
                       "pale = smallest, red = largest")


def _value_order(graph) -> dict:
    """Var -> its position among the graph's inputs and equation outputs."""
    values = list(graph.inputs) + [e.outputs[0] for e in graph.eqns]
    return {v: i for i, v in enumerate(values)}
