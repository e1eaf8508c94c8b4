"""Graph drawings with Graphviz: a Graph's DOT, and how it shows itself in a notebook.

Importing this module makes every Graph render in Jupyter: as SVG when Graphviz's `dot` is installed, as DOT under
the `text/vnd.graphviz` MIME type for a browser-side renderer, and as DOT text otherwise. The live widgets
(`step_through`, `live`) import ipywidgets only when first used, so `import bpmagic` stays quick.
"""
from ..ir import Graph as _Graph
from .dot import graph_to_dot, repeated_blocks
from .render import Drawing, draw, mimebundle
from .steps import backprop_steps

_Graph.display_hook = staticmethod(mimebundle)
_WIDGETS = ("GraphView", "LiveGraph", "StepThrough")


def step_through(fn, *args, name=None):
    """A widget that walks backpropagation through the scalar function `fn` at `args` (a scalar program, a tiny
    MLP) node by node; its numbers are `bp.viz.backprop_steps(fn, *args)`."""
    from .views import StepThrough

    return StepThrough(fn, *args, name=name)


def live(run, interval=1.0):
    """A widget with the graph of `run`, its edges following gradient magnitudes while it trains."""
    from .views import LiveGraph

    return LiveGraph(run, interval)


def __getattr__(name):
    if name in _WIDGETS:
        from . import views

        return getattr(views, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["graph_to_dot", "repeated_blocks", "mimebundle", "draw", "Drawing", "backprop_steps", "step_through",
           "live", "GraphView", "LiveGraph", "StepThrough"]
