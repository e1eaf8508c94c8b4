"""The flat, typed IR: a Graph is a list of equations over single-assignment variables.

It knows nothing of arrays or backends; it prints as readable Python, forward and backward alike.
"""
from .core import Eqn, Graph, Literal, Source, Var
from .printer import assigned_names, graph_to_python

__all__ = ["Var", "Literal", "Eqn", "Graph", "Source", "graph_to_python", "assigned_names"]
