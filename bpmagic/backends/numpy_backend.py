"""The NumPy backend: arrays on the CPU."""
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = np
