"""The NumPy backend: arrays on the CPU."""
import numpy as np

from . import blas
from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def runner(self, graph, run):
        return blas.runner(graph, run)  # the step's BLAS thread count, chosen by timing (backends/blas.py)
