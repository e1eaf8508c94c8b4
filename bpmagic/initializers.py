"""Initialisers for %%backprop Params: randn, zeros, ones, normal, uniform — seeded, in the run's dtype."""
from __future__ import annotations

import numpy as np


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(int(s) for s in shape)


def initializers(rng: np.random.Generator, dtype) -> dict:
    """name -> function, drawing from `rng` and returning NumPy arrays of `dtype`."""

    def randn(*shape):
        """Standard normal numbers: randn(2, 8) or randn((2, 8))."""
        return rng.standard_normal(_shape(shape)).astype(dtype)

    def normal(*shape, mean=0.0, std=1.0):
        return (mean + std * rng.standard_normal(_shape(shape))).astype(dtype)

    def uniform(*shape, low=0.0, high=1.0):
        return rng.uniform(low, high, _shape(shape)).astype(dtype)

    def zeros(*shape):
        return np.zeros(_shape(shape), dtype)

    def ones(*shape):
        return np.ones(_shape(shape), dtype)

    return {"randn": randn, "normal": normal, "uniform": uniform, "zeros": zeros, "ones": ones}
