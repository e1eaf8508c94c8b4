"""A Graph's notebook representation, one output that reads well everywhere:

- `application/vnd.bpmagic.graph+json` for bpmagic's JupyterLab / Notebook 7 renderer: the DOT (composites collapsed)
  and the DOT with every composite open, laid out in the browser by wasm Graphviz, fitted to the output (a graph
  too tall to read whole says what is below), zoomable; a click on a composite opens it.
- `image/svg+xml`, the static record for GitHub, nbviewer, `nbconvert --to html` and a notebook reopened without
  bpmagic: laid out here when Graphviz's `dot` is installed; without it the browser renderer adds the SVG it drew
  to the output, so the saved notebook carries it.
- `text/vnd.graphviz` (DOT, for other Graphviz renderers) and the DOT as text.
"""
from __future__ import annotations

import graphviz

from .dot import graph_to_dot

GRAPHVIZ_MIME = "text/vnd.graphviz"
GRAPH_MIME = "application/vnd.bpmagic.graph+json"


def mimebundle(graph, include=None, exclude=None, **kwargs):
    return Drawing(*_collapsed_and_open(graph))._repr_mimebundle_(include, exclude)


class Drawing:
    """A Graphviz drawing that shows itself in a notebook (see bp.viz.draw); `.dot` is the graphviz.Digraph,
    `.expanded` the same drawing with every composite open (None when it has none)."""

    def __init__(self, dot, expanded=None):
        self.dot = dot
        self.expanded = expanded

    def _repr_mimebundle_(self, include=None, exclude=None):
        return dot_bundle(self.dot, self.expanded)

    @property
    def source(self) -> str:
        return self.dot.source


def draw(obj, collapse=True, expand=False, batch=None):
    """A drawing of a Graph, or of a Run's gradient flow: edges coloured and thickened by gradient magnitude (a log
    scale spanning the edges drawn), nodes showing |data|, mean and |grad|.

    Composites (cross_entropy, softmax, your own @bp.composite) are drawn as one node: expand=True opens them all,
    expand={"cross_entropy"} those named. collapse=False draws every equation, repeated blocks too.
    """
    from ..ir import Graph

    if isinstance(obj, Graph):
        return Drawing(*_collapsed_and_open(obj, collapse=collapse, expand=expand))
    from .flow import gradient_flow

    graph, stats, norms = gradient_flow(obj, batch)
    return Drawing(*_collapsed_and_open(graph, collapse=collapse, expand=expand, layers=obj.step.groups,
                                        stats=stats, grad_norms=norms))


def _collapsed_and_open(graph, collapse=True, expand=False, **kwargs):
    """The drawing asked for, and the one with every composite open (for the browser's click), or None."""
    dot = graph_to_dot(graph, collapse=collapse, expand=expand, **kwargs)
    if not collapse or expand is True or not dot.bp_composites:
        return dot, None
    return dot, graph_to_dot(graph, collapse=True, expand=True, scale=dot.bp_scale, **kwargs)


def svg_of(dot) -> str | None:
    """SVG laid out by Graphviz's `dot`, or None where it is not installed."""
    try:
        return dot.pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, OSError):
        return None  # no `dot` here: the browser lays it out (and records the SVG), or the user reads the DOT


def dot_bundle(dot, expanded=None):
    source = dot.source
    bundle = {"text/plain": source, GRAPHVIZ_MIME: source,
              GRAPH_MIME: {"dot": source, "expanded": expanded.source if expanded is not None else None}}
    svg = svg_of(dot)
    if svg is not None:
        bundle["image/svg+xml"] = svg
    return bundle
