"""Special functions that NumPy lacks, computed with `xp` arithmetic alone (so the same code runs on CuPy): erf.

erf is a primitive: it cannot be composed from the other primitives in closed form, and gelu's exact form needs it.
Its derivative is elementary (2/sqrt(pi) exp(-x^2)), so its VJP is written with primitives as usual.
"""
from __future__ import annotations

import math

import numpy as np

from . import elementwise as _ew
from . import samples as S
from .onnx import op
from .core import Primitive

__all__ = ["erf"]

_SPLIT = 2.5  # below: the power series converges fast; above: the continued fraction does
_TERMS = 40  # both reach 1e-15 relative accuracy (checked against math.erf on [-7, 7])


def erf_impl(xp, x):
    """erf(x) to about 1e-15 relative: a series of positive terms (no cancellation) below |x| = 2.5, the continued
    fraction of erfc above, odd symmetry for the sign."""
    ax = xp.abs(x)
    # erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1))
    small = xp.minimum(ax, _SPLIT)
    x2 = small * small
    term = small
    total = small
    for n in range(1, _TERMS):
        term = term * (2 * x2) / (2 * n + 1)
        total = total + term
    series = (2 / math.sqrt(math.pi)) * xp.exp(-x2) * total
    # erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))), evaluated from the tail
    big = xp.maximum(ax, _SPLIT)
    frac = big
    for k in range(_TERMS, 0, -1):
        frac = big + (k / 2) / frac
    tail = 1 - xp.exp(-big * big) / (math.sqrt(math.pi) * frac)
    return xp.sign(x) * xp.where(ax < _SPLIT, series, tail)


def _erf_vjp(g, out, x):
    return (g * (2 / math.sqrt(math.pi)) * _ew.exp(-(x * x)),)


def _erf_shape(x):
    return x.shape, (x.dtype if np.dtype(x.dtype).kind == "f" else np.result_type(x.dtype, np.float32))


def _tails(rng, *shape):
    """|x| in [2, 4], either sign: both sides of the switch to the continued fraction."""
    return S.uniform_in(rng, 2.0, 4.0, *shape) * rng.choice([-1.0, 1.0], shape)


erf = Primitive("erf", lambda xp, x: xp.asarray(erf_impl(xp, x)), _erf_shape, _erf_vjp, fused="erf({0})",
                doc="The error function, 2/√π ∫₀ˣ e^(−t²) dt.", onnx=op("Erf"),
                jax=lambda jax, x: jax.scipy.special.erf(x),
                numpy_name=None, samples=S.join(S.unary(), S.unary(_tails, shapes=[(3, 4)])),
                reference=lambda jax: jax.scipy.special.erf, vjp_math="x̄ = ḡ · (2/√π) · e^(−x²)")
