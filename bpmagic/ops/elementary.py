"""Elementary functions composed from the elementwise primitives: tan, the inverse trigonometric and hyperbolic
functions, sinh/cosh, log2/log10/exp2, reciprocal, round, remainders and floor division, hypot, sinc, copysign, the
NaN-ignoring fmax/fmin, the tests on values (isnan, signbit, ...), logic on masks and select.

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
           "logical_not", "conj", "remainder", "mod", "floor_divide", "divmod", "hypot", "logaddexp2", "fmax", "fmin",
           "signbit", "copysign", "deg2rad", "rad2deg", "radians", "degrees", "fabs", "sinc", "nan_to_num", "real",
           "imag", "angle", "positive", "select"]


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


# -- remainders and integer division --------------------------------------------------------------------------------
@composite(samples=S.off_integer_quotients, reference=S.jax_numpy("remainder"),
           vjp_math="ā = ḡ, b̄ = −ḡ · ⌊a / b⌋ (each summed to its operand's shape)")
def remainder(a, b):
    """a mod b with the sign of b (Python's %, np.remainder, np.mod): a − b · ⌊a / b⌋, computed exactly."""
    r = _ew.fmod(a, b)
    # fmod keeps a's sign; where that is not b's, one more b brings r into b's range (NumPy and JAX do the same)
    other_side = logical_and(_ew.not_equal(r, 0), _ew.not_equal(_ew.less(r, 0), _ew.less(b, 0)))
    return _ew.where(other_side, r + b, r)


mod = remainder  # np.mod is np.remainder


def _dtype(x):
    dtype = getattr(x, "dtype", None)  # (a dtype is falsy: `or` would not do)
    return np.result_type(x) if dtype is None else np.dtype(dtype)


@composite(samples=lambda rng: S.off_integer_quotients(rng) + [((np.array([7, -7, 9]), np.array([2, 2, -4])), {})],
           reference=S.jax_numpy("floor_divide"), vjp_math="ā = b̄ = 0 (piecewise constant)")
def floor_divide(a, b):
    """⌊a / b⌋ (Python's //, np.floor_divide), so that a == b · (a // b) + a % b; its gradient is zero."""
    # (a − a % b) / b is an integer up to rounding, as in NumPy's own divmod; rint removes the rounding
    q = _ew.rint((a - remainder(a, b)) / b)
    dtype = np.result_type(_dtype(a), _dtype(b))
    return _ew.astype(q, dtype) if dtype.kind in "iu" else q


@composite(samples=S.off_integer_quotients, reference=S.jax_numpy("divmod"),
           vjp_math="as floor_divide (0) and remainder: ā = ḡᵣ, b̄ = −ḡᵣ · ⌊a / b⌋, ḡᵣ the remainder's cotangent")
def divmod(a, b):
    """(a // b, a % b), as Python's divmod and np.divmod."""
    return floor_divide(a, b), remainder(a, b)


# -- more functions of NumPy's ------------------------------------------------------------------------------------
@composite(samples=S.binary(S.away0, S.away0),
           reference=S.jax_numpy("hypot"), vjp_math="ā = ḡ · a / y, b̄ = ḡ · b / y (0 at a = b = 0)")
def hypot(a, b):
    """√(a² + b²), the length of the side opposite the right angle, without overflow: the larger of |a| and |b|
    times √(1 + r²), r the ratio of the smaller to the larger."""
    a, b = _ew.abs(a), _ew.abs(b)
    a_smaller = _ew.less(a, b)  # where(), not maximum(): its gradient at a tie goes to one side, which is exact here
    big, small = _ew.where(a_smaller, b, a), _ew.where(a_smaller, a, b)
    ratio = small / _ew.where(_ew.equal(big, 0.0), 1.0, big)
    out = big * _ew.sqrt(1.0 + ratio * ratio)
    return _ew.where(logical_or(isinf(a), isinf(b)), math.inf, out)


@composite(samples=S.join(S.binary(), lambda rng: [((S.normal(rng, 3, 4) * 30, S.normal(rng, 3, 4) * 30), {})]),
           reference=S.jax_numpy("logaddexp2"), vjp_math="ā = ḡ · 2^(a − y), b̄ = ḡ · 2^(b − y)")
def logaddexp2(a, b):
    """log₂(2^a + 2^b), without overflow."""
    ln2 = math.log(2)
    return _ew.logaddexp(a * ln2, b * ln2) * (1 / ln2)


def _with_nans(rng):
    a, b = S.distinct(rng, (3, 4), (3, 4))
    a[0, 1] = b[1, 2] = np.nan
    return [(S.distinct(rng, sa, sb), {}) for sa, sb in [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3), (3,))]] + [
        ((a, b), {})]


@composite(samples=_with_nans, reference=S.jax_numpy("fmax"),
           vjp_math="as maximum, and ā = ḡ where b is NaN (b̄ = ḡ where a is NaN)")
def fmax(a, b):
    """The larger of a and b, entry by entry, ignoring a NaN (np.fmax): the other value where one is NaN."""
    return _ew.where(isnan(b), a, _ew.where(isnan(a), b, _ew.maximum(a, b)))


@composite(samples=_with_nans, reference=S.jax_numpy("fmin"),
           vjp_math="as minimum, and ā = ḡ where b is NaN (b̄ = ḡ where a is NaN)")
def fmin(a, b):
    """The smaller of a and b, entry by entry, ignoring a NaN (np.fmin)."""
    return _ew.where(isnan(b), a, _ew.where(isnan(a), b, _ew.minimum(a, b)))


def _signed_zeros(rng):
    return [((np.array([-0.0, 0.0, -1.5, 2.0, -np.inf]),), {}), ((S.normal(rng, 3, 4),), {}),
            ((np.array([-3, 0, 4]),), {})]


@composite(samples=_signed_zeros, reference=S.jax_numpy("signbit"), differentiable=False,
           vjp_math="no gradient (boolean output)")
def signbit(x):
    """True where x's sign bit is set: x < 0, and -0.0 too."""
    # atan2(x, −1) is π for +0 and −π for −0 (IEEE's signed zeros), and has x's sign elsewhere
    return _ew.less(_ew.arctan2(x, -1.0), 0.0)


@composite(samples=lambda rng: [((S.away0(rng, 3, 4), S.away0(rng, 3, 4)), {}),
                                ((S.away0(rng, 3), -1.0), {})],
           reference=S.jax_numpy("copysign"), vjp_math="ā = ḡ · sign(a) · (±1 by b's sign), b̄ = 0")
def copysign(a, b):
    """|a| with the sign of b (of its sign bit: -0.0 counts as negative)."""
    magnitude = _ew.abs(a)
    return _ew.where(signbit(b), -magnitude, magnitude)


@composite(samples=S.unary(), reference=S.jax_numpy("deg2rad"), vjp_math="x̄ = ḡ · π / 180")
def deg2rad(x):
    """Degrees to radians: x · π / 180."""
    return x * (math.pi / 180)


@composite(samples=S.unary(), reference=S.jax_numpy("rad2deg"), vjp_math="x̄ = ḡ · 180 / π")
def rad2deg(x):
    """Radians to degrees: x · 180 / π."""
    return x * (180 / math.pi)


radians, degrees = deg2rad, rad2deg  # NumPy's other names for them
fabs = _ew.abs  # np.fabs: |x| of floats


_SINC_SERIES = 0.05  # below this |πx| the series 1 − z²/6 + z⁴/120 − z⁶/5040 is exact to 1e-16


@composite(samples=S.join(S.unary(), lambda rng: [((np.array([0.0, 1e-3, -0.01, 0.0159, 0.016, 1.0, -2.0]),), {})]),
           reference=S.jax_numpy("sinc"), vjp_math="x̄ = ḡ · (cos(πx) − sinc(x)) / x (0 at x = 0)")
def sinc(x):
    """sin(πx) / (πx), and 1 at 0 (NumPy's normalised sinc)."""
    z = x * math.pi
    series = _ew.less(_ew.abs(z), _SINC_SERIES)
    safe = _ew.where(series, 1.0, z)  # no 0 / 0 in the branch not taken
    z2 = z * z
    # near 0 its Taylor series, whose derivatives at 0 are sinc's (0, then −π²/3): sin(z) / z through a where
    # would give 0 as the second derivative there
    return _ew.where(series, 1.0 - z2 / 6.0 * (1.0 - z2 / 20.0 * (1.0 - z2 / 42.0)), _ew.sin(safe) / safe)


def _nan_to_num_samples(rng):
    x = S.normal(rng, 3, 4)
    x[0, 0], x[1, 2], x[2, 3] = np.nan, np.inf, -np.inf
    return [((x,), {}), ((x,), dict(nan=-1.0, posinf=9.0, neginf=-9.0)), ((S.normal(rng, 5),), {})]


@composite(samples=_nan_to_num_samples, reference=S.jax_numpy("nan_to_num"),
           vjp_math="x̄ = ḡ where x is finite, 0 where it was replaced")
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """x with NaN replaced by `nan` (0), +inf by `posinf` and −inf by `neginf` (default: the largest and smallest
    finite numbers of x's dtype)."""
    dtype = np.dtype(_dtype(x))
    if dtype.kind not in "fc":
        return x
    big = float(np.finfo(dtype).max)
    x = _ew.where(isnan(x), nan, x)
    x = _ew.where(_ew.equal(x, math.inf), big if posinf is None else posinf, x)
    return _ew.where(_ew.equal(x, -math.inf), -big if neginf is None else neginf, x)


@composite(samples=S.unary(), reference=S.jax_numpy("real"), vjp_math="x̄ = ḡ")
def real(x):
    """The real part: x itself, as bpmagic's arrays are real."""
    return x


@composite(samples=S.unary(), reference=S.jax_numpy("imag"), differentiable=False,
           vjp_math="no gradient (zero for real x)")
def imag(x):
    """The imaginary part: zeros shaped like x, as bpmagic's arrays are real."""
    from .constants import zeros_like

    return zeros_like(x)


@composite(samples=lambda rng: [((S.away0(rng, 3, 4),), {}), ((S.away0(rng, 5),), dict(deg=True))],
           reference=S.jax_numpy("angle"), vjp_math="x̄ = 0 (0 or π by x's sign)")
def angle(z, deg=False):
    """The angle of z in the complex plane: 0 for x ≥ 0 and π for x < 0 (and −0.0), as bpmagic's arrays are real."""
    from .constants import zeros_like

    out = _ew.arctan2(zeros_like(z), z)
    return out * (180 / math.pi) if deg else out


@composite(samples=S.unary(), reference=S.jax_numpy("positive"), vjp_math="x̄ = ḡ")
def positive(x):
    """+x: x itself."""
    return x


def _select_samples(rng):
    x = S.normal(rng, 3, 4)
    conds = [x > 1.0, x < -0.5]  # built from fixed data: they are held fixed
    return [((conds, [S.normal(rng, 3, 4), S.normal(rng, 4)]), {}),
            ((conds, [S.normal(rng, 3, 4), S.normal(rng, 3, 4)]), dict(default=S.normal(rng, 3, 1))),
            (([x > 0], [S.normal(rng, 3, 4)]), dict(default=-1.0))]


@composite(samples=_select_samples, reference=S.jax_numpy("select"),
           vjp_math="each choice gets ḡ where its condition is the first true one; the default where none is")
def select(condlist, choicelist, default=0):
    """choicelist[i] where condlist[i] is the first true condition, else `default` (np.select), broadcasting."""
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist) or not condlist:
        from ..errors import ShapeError

        raise ShapeError(f"select needs one choice per condition (and at least one), got {len(condlist)} "
                         f"conditions and {len(choicelist)} choices")
    out = default
    for condition, choice in reversed(list(zip(condlist, choicelist))):  # the first true condition is applied last
        out = _ew.where(condition, choice, out)
    return out
