"""Elementwise primitives: unary math, broadcasting binary arithmetic, comparisons, where, astype.

Every binary primitive broadcasts like NumPy, and its VJP sums the cotangent back to each operand's shape.
"""
from __future__ import annotations

import numpy as np

from . import shape as _shape
from .core import Primitive, shape_error

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "exp", "log", "tanh", "sigmoid", "relu",
    "maximum", "minimum", "where", "abs", "sqrt", "sign", "greater", "greater_equal", "less", "less_equal",
    "equal", "not_equal", "astype", "stop_gradient", "square",
]


# -- shape rules ------------------------------------------------------------------------------------------------
def _broadcast(name):
    def rule(*avals):
        try:
            shape = np.broadcast_shapes(*(a.shape for a in avals))
        except ValueError:
            raise shape_error(name, avals, "shapes do not broadcast (trailing axes must be equal or 1)") from None
        return shape, np.result_type(*(a.dtype for a in avals))

    return rule


def _same(a):
    return a.shape, a.dtype


def _float_same(a):
    return a.shape, (a.dtype if np.dtype(a.dtype).kind in "fc" else np.result_type(a.dtype, np.float32))


def _compare(name):
    rule = _broadcast(name)
    return lambda a, b: (rule(a, b)[0], np.dtype(bool))


def _unbroadcast(g, a):
    return _shape.unbroadcast(g, a.shape)


# -- unary --------------------------------------------------------------------------------------------------------
negative = Primitive("negative", lambda xp, x: xp.negative(x), _same, lambda g, out, x: (-g,), ufunc="negative",
                     fused="(-{0})", symbol="-")
exp = Primitive("exp", lambda xp, x: xp.exp(x), _float_same, lambda g, out, x: (g * out,), ufunc="exp",
                fused="exp({0})")
log = Primitive("log", lambda xp, x: xp.log(x), _float_same, lambda g, out, x: (g / x,), ufunc="log",
                fused="log({0})")
tanh = Primitive("tanh", lambda xp, x: xp.tanh(x), _float_same, lambda g, out, x: (g * (1 - out * out),),
                 ufunc="tanh", fused="tanh({0})")
sqrt = Primitive("sqrt", lambda xp, x: xp.sqrt(x), _float_same, lambda g, out, x: (g * 0.5 / out,), ufunc="sqrt",
                 fused="sqrt({0})")
# zero gradient almost everywhere (None: no cotangent flows back)
sign = Primitive("sign", lambda xp, x: xp.sign(x), _same, lambda g, out, x: (None,), ufunc="sign",
                 fused="({T}({0} > {T}(0)) - {T}({0} < {T}(0)))")
abs = Primitive("abs", lambda xp, x: xp.abs(x), _same, lambda g, out, x: (g * sign(x),), ufunc="absolute",
                fused="fabs({0})")


def _sigmoid(xp, x, out=None):
    # the tanh form never overflows (1 / (1 + exp(-x)) warns for x << 0)
    out = xp.multiply(x, 0.5, out=out)
    out = xp.asarray(out)  # an array even for 0-d x, so that it can be written in place
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


sigmoid = Primitive("sigmoid", _sigmoid, _float_same, lambda g, out, x: (g * out * (1 - out),), accepts_out=True,
                    fused="({T}(0.5) * tanh({T}(0.5) * {0}) + {T}(0.5))")  # the same tanh form
# g * (out > 0): a multiply by a boolean mask is several times cheaper than where(mask, g, 0)
relu = Primitive("relu", lambda xp, x, out=None: xp.maximum(x, 0, out=out), _same,
                 lambda g, out, x: (multiply(g, greater(out, 0.0)),), accepts_out=True, fused="max({0}, {T}(0))")


# (g * 2) * x rather than 2 * g * x: when g is a constant (the seed of a mean), g * 2 folds into it
square = Primitive("square", lambda xp, x: xp.square(x), _same, lambda g, out, x: ((g * 2.0) * x,),
                   ufunc="square", fused="({0} * {0})")


# -- binary -------------------------------------------------------------------------------------------------------
add = Primitive("add", lambda xp, a, b: xp.add(a, b), _broadcast("add"),
                lambda g, out, a, b: (_unbroadcast(g, a), _unbroadcast(g, b)), ufunc="add", fused="({0} + {1})",
                symbol="+")
subtract = Primitive("subtract", lambda xp, a, b: xp.subtract(a, b), _broadcast("subtract"),
                     lambda g, out, a, b: (_unbroadcast(g, a), _unbroadcast(-g, b)), ufunc="subtract",
                     fused="({0} - {1})", symbol="-")
multiply = Primitive("multiply", lambda xp, a, b: xp.multiply(a, b), _broadcast("multiply"),
                     lambda g, out, a, b: (_unbroadcast(g * b, a), _unbroadcast(g * a, b)), ufunc="multiply",
                     fused="({0} * {1})", symbol="*")


def _divide_vjp(g, out, a, b):
    ga = g / b
    return _unbroadcast(ga, a), _unbroadcast(-(ga * out), b)


divide = Primitive("divide", lambda xp, a, b: xp.true_divide(a, b), _broadcast("divide"), _divide_vjp,
                   ufunc="true_divide", fused="({0} / {1})", symbol="/")


def _power_vjp(g, out, x, y):
    if getattr(y, "_bp_trace", None) is None and y.ndim == 0:  # a constant exponent, as in x ** 2
        k = y.item()
        gx = g * k * (x if k == 2 else power(x, k - 1))
        return _unbroadcast(gx, x), None
    gx = g * y * power(x, y - 1)
    # d/dy x**y = log(x) x**y; where x <= 0 the log is undefined, and there we give 0 (as JAX does)
    gy = g * out * log(where(x > 0, x, 1.0))
    return _unbroadcast(gx, x), _unbroadcast(gy, y)


power = Primitive("power", lambda xp, x, y: xp.power(x, y), _broadcast("power"), _power_vjp, ufunc="power",
                  fused="pow({0}, {1})", symbol="**")


def _minmax_vjp(pick):
    def rule(g, out, a, b):
        a_wins = pick(a, b)
        tie = equal(a, b)
        # ties split the gradient evenly, so that maximum(x, x) has gradient 1 in total
        wa = astype(a_wins, g.dtype) + 0.5 * astype(tie, g.dtype)
        return _unbroadcast(g * wa, a), _unbroadcast(g * (1 - wa), b)

    return rule


maximum = Primitive("maximum", lambda xp, a, b: xp.maximum(a, b), _broadcast("maximum"),
                    _minmax_vjp(lambda a, b: greater(a, b)), ufunc="maximum", fused="max({0}, {1})")
minimum = Primitive("minimum", lambda xp, a, b: xp.minimum(a, b), _broadcast("minimum"),
                    _minmax_vjp(lambda a, b: less(a, b)), ufunc="minimum", fused="min({0}, {1})")

# -- comparisons (no gradient) ----------------------------------------------------------------------------------
def _comparison(name, ufunc, op):
    return Primitive(name, lambda xp, a, b: getattr(xp, ufunc)(a, b), _compare(name), ufunc=ufunc,
                     fused=f"({{0}} {op} {{1}})", differentiable=False)


greater = _comparison("greater", "greater", ">")
greater_equal = _comparison("greater_equal", "greater_equal", ">=")
less = _comparison("less", "less", "<")
less_equal = _comparison("less_equal", "less_equal", "<=")
equal = _comparison("equal", "equal", "==")
not_equal = _comparison("not_equal", "not_equal", "!=")


# -- where, astype, stop_gradient ----------------------------------------------------------------------------------
def _where_rule(c, a, b):
    shape, _ = _broadcast("where")(c, a, b)
    return shape, np.result_type(a.dtype, b.dtype)


def _where_vjp(g, out, c, a, b):
    return None, _unbroadcast(where(c, g, 0.0), a), _unbroadcast(where(c, 0.0, g), b)


_where = Primitive("where", lambda xp, c, a, b: xp.where(c, a, b), _where_rule, _where_vjp, nondiff_inputs=(0,),
                   fused="where_({0}, {1}, {2})")


def where(condition, a, b):
    """Elementwise choice: a where `condition` is true, else b (broadcasting). Differentiable in a and b."""
    return _where(condition, a, b)


def _astype_vjp(g, out, x, dtype):
    return (astype(g, x.dtype) if np.dtype(x.dtype).kind in "fc" else None),


_astype = Primitive("astype", lambda xp, x, dtype: x.astype(dtype), lambda x, dtype: (x.shape, np.dtype(dtype)),
                    _astype_vjp, fused="{T}({0})")


def astype(x, dtype):
    """x converted to `dtype` (the gradient converts back)."""
    dtype = np.dtype(dtype)
    if getattr(x, "dtype", None) == dtype:
        return x
    return _astype(x, dtype=dtype)


stop_gradient = Primitive("stop_gradient", lambda xp, x: x, _same, lowering=lambda ctx, x, out=None: x,
                          differentiable=False, doc="x itself, but no gradient flows back through it.")
