"""Constants: zeros ones full empty zeros_like ones_like full_like empty_like eye arange linspace, with NumPy's
signatures.

None of them is a primitive: a constant has no inputs to differentiate, so it needs no equation. Called on plain
arrays or shapes they return arrays (NumPy's, or CuPy's for a CuPy argument). `*_like` of a traced value returns a
constant of that trace, shaped like it (its gradient with respect to the value is zero, as in NumPy's sense of a
constant); `zeros((x.shape[0], 16))` while tracing is an ordinary array that becomes a constant of the graph where
it meets a traced value. So a cell's first RNN state is a constant, never a trained parameter.

In a %%backprop cell the bare names come from `for_cell(dtype)`: floats default to the cell's dtype (float32
unless --dtype), so a constant never promotes a float32 model to float64, and shapes may be written as in the
Param initialisers (`zeros(2, 8)` as well as `zeros((2, 8))`).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..backends import array_module
from ..errors import ShapeError
from . import samples as _s
from .core import composite

__all__ = ["zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "eye", "arange", "linspace", "empty",
           "empty_like"]


def _jnp(name):
    return lambda jax: getattr(jax.numpy, name)


def _concrete(value, name, what):
    if getattr(value, "_bp_trace", None) is not None:
        raise ShapeError(f"{name}: {what} must be a number, not a traced value (a constant cannot depend on the "
                         "values being trained)")
    return value


@composite(samples=lambda rng: [(((3, 4),), {}), ((5,), {"dtype": np.float32}), (((),), {})],
           reference=_jnp("zeros"), vjp_math="no gradient (a constant)")
def zeros(shape, dtype=float):
    """An array of zeros, as np.zeros."""
    return np.zeros(shape, dtype)


@composite(samples=lambda rng: [(((3, 4),), {}), ((5,), {"dtype": np.float32})], reference=_jnp("ones"),
           vjp_math="no gradient (a constant)")
def ones(shape, dtype=None):
    """An array of ones, as np.ones."""
    return np.ones(shape, dtype)


@composite(samples=lambda rng: [(((3, 4), 0.5), {}), ((2, 7), {"dtype": np.float64})], reference=_jnp("full"),
           vjp_math="no gradient (a constant)")
def full(shape, fill_value, dtype=None):
    """An array filled with `fill_value`, as np.full."""
    return np.full(shape, _concrete(fill_value, "full", "fill_value"), dtype)


def _like(name, a, fill, dtype, shape):
    shape = tuple(a.shape) if shape is None else shape
    dtype = a.dtype if dtype is None else dtype
    trace = getattr(a, "_bp_trace", None)
    if trace is not None:  # a constant of that trace, on its backend
        return trace.const(trace.backend.xp.full(shape, _concrete(fill, name, "fill_value"), dtype))
    return array_module(a).full(shape, fill, dtype)


@composite(samples=_s.unary(), reference=_jnp("zeros_like"), vjp_math="ā = 0 (a constant shaped like a)")
def zeros_like(a, dtype=None, shape=None):
    """Zeros with a's shape and dtype, as np.zeros_like."""
    return _like("zeros_like", a, 0, dtype, shape)


@composite(samples=_s.unary(), reference=_jnp("ones_like"), vjp_math="ā = 0 (a constant shaped like a)")
def ones_like(a, dtype=None, shape=None):
    """Ones with a's shape and dtype, as np.ones_like."""
    return _like("ones_like", a, 1, dtype, shape)


@composite(samples=lambda rng: [((_s.normal(rng, 3, 4), 0.25), {}), ((_s.normal(rng, 2), -1.5), {})],
           reference=_jnp("full_like"), vjp_math="ā = 0 (a constant shaped like a)")
def full_like(a, fill_value, dtype=None, shape=None):
    """`fill_value` with a's shape and dtype, as np.full_like."""
    return _like("full_like", a, fill_value, dtype, shape)


@composite(samples=lambda rng: [((3,), {}), ((2, 4), {"k": 1}), ((4,), {"dtype": np.float32})],
           reference=_jnp("eye"), vjp_math="no gradient (a constant)")
def eye(N, M=None, k=0, dtype=float):
    """The identity matrix (ones on diagonal k), as np.eye."""
    return np.eye(N, M, k, dtype)


@composite(samples=lambda rng: [((5,), {}), ((1.0, 2.0, 0.25), {}), ((2, 9, 3), {})], reference=_jnp("arange"),
           vjp_math="no gradient (a constant)")
def arange(start, stop=None, step=None, dtype=None):
    """Evenly spaced values in [start, stop), as np.arange."""
    args = [_concrete(v, "arange", "start, stop and step") for v in (start, stop, step) if v is not None]
    return np.arange(*args, dtype=dtype)


@composite(samples=lambda rng: [((0.0, 1.0, 5), {}), ((-1.0, 1.0), {"num": 4, "endpoint": False})],
           reference=_jnp("linspace"), vjp_math="no gradient (a constant)")
def linspace(start, stop, num=50, endpoint=True, dtype=None):
    """`num` evenly spaced values from start to stop, as np.linspace."""
    start, stop = (_concrete(v, "linspace", "start and stop") for v in (start, stop))
    return np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype)


@composite(samples=lambda rng: [(((3, 4),), {}), ((5,), {"dtype": np.float32})], reference=_jnp("zeros"),
           vjp_math="no gradient (a constant)")
def empty(shape, dtype=float):
    """An array of `shape` (np.empty): NumPy leaves its values unset; here they are zeros, as a graph holds no
    uninitialised memory."""
    return np.zeros(shape, dtype)


@composite(samples=_s.unary(), reference=_jnp("zeros_like"), vjp_math="ā = 0 (a constant shaped like a)")
def empty_like(a, dtype=None, shape=None):
    """An array shaped like a (np.empty_like): zeros here (see empty)."""
    return _like("empty_like", a, 0, dtype, shape)


def for_cell(dtype) -> dict:
    """The constants as bare names of a %%backprop cell: floats default to the cell's `dtype`, and a shape may be
    written as separate numbers (`zeros(2, 8)`), as in the Param initialisers."""
    dtype = np.dtype(dtype)

    def shape_of(shape):
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            return tuple(shape[0])
        return tuple(shape)

    def cell_zeros(*shape, dtype=dtype):
        return zeros(shape_of(shape), dtype)

    def cell_empty(*shape, dtype=dtype):
        return empty(shape_of(shape), dtype)

    def cell_ones(*shape, dtype=dtype):
        return ones(shape_of(shape), dtype)

    def cell_full(shape, fill_value, dtype=dtype):
        return full(shape, fill_value, dtype)

    def cell_eye(N, M=None, k=0, dtype=dtype):
        return eye(N, M, k, dtype)

    def cell_arange(start, stop=None, step=None, dtype=None):
        # integers stay integers (indices, as np.arange gives); float ranges take the cell's dtype
        floats = any(isinstance(v, float) for v in (start, stop, step))
        return arange(start, stop, step, dtype if dtype is not None or not floats else cell_dtype)

    def cell_linspace(start, stop, num=50, endpoint=True, dtype=dtype):
        return linspace(start, stop, num, endpoint, dtype)

    cell_dtype = dtype
    made = {"zeros": cell_zeros, "empty": cell_empty, "ones": cell_ones, "full": cell_full, "eye": cell_eye, "arange": cell_arange,
            "linspace": cell_linspace}
    for name, fn in made.items():
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = f"{globals()[name].__doc__} Floats default to the cell's dtype ({dtype})."
    return made
