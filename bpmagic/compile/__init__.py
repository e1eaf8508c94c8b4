"""Passes over graphs and the executor that runs a graph on a backend."""
from .passes import common_subexpressions, dead_code_elimination, optimize

__all__ = ["dead_code_elimination", "common_subexpressions", "optimize"]
