"""Elementary functions composed from the elementwise primitives: tan, the inverse trigonometric and hyperbolic
functions, sinh/cosh, log2/log10/exp2, reciprocal, round.

None of these is a primitive (tinygrad's lesson): each is a short formula chosen to stay accurate where the naive
one is not (arcsin through arctan of x / sqrt((1 - x)(1 + x)), arcsinh and arctanh through log1p, sinh through
expm1), and its gradient, of any order, comes from the primitives'.
"""
from __future__ import annotations

import math

import numpy as np

from . import elementwise as _ew
from . import samples as S
from .core import composite

__all__ = ["tan", "arcsin", "arccos", "sinh", "cosh", "arcsinh", "arctanh", "log2", "log10", "exp2", "reciprocal",
           "round", "arccosh", "isnan", "isinf", "isfinite", "logical_and", "logical_or", "logical_xor",
           "logical_not", "conj"]


def _inside_unit(rng, *shape):
    """In (-0.9, 0.9): the domain of arcsin, arccos and arctanh, away from the poles of their derivatives."""
    return S.uniform_in(rng, -0.9, 0.9, *shape)


def _away_from_poles(rng, *shape):
    """In (-1.2, 1.2): inside tan's branch around 0."""
    return S.uniform_in(rng, -1.2, 1.2, *shape)


@composite(samples=S.unary(_away_from_poles), reference=S.jax_numpy("tan"), vjp_math="x̄ = ḡ / cos²x = ḡ · (1 + y²)")
def tan(x):
    """sin(x) / cos(x)."""
    return _ew.sin(x) / _ew.cos(x)


@composite(samples=S.unary(_inside_unit), reference=S.jax_numpy("arcsin"), vjp_math="x̄ = ḡ / √(1 − x²)")
def arcsin(x):
    """Inverse sine, in [-pi/2, pi/2]."""
    # (1 - x)(1 + x) rather than 1 - x*x: exact near |x| = 1
    return _ew.arctan(x / _ew.sqrt((1 - x) * (1 + x)))


@composite(samples=S.unary(_inside_unit), reference=S.jax_numpy("arccos"), vjp_math="x̄ = −ḡ / √(1 − x²)")
def arccos(x):
    """Inverse cosine, in [0, pi]."""
    # 2 arctan(sqrt((1 - x) / (1 + x))) keeps its relative accuracy near x = 1, where pi/2 - arcsin(x) does not
    return 2.0 * _ew.arctan(_ew.sqrt((1 - x) / (1 + x)))


@composite(samples=S.unary(), reference=S.jax_numpy("sinh"), vjp_math="x̄ = ḡ · cosh x")
def sinh(x):
    """(e^x - e^-x) / 2, through expm1 so that small x keep every digit."""
    return 0.5 * (_ew.expm1(x) - _ew.expm1(-x))


@composite(samples=S.unary(), reference=S.jax_numpy("cosh"), vjp_math="x̄ = ḡ · sinh x")
def cosh(x):
    """(e^x + e^-x) / 2."""
    return 0.5 * (_ew.exp(x) + _ew.exp(-x))


def _arcsinh_samples(rng):
    return S.unary()(rng) + [((np.array([0.0, 1e-9, -3e-5, 40.0, -1e3]),), {})]


@composite(samples=_arcsinh_samples, reference=S.jax_numpy("arcsinh"), vjp_math="x̄ = ḡ / √(x² + 1)")
def arcsinh(x):
    """Inverse hyperbolic sine: log(|x| + sqrt(x^2 + 1)) with x's sign, through log1p (accurate near 0)."""
    negative = _ew.less(x, 0.0)
    ax = _ew.where(negative, -x, x)  # |x| whose gradient at 0 is 1, as the odd function's
    # |x| + sqrt(x^2 + 1) - 1 = |x| + x^2 / (1 + sqrt(x^2 + 1)): no cancellation
    y = _ew.log1p(ax + ax * ax / (1 + _ew.sqrt(ax * ax + 1)))
    return _ew.where(negative, -y, y)


@composite(samples=S.unary(_inside_unit), reference=S.jax_numpy("arctanh"), vjp_math="x̄ = ḡ / (1 − x²)")
def arctanh(x):
    """Inverse hyperbolic tangent, for |x| < 1: log((1 + x) / (1 - x)) / 2 through log1p."""
    return 0.5 * _ew.log1p(2.0 * x / (1 - x))


@composite(samples=S.unary(S.positive), reference=S.jax_numpy("log2"), vjp_math="x̄ = ḡ / (x · ln 2)")
def log2(x):
    """Base-2 logarithm."""
    return _ew.log(x) * (1 / math.log(2))


@composite(samples=S.unary(S.positive), reference=S.jax_numpy("log10"), vjp_math="x̄ = ḡ / (x · ln 10)")
def log10(x):
    """Base-10 logarithm."""
    return _ew.log(x) * (1 / math.log(10))


@composite(samples=S.unary(), reference=S.jax_numpy("exp2"), vjp_math="x̄ = ḡ · y · ln 2")
def exp2(x):
    """2 ** x."""
    return _ew.exp(x * math.log(2))


@composite(samples=S.unary(S.away0), reference=S.jax_numpy("reciprocal"), vjp_math="x̄ = −ḡ · y² = −ḡ / x²")
def reciprocal(x):
    """1 / x."""
    return 1.0 / x


def _round_samples(rng):
    return S.unary()(rng) + [((S.normal(rng, 3, 4) * 10,), dict(decimals=1)),
                             ((S.normal(rng, 3, 4) * 100,), dict(decimals=-1)),
                             # halves go to the even neighbour; Python floats: held fixed, checked forward only
                             ((0.5,), {}), ((1.5,), {}), ((2.5,), {}), ((-2.5,), {})]


@composite(samples=_round_samples, reference=S.jax_numpy("round"), vjp_math="x̄ = 0 (piecewise constant)")
def round(x, decimals=0):
    """x rounded to `decimals` digits (halves to even, as NumPy); its gradient is zero."""
    if decimals == 0:
        return _ew.rint(x)
    scale = 10.0 ** decimals
    return _ew.rint(x * scale) / scale  # NumPy rounds this way too


@composite(samples=S.unary(lambda rng, *shape: S.uniform_in(rng, 1.2, 3.0, *shape)), reference=S.jax_numpy("arccosh"),
           vjp_math="x̄ = ḡ / √(x² − 1)")
def arccosh(x):
    """Inverse hyperbolic cosine, for x >= 1."""
    return _ew.log(x + _ew.sqrt((x - 1.0) * (x + 1.0)))


# -- tests on values, and logic on masks (no gradient: boolean outputs) -------------------------------------------
def _special_values(rng):
    return [((np.array([0.0, -1.5, np.inf, -np.inf, np.nan, 2.0]),), {}), ((S.normal(rng, 3, 4),), {})]


@composite(samples=_special_values, reference=S.jax_numpy("isnan"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def isnan(x):
    """True where x is NaN (the only value not equal to itself)."""
    return _ew.not_equal(x, x)


@composite(samples=_special_values, reference=S.jax_numpy("isinf"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def isinf(x):
    """True where x is +inf or -inf."""
    return _ew.equal(_ew.abs(x), math.inf)


@composite(samples=_special_values, reference=S.jax_numpy("isfinite"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def isfinite(x):
    """True where x is neither NaN nor infinite (NaN < inf is false)."""
    return _ew.less(_ew.abs(x), math.inf)


def _truth(x):
    return _ew.not_equal(x, 0)


def _mask_pairs(rng):
    a, b = S.normal(rng, 3, 4) > 0, S.normal(rng, 3, 4) > 0
    return [((a, b), {}), ((a, S.normal(rng, 4) > 0), {}), ((S.normal(rng, 3, 4), b), {})]


@composite(samples=_mask_pairs, reference=S.jax_numpy("logical_and"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def logical_and(a, b):
    """True where both are true (non-zero); also `mask1 & mask2` on traced masks."""
    return _ew.where(_truth(a), _truth(b), False)


@composite(samples=_mask_pairs, reference=S.jax_numpy("logical_or"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def logical_or(a, b):
    """True where either is true (non-zero); also `mask1 | mask2`."""
    return _ew.where(_truth(a), True, _truth(b))


@composite(samples=_mask_pairs, reference=S.jax_numpy("logical_xor"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def logical_xor(a, b):
    """True where exactly one is true (non-zero); also `mask1 ^ mask2`."""
    return _ew.not_equal(_truth(a), _truth(b))


@composite(samples=lambda rng: [((S.normal(rng, 3, 4) > 0,), {}), ((S.normal(rng, 3, 4),), {})],
           reference=S.jax_numpy("logical_not"), differentiable=False, vjp_math="no gradient (boolean output)")
def logical_not(x):
    """True where x is false (zero); also `~mask`."""
    return _ew.equal(x, 0)


@composite(samples=S.unary(), reference=S.jax_numpy("conjugate"), numpy_name="conjugate", vjp_math="x̄ = ḡ")
def conj(x):
    """The complex conjugate: x itself, as bpmagic's arrays are real."""
    return x
