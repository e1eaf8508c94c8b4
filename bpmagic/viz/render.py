"""A Graph's notebook representation: SVG when `dot` is installed, DOT for browser-side rendering, DOT text."""
from __future__ import annotations

import graphviz

from .dot import graph_to_dot

GRAPHVIZ_MIME = "text/vnd.graphviz"


def mimebundle(graph, include=None, exclude=None, **kwargs):
    return dot_bundle(graph_to_dot(graph))


class Drawing:
    """A Graphviz drawing that shows itself in a notebook (see bp.viz.draw); `.dot` is the graphviz.Digraph."""

    def __init__(self, dot):
        self.dot = dot

    def _repr_mimebundle_(self, include=None, exclude=None):
        return dot_bundle(self.dot)

    @property
    def source(self) -> str:
        return self.dot.source


def draw(obj, collapse=True, batch=None):
    """A drawing of a Graph, or of a Run's gradient flow: edges coloured and thickened by gradient magnitude,
    nodes showing |data|, mean and |grad|. collapse=False expands repeated blocks."""
    from ..ir import Graph

    if isinstance(obj, Graph):
        return Drawing(graph_to_dot(obj, collapse=collapse))
    from .flow import gradient_flow

    graph, stats = gradient_flow(obj, batch)
    return Drawing(graph_to_dot(graph, layers=obj.step.groups, stats=stats, collapse=collapse))


def dot_bundle(dot):
    source = dot.source
    bundle = {"text/plain": source, GRAPHVIZ_MIME: source}
    try:
        bundle["image/svg+xml"] = dot.pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, OSError):
        pass  # no `dot` here: the browser renders the DOT, or the user reads it
    return bundle
