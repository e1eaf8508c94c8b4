"""Graph drawings with Graphviz: a Graph's DOT, and how it shows itself in a notebook.

Importing this module makes every Graph render in Jupyter: as SVG when Graphviz's `dot` is installed, as DOT under
the `text/vnd.graphviz` MIME type for a browser-side renderer, and as DOT text otherwise.
"""
from ..ir import core as _core
from .dot import graph_to_dot, repeated_blocks
from .render import Drawing, draw, mimebundle
from .steps import backprop_steps
from .views import GraphView, LiveGraph, StepThrough, live, step_through

_core.Graph.display_hook = staticmethod(mimebundle)

__all__ = ["graph_to_dot", "repeated_blocks", "mimebundle", "draw", "Drawing", "backprop_steps", "step_through",
           "live", "GraphView", "LiveGraph", "StepThrough"]
