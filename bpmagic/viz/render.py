"""A Graph's notebook representation: SVG when `dot` is installed, DOT for browser-side rendering, DOT text."""
from __future__ import annotations

import graphviz

from .dot import graph_to_dot

GRAPHVIZ_MIME = "text/vnd.graphviz"


def mimebundle(graph, include=None, exclude=None, **kwargs):
    dot = graph_to_dot(graph)
    source = dot.source
    bundle = {"text/plain": source, GRAPHVIZ_MIME: source}
    try:
        bundle["image/svg+xml"] = dot.pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, OSError):
        pass  # no `dot` here: the browser renders the DOT, or the user reads it
    return bundle
