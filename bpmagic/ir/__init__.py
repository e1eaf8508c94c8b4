"""The flat, typed IR: a Graph is a list of equations over single-assignment variables.

It knows nothing of arrays or backends; it prints as readable Python, forward and backward alike.
Its modules, bottom up (each imports only those before it): eqn (Var, Literal, Source, Eqn), printer (reads those),
graph (Graph, which prints itself with the printer).
"""
from .eqn import Eqn, Literal, Source, Var
from .graph import Graph
from .printer import assigned_names, graph_to_python

__all__ = ["Var", "Literal", "Eqn", "Graph", "Source", "graph_to_python", "assigned_names"]
