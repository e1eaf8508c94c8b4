"""Elementwise primitives: unary math, broadcasting binary arithmetic, comparisons, where, astype.

Every binary primitive broadcasts like NumPy, and its VJP sums the cotangent back to each operand's shape
(`unbroadcast`, here because every binary VJP ends with it). A constant operand (a number written in the graph)
gets no cotangent, so none is computed: the backward graph holds only work whose result is used.

A function is a primitive here when it cannot be composed accurately from the others: exp/log and their
log1p/expm1 (accurate near 0), tanh, sin/cos, arctan (the inverse trigonometric and hyperbolic functions are
composed from it and log1p in ops/elementary.py), sqrt, and the piecewise-constant floor/ceil/rint/sign (gradient
zero). sigmoid and relu are primitives because they are the step's hot path (one in-place kernel each); logaddexp
because its gradient, exp(a - out), is smooth at a = b, where every composition through max or |a - b| has a kink.
"""
from __future__ import annotations

import numpy as np

from . import samples as S
from .core import Primitive, composite, exposes, shape_error
from .onnx import compare, of_x, op

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "exp", "log", "tanh", "sigmoid", "relu",
    "maximum", "minimum", "where", "abs", "sqrt", "sign", "greater", "greater_equal", "less", "less_equal",
    "equal", "not_equal", "astype", "stop_gradient", "square", "sin", "cos", "arctan", "log1p", "expm1",
    "floor", "ceil", "rint", "trunc", "logaddexp", "unbroadcast", "fmod", "arctan2", "bitwise_and",
    "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift", "nextafter",
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


# -- the adjoint of broadcasting ---------------------------------------------------------------------------------
def _unbroadcast_reference(jax):
    def unbroadcast(g, shape):
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1)
        return jax.numpy.sum(g, axis=axes).reshape(shape)

    return unbroadcast


def _unbroadcast_samples(rng):
    pairs = [((2, 3, 4), (3, 1)), ((3, 4), ()), ((2, 3, 4), (1, 4)), ((3, 4), (3, 4))]  # g's shape, the target
    return [((S.normal(rng, *g),), dict(shape=shape)) for g, shape in pairs]


@composite(scoped=False, samples=_unbroadcast_samples, reference=_unbroadcast_reference, numpy_name=None,
           vjp_math="input g gets broadcast_to(ȳ, g.shape), ȳ the result's cotangent: the adjoint of summing is "
                    "broadcasting")
def unbroadcast(g, shape):
    """Sum g down to `shape`: the adjoint of broadcasting (every binary op's VJP ends with it)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = len(g.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    # through the methods every traced value (and array) has: the sum and reshape primitives live in reduce and
    # shape, which are built on this module, so importing them here would close an import circle
    return g.sum(axis=axes).reshape(shape)


def _traced(x) -> bool:
    """Whether a VJP's operand is a traced value. A constant one (a Literal's value, handed to the VJP as a plain
    array) takes no gradient: computing its cotangent would only record equations that are thrown away."""
    return getattr(x, "_bp_trace", None) is not None


def _binary_vjp(da, db):
    """The VJP of a broadcasting binary primitive from one rule per operand, rule(g, out, a, b) -> that operand's
    cotangent at the output's shape; a rule runs only for a traced operand, and its result is summed to its shape."""

    def vjp(g, out, a, b):
        return (unbroadcast(da(g, out, a, b), a.shape) if _traced(a) else None,
                unbroadcast(db(g, out, a, b), b.shape) if _traced(b) else None)

    return vjp


# -- where a derivative does not exist ---------------------------------------------------------------------------
def zero_where_singular(singular, derivative, x, at_singular=0.0):
    """`derivative(x)` where `singular` is false, `at_singular` (0) where it is true: bpmagic's one rule for a
    derivative that does not exist at a point (sqrt at 0, and so std of equal entries, norm at 0, x ** 0.5 at 0).

    0 is what abs, relu and clip already give at their kinks; for std and norm, convex functions, it is a valid
    subgradient (autograd's answer for std), where JAX and the plain formula give NaN, which would stop a training
    run over a point the learner never meant to reach. The singular entries of x are
    replaced by 1 before `derivative` sees them, so the branch not taken computes no inf that a second derivative
    would turn into NaN (JAX's double-where)."""
    return where(singular, at_singular, derivative(where(singular, 1.0, x)))


# -- unary --------------------------------------------------------------------------------------------------------
negative = Primitive("negative", lambda xp, x: xp.negative(x), _same, lambda g, out, x: (-g,), ufunc="negative",
                     fused="(-{0})", symbol="-", doc="−x.", onnx=op("Neg"), samples=S.unary(),
                     reference=S.jax_numpy("negative"),
                     vjp_math="x̄ = −ḡ")
exp = Primitive("exp", lambda xp, x: xp.exp(x), _float_same, lambda g, out, x: (g * out,), ufunc="exp",
                fused="exp({0})", doc="e to the power x.", onnx=op("Exp"), samples=S.unary(),
                reference=S.jax_numpy("exp"), vjp_math="x̄ = ḡ · y")
log = Primitive("log", lambda xp, x: xp.log(x), _float_same, lambda g, out, x: (g / x,), ufunc="log",
                fused="log({0})", doc="Natural logarithm, for x > 0.", onnx=op("Log"), samples=S.unary(S.positive),
                reference=S.jax_numpy("log"), vjp_math="x̄ = ḡ / x")
tanh = Primitive("tanh", lambda xp, x: xp.tanh(x), _float_same, lambda g, out, x: (g * (1 - out * out),),
                 ufunc="tanh", fused="tanh({0})", doc="Hyperbolic tangent, in (−1, 1).", onnx=op("Tanh"),
                 samples=S.unary(), reference=S.jax_numpy("tanh"),
                 vjp_math="x̄ = ḡ · (1 − y²)")
def _sqrt_vjp(g, out, x):
    return (zero_where_singular(equal(out, 0.0), lambda y: g * 0.5 / y, out),)


sqrt = Primitive("sqrt", lambda xp, x: xp.sqrt(x), _float_same, _sqrt_vjp, ufunc="sqrt",
                 fused="sqrt({0})", doc="Square root, for x ≥ 0.", onnx=op("Sqrt"),
                 samples=S.unary(S.positive), reference=S.jax_numpy("sqrt"),
                 vjp_math="x̄ = ḡ / (2y); 0 at x = 0, where the derivative does not exist (bpmagic's rule, "
                          "zero_where_singular)")
# zero gradient almost everywhere (None: no cotangent flows back)
sign = Primitive("sign", lambda xp, x: xp.sign(x), _same, lambda g, out, x: (None,), ufunc="sign",
                 fused="({T}({0} > {T}(0)) - {T}({0} < {T}(0)))",
                 doc="−1, 0 or 1 by the sign of x; its gradient is zero.", onnx=op("Sign"), samples=S.unary(S.away0),
                 reference=S.jax_numpy("sign"), vjp_math="x̄ = 0 (piecewise constant)")
abs = Primitive("abs", lambda xp, x: xp.abs(x), _same, lambda g, out, x: (g * sign(x),), ufunc="absolute",
                fused="fabs({0})", doc="|x|.", onnx=op("Abs"), samples=S.unary(S.away0), reference=S.jax_numpy("abs"),
                vjp_math="x̄ = ḡ · sign(x)")


def _sigmoid(xp, x, out=None):
    # the tanh form never overflows (1 / (1 + exp(-x)) warns for x << 0)
    out = xp.multiply(x, 0.5, out=out)
    out = xp.asarray(out)  # an array even for 0-d x, so that it can be written in place
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


sigmoid = Primitive("sigmoid", _sigmoid, _float_same, lambda g, out, x: (g * out * (1 - out),), accepts_out=True,
                    fused="({T}(0.5) * tanh({T}(0.5) * {0}) + {T}(0.5))",  # the same tanh form
                    doc="1 / (1 + e^(−x)), in (0, 1) (computed as 0.5·tanh(x/2) + 0.5, which never overflows).",
                    onnx=op("Sigmoid"), jax=lambda jax, x: jax.nn.sigmoid(x),
                    samples=S.join(S.unary(), S.unary(shapes=[(3, 4)], gen=lambda rng, *s: 8 * S.normal(rng, *s))),
                    reference=lambda jax: jax.nn.sigmoid, vjp_math="x̄ = ḡ · y · (1 − y)")


def _relu_lowering(ctx, x, out=None):
    # NumPy's clip ufunc computes max(x, 0) about 3x faster than maximum (1.3 us against 4.0 at 64x128 float32,
    # 59 against 200 at 512x1024); like maximum it keeps NaN (the guard sees it); relu(-0.0) is -0.0 there, 0.0 here
    clip = getattr(getattr(getattr(ctx.xp, "_core", None), "umath", None), "clip", None)
    dtype = np.dtype(ctx.inputs[0].dtype)
    if out is None or ctx.xp is not np or clip is None or dtype.kind != "f":
        return None
    zero = ctx.bind(f"_zero_{dtype.name}", lambda: np.array(0, dtype))
    inf = ctx.bind(f"_inf_{dtype.name}", lambda: np.array(np.inf, dtype))
    return f"{ctx.bind('_clip', lambda: clip)}({x}, {zero}, {inf}, out={out})"


# g * (out > 0): a multiply by a boolean mask is several times cheaper than where(mask, g, 0)
relu = Primitive("relu", lambda xp, x, out=None: xp.maximum(x, 0, out=out), _same,
                 lambda g, out, x: (multiply(g, greater(out, 0.0)),), accepts_out=True, fused="max({0}, {T}(0))",
                 lowering=_relu_lowering,
                 doc="max(x, 0).", onnx=op("Relu"), jax=lambda jax, x: jax.nn.relu(x),  # gradient 0 at 0, as here
                 samples=S.unary(S.away0), reference=lambda jax: jax.nn.relu, vjp_math="x̄ = ḡ · [y > 0]")


# (g * 2) * x rather than 2 * g * x: when g is a constant (the seed of a mean), g * 2 folds into it
square = Primitive("square", lambda xp, x: xp.square(x), _same, lambda g, out, x: ((g * 2.0) * x,),
                   ufunc="square", fused="({0} * {0})", doc="x².", onnx=of_x(lambda ctx, x: ctx.node("Mul", [x, x])),
                      samples=S.unary(), reference=S.jax_numpy("square"),
                   vjp_math="x̄ = 2ḡ · x")


# sin and cos are each other's derivative; arctan's derivative is algebraic
sin = Primitive("sin", lambda xp, x: xp.sin(x), _float_same, lambda g, out, x: (g * cos(x),), ufunc="sin",
                fused="sin({0})", doc="Sine (radians).", onnx=op("Sin"), samples=S.unary(),
                reference=S.jax_numpy("sin"), vjp_math="x̄ = ḡ · cos(x)")
cos = Primitive("cos", lambda xp, x: xp.cos(x), _float_same, lambda g, out, x: (-(g * sin(x)),), ufunc="cos",
                fused="cos({0})", doc="Cosine (radians).", onnx=op("Cos"), samples=S.unary(),
                reference=S.jax_numpy("cos"), vjp_math="x̄ = −ḡ · sin(x)")
arctan = Primitive("arctan", lambda xp, x: xp.arctan(x), _float_same, lambda g, out, x: (g / (1 + x * x),),
                   ufunc="arctan", fused="atan({0})", doc="Inverse tangent, in (−π/2, π/2).", onnx=op("Atan"),
                   samples=S.unary(), reference=S.jax_numpy("arctan"),
                   vjp_math="x̄ = ḡ / (1 + x²)")
# log(1 + x) and exp(x) - 1, exact near 0 where the plain forms lose every digit
log1p = Primitive("log1p", lambda xp, x: xp.log1p(x), _float_same, lambda g, out, x: (g / (1 + x),),
                  ufunc="log1p", fused="log1p({0})", doc="log(1 + x), exact for small x.",
                  onnx=of_x(lambda ctx, x: ctx.node("Log", [ctx.node("Add", [x, ctx.const(1, x)])])),
                     samples=S.unary(S.positive), reference=S.jax_numpy("log1p"),
                  vjp_math="x̄ = ḡ / (1 + x)")
expm1 = Primitive("expm1", lambda xp, x: xp.expm1(x), _float_same, lambda g, out, x: (g * (out + 1),),
                  ufunc="expm1", fused="expm1({0})", doc="e^x − 1, exact for small x.",
                  onnx=of_x(lambda ctx, x: ctx.node("Sub", [ctx.node("Exp", [x]), ctx.const(1, x)])),
                     samples=S.unary(), reference=S.jax_numpy("expm1"),
                  vjp_math="x̄ = ḡ · (y + 1)")


def _rounding(name, ufunc, c_name, onnx_name, doc):
    # piecewise constant: the gradient is zero wherever it exists (as in JAX and PyTorch)
    return Primitive(name, lambda xp, x: getattr(xp, ufunc)(x), _same, lambda g, out, x: (None,), ufunc=ufunc,
                     fused=f"{c_name}({{0}})", doc=doc + " Its gradient is zero.", onnx=op(onnx_name),
                     samples=S.unary(),
                     reference=S.jax_numpy(name),
                     vjp_math="x̄ = 0 (piecewise constant)")


floor = _rounding("floor", "floor", "floor", "Floor", "The largest integer ≤ x.")
ceil = _rounding("ceil", "ceil", "ceil", "Ceil", "The smallest integer ≥ x.")
rint = _rounding("rint", "rint", "rint", "Round", "The nearest integer (halves to even, as NumPy's round).")


@composite(samples=S.unary(), reference=S.jax_numpy("trunc"), vjp_math="x̄ = 0 (piecewise constant)")
def trunc(x):
    """x rounded toward zero (the integer part); its gradient is zero."""
    return where(less(x, 0.0), ceil(x), floor(x))


# -- binary -------------------------------------------------------------------------------------------------------
add = Primitive("add", lambda xp, a, b: xp.add(a, b), _broadcast("add"),
                _binary_vjp(lambda g, out, a, b: g, lambda g, out, a, b: g), ufunc="add", fused="({0} + {1})",
                symbol="+", doc="a + b (broadcasting).", onnx=op("Add"), samples=S.join(S.binary(), S.scalar_mixes()),
                reference=S.jax_numpy("add"),
                vjp_math="ā = ḡ, b̄ = ḡ (each summed to its operand's shape)")
subtract = Primitive("subtract", lambda xp, a, b: xp.subtract(a, b), _broadcast("subtract"),
                     _binary_vjp(lambda g, out, a, b: g, lambda g, out, a, b: -g), ufunc="subtract",
                     fused="({0} - {1})", symbol="-", doc="a − b (broadcasting).", onnx=op("Sub"),
                     samples=S.join(S.binary(), S.scalar_mixes()),
                     reference=S.jax_numpy("subtract"),
                     vjp_math="ā = ḡ, b̄ = −ḡ (each summed to its operand's shape)")
multiply = Primitive("multiply", lambda xp, a, b: xp.multiply(a, b), _broadcast("multiply"),
                     _binary_vjp(lambda g, out, a, b: g * b, lambda g, out, a, b: g * a), ufunc="multiply",
                     fused="({0} * {1})", symbol="*", doc="a · b (broadcasting).", onnx=op("Mul"),
                     samples=S.join(S.binary(), S.scalar_mixes(scalar=3)),
                     reference=S.jax_numpy("multiply"),
                     vjp_math="ā = ḡ · b, b̄ = ḡ · a (each summed to its operand's shape)")


def _divide_vjp(g, out, a, b):
    ga = g / b  # both cotangents use it
    return (unbroadcast(ga, a.shape) if _traced(a) else None,
            unbroadcast(-(ga * out), b.shape) if _traced(b) else None)


divide = Primitive("divide", lambda xp, a, b: xp.true_divide(a, b), _broadcast("divide"), _divide_vjp,
                   ufunc="true_divide", fused="({0} / {1})", symbol="/",
                   doc="a / b (broadcasting).", onnx=op("Div"),
                   samples=S.join(S.binary(S.normal, S.away0), lambda rng: [
                       ((1.0, S.away0(rng, 3, 4)), {}), ((S.normal(rng, 3, 4), 2.0), {})]),
                   reference=S.jax_numpy("divide"),
                   vjp_math="ā = ḡ / b, b̄ = −ḡ · y / b (each summed to its operand's shape)")


def _power_vjp(g, out, x, y):
    gx = gy = None
    if _traced(x):
        if not _traced(y) and y.ndim == 0:  # a constant exponent, as in x ** 2
            k = y.item()
            if k == 0:  # x ** 0 is 1: no gradient (k · x⁻¹ would be NaN at 0)
                gx = None
            elif k >= 1:
                gx = g * k * (x if k == 2 else power(x, k - 1))  # finite everywhere
            else:  # x^(k-1) is infinite at 0 (x ** 0.5, x ** -1): bpmagic's 0 there
                gx = zero_where_singular(equal(x, 0.0), lambda x: g * k * power(x, k - 1), x)
        else:
            # at x = 0, p · 0^(p-1) is 1 for p = 1, 0 for p > 1, and singular for p < 1 (0 there, as sqrt's)
            gx = zero_where_singular(equal(x, 0.0), lambda x: g * y * power(x, y - 1), x,
                                     at_singular=multiply(g, equal(y, 1.0)))
        gx = None if gx is None else unbroadcast(gx, x.shape)
    if _traced(y):
        # d/dy x**y = log(x) x**y; where x <= 0 the log is undefined, and there we give 0 (as JAX does)
        gy = unbroadcast(g * out * log(where(x > 0, x, 1.0)), y.shape)
    return gx, gy


def _power_samples(rng):
    """A traced exponent over broadcasting pairs; constant exponents (the VJP's constant branch: 2, 3.0, 0.5,
    -1.5, an array); a constant base."""
    fixed = [((S.normal(rng, 3, 4), 2), {}), ((S.normal(rng, 3, 4), 3.0), {}), ((S.positive(rng, 3, 4), 0.5), {}),
             ((S.positive(rng, 3, 4), -1.5), {}), ((S.positive(rng, 3, 4), np.array([1, 2, -1, 3])), {}),
             ((2.0, S.normal(rng, 3, 4)), {}), ((S.positive(rng), S.normal(rng, 3)), {})]
    return S.binary(S.positive, S.normal)(rng) + fixed


power = Primitive("power", lambda xp, x, y: xp.power(x, y), _broadcast("power"), _power_vjp, ufunc="power",
                  fused="pow({0}, {1})", symbol="**", doc="a to the power b (broadcasting).", onnx=op("Pow"),
                  samples=_power_samples, reference=S.jax_numpy("power"),
                  vjp_math="for y = xᵖ: x̄ = ḡ · p · xᵖ⁻¹ (at x = 0: 0 for p < 1, where it does not exist), "
                           "p̄ = ḡ · y · log x (0 where x ≤ 0; none for a constant p) (each summed to its operand's "
                           "shape)")


def _logaddexp_onnx(ctx, a, b):
    a, b = ctx.cast_to_result([a, b])
    gap = ctx.node("Neg", [ctx.node("Abs", [ctx.node("Sub", [a, b])])])
    tail = ctx.node("Log", [ctx.node("Add", [ctx.node("Exp", [gap]), ctx.const(1, a)])])
    return ctx.node("Add", [ctx.node("Max", [a, b]), tail])


def _logaddexp_samples(rng):
    ties = np.array([0.3, -1.0, 2.0])
    return S.binary()(rng) + [((S.normal(rng, 3, 4) * 30, S.normal(rng, 3, 4) * 30), {}), ((ties, ties.copy()), {})]


logaddexp = Primitive("logaddexp", lambda xp, a, b: xp.logaddexp(a, b), _broadcast("logaddexp"),
                      _binary_vjp(lambda g, out, a, b: g * exp(a - out), lambda g, out, a, b: g * exp(b - out)),
                      ufunc="logaddexp", fused="(max({0}, {1}) + log1p(exp(-fabs({0} - {1}))))",
                      doc="log(e^a + e^b), without overflow.", onnx=_logaddexp_onnx, samples=_logaddexp_samples,
                      reference=S.jax_numpy("logaddexp"),
                      vjp_math="ā = ḡ · e^(a − y), b̄ = ḡ · e^(b − y) (each summed to its operand's shape)")


def _fmod_vjp(g, out, a, b):
    return (unbroadcast(g, a.shape) if _traced(a) else None,
            unbroadcast(-(g * trunc(a / b)), b.shape) if _traced(b) else None)


fmod = Primitive("fmod", lambda xp, a, b: xp.fmod(a, b), _broadcast("fmod"), _fmod_vjp, ufunc="fmod",
                 doc="The remainder of a / b with the sign of a (C's fmod): a − b · trunc(a / b).",
                 onnx=op("Mod", fmod=1), samples=S.off_integer_quotients, reference=S.jax_numpy("fmod"),
                 vjp_math="ā = ḡ, b̄ = −ḡ · trunc(a / b) (each summed to its operand's shape)")


def _float_broadcast(name):
    rule = _broadcast(name)

    def float_rule(*avals):
        shape, dtype = rule(*avals)
        return shape, (dtype if np.dtype(dtype).kind in "fc" else np.result_type(dtype, np.float32))

    return float_rule


def _arctan2_vjp(g, out, y, x):
    # d atan2(y, x) = (x dy − y dx) / (x² + y²); at the origin, where it has no derivative, 0 (zero_where_singular)
    r2 = x * x + y * y
    scaled = zero_where_singular(equal(r2, 0.0), lambda r2: g / r2, r2)
    return (unbroadcast(scaled * x, y.shape) if _traced(y) else None,
            unbroadcast(-(scaled * y), x.shape) if _traced(x) else None)


def _arctan2_onnx(ctx, y, x):
    """ONNX has no Atan2: atan(y / x), turned by ±π where x is negative, with IEEE's signed zeros as NumPy has them
    (1 / −0.0 is −inf: the sign of a zero shows in its reciprocal)."""
    y, x = ctx.cast_to_result([y, x])
    zero, one, pi = ctx.const(0, x), ctx.const(1, x), ctx.const(np.pi, x)

    def negative(v):  # v < 0, or v is −0.0
        return ctx.node("Or", [ctx.node("Less", [v, zero]), ctx.node("Less", [ctx.node("Div", [one, v]), zero])])

    base = ctx.node("Atan", [ctx.node("Div", [y, x])])  # ±π/2 where x = ±0 (y / 0 is ±inf)
    turn = ctx.node("Where", [negative(y), ctx.node("Neg", [pi]), pi])
    x_negative = negative(x)
    angle = ctx.node("Where", [x_negative, ctx.node("Add", [base, turn]), base])
    origin = ctx.node("And", [ctx.node("Equal", [x, zero]), ctx.node("Equal", [y, zero])])
    return ctx.node("Where", [origin, ctx.node("Where", [x_negative, turn, y]), angle])


def _arctan2_samples(rng):
    # on the axes, but not on the negative x axis, where the angle jumps from π to −π
    axes = (np.array([0.0, 1.5, -2.0, -1.0]), np.array([2.0, 0.0, 0.0, -1e-3]))
    return S.binary(S.away0, S.away0)(rng) + [(axes, {})]


arctan2 = Primitive("arctan2", lambda xp, y, x: xp.arctan2(y, x), _float_broadcast("arctan2"), _arctan2_vjp,
                    ufunc="arctan2", doc="The angle of the point (x, y) from the x axis, in (−π, π] (y first, as "
                    "NumPy's arctan2 and C's atan2).", onnx=_arctan2_onnx, samples=_arctan2_samples,
                    reference=S.jax_numpy("arctan2"),
                    vjp_math="ȳ = ḡ · x / (x² + y²), x̄ = −ḡ · y / (x² + y²) (0 at the origin)")


def _minmax_vjp(wins):
    """wins(a, b): where a is strictly the one chosen (a > b for maximum)."""

    def rule(g, out, a, b):
        # against a number (maximum(x, 0), clip's bounds) the traced operand gets ḡ where it strictly wins: the
        # number takes no gradient, so a tie has nobody to share with. maximum(x, 0) then has relu's gradient and
        # clip's is ḡ · [lo < x < hi], with no tie-breaking equations (a float landing exactly on a bound is rare)
        if not _traced(b):
            return unbroadcast(multiply(g, wins(a, b)), a.shape), None
        if not _traced(a):
            return None, unbroadcast(multiply(g, wins(b, a)), b.shape)
        # two traced operands split a tie evenly, so that maximum(x, x) has gradient 1 in total (as in JAX)
        wa = astype(wins(a, b), g.dtype) + 0.5 * astype(equal(a, b), g.dtype)
        return unbroadcast(g * wa, a.shape), unbroadcast(g * (1 - wa), b.shape)

    return rule


def _distinct_pairs(rng):
    return [(S.distinct(rng, sa, sb), {}) for sa, sb in S.BINARY_SHAPES]  # no ties: one side always wins


maximum = Primitive("maximum", lambda xp, a, b: xp.maximum(a, b), _broadcast("maximum"),
                    _minmax_vjp(lambda a, b: greater(a, b)), ufunc="maximum", fused="max({0}, {1})",
                    doc="The larger of a and b, entry by entry (ties between traced values share the gradient).",
                    onnx=op("Max"),
                    samples=S.join(_distinct_pairs, lambda rng: [  # a number on either side
                        ((S.avoiding(rng, [(-1.5, 0.2), (0.4, 1.5)], 3, 4), 0.3), {}),
                        ((0.3, S.avoiding(rng, [(-1.5, 0.2), (0.4, 1.5)], 4)), {})]),
                    reference=S.jax_numpy("maximum"),
                    vjp_math="ā = ḡ · ([a > b] + ½[a = b]), b̄ = ḡ · ([a < b] + ½[a = b]) (each summed to its "
                             "operand's shape); against a number b, ā = ḡ · [a > b] (as relu)")
minimum = Primitive("minimum", lambda xp, a, b: xp.minimum(a, b), _broadcast("minimum"),
                    _minmax_vjp(lambda a, b: less(a, b)), ufunc="minimum", fused="min({0}, {1})",
                    doc="The smaller of a and b, entry by entry (ties between traced values share the gradient).",
                    onnx=op("Min"),
                    samples=S.join(_distinct_pairs, lambda rng: [  # a number on either side
                        ((S.avoiding(rng, [(-1.5, -0.4), (-0.2, 1.5)], 3, 4), -0.3), {}),
                        ((-0.3, S.avoiding(rng, [(-1.5, -0.4), (-0.2, 1.5)], 4)), {})]),
                    reference=S.jax_numpy("minimum"),
                    vjp_math="ā = ḡ · ([a < b] + ½[a = b]), b̄ = ḡ · ([a > b] + ½[a = b]) (each summed to its "
                             "operand's shape); against a number b, ā = ḡ · [a < b]")

# -- comparisons (no gradient) ----------------------------------------------------------------------------------
_ONNX_COMPARISONS = {">": compare("Greater"), ">=": compare("GreaterOrEqual"), "<": compare("Less"),
                     "<=": compare("LessOrEqual"), "==": compare("Equal"), "!=": compare("Equal", negate=True)}


def _comparison(name, ufunc, op):
    return Primitive(name, lambda xp, a, b: getattr(xp, ufunc)(a, b), _compare(name), ufunc=ufunc,
                     fused=f"({{0}} {op} {{1}})", differentiable=False, doc=f"a {op} b, entry by entry (a mask).",
                     onnx=_ONNX_COMPARISONS[op], reference=S.jax_numpy(ufunc),
                     samples=S.join(S.binary(), lambda rng: [((np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])),
                                                              {})]),
                     vjp_math="no gradient (boolean output)")  # with ties: == and >= are exact


greater = _comparison("greater", "greater", ">")
greater_equal = _comparison("greater_equal", "greater_equal", ">=")
less = _comparison("less", "less", "<")
less_equal = _comparison("less_equal", "less_equal", "<=")
equal = _comparison("equal", "equal", "==")
not_equal = _comparison("not_equal", "not_equal", "!=")


# -- bitwise operations on integers and masks (no gradient) --------------------------------------------------------
def _integer_rule(name):
    def rule(*avals):
        floats = [a for a in avals if np.dtype(a.dtype).kind not in "biu"]
        if floats:
            raise shape_error(name, avals, f"works on integers and booleans, not {np.dtype(floats[0].dtype)}")
        return _broadcast(name)(*avals)

    return rule


def _integer_samples(rng):
    a, b = rng.integers(-8, 9, (3, 4)), rng.integers(0, 4, (3, 4))
    return [((a, b), {}), ((a, rng.integers(0, 4, (4,))), {}), ((a > 0, b > 1), {})]


def _bitwise(name, ufunc, onnx_rule, doc, samples=_integer_samples):
    unary = name == "invert"
    return Primitive(name, (lambda xp, a: getattr(xp, ufunc)(a)) if unary else
                     (lambda xp, a, b: getattr(xp, ufunc)(a, b)), _integer_rule(name), ufunc=ufunc,
                     differentiable=False, doc=doc, onnx=onnx_rule, samples=samples, reference=S.jax_numpy(ufunc),
                     vjp_math="no gradient (integer output)")


def _invert_onnx(ctx, x):
    return ctx.node("Not" if ctx.operands[0].dtype == bool else "BitwiseNot", [x])


bitwise_and = _bitwise("bitwise_and", "bitwise_and", op("BitwiseAnd"), "a & b on the bits of integers (and on masks).")
bitwise_or = _bitwise("bitwise_or", "bitwise_or", op("BitwiseOr"), "a | b on the bits of integers (and on masks).")
bitwise_xor = _bitwise("bitwise_xor", "bitwise_xor", op("BitwiseXor"), "a ^ b on the bits of integers (and on masks).")
invert = _bitwise("invert", "invert", _invert_onnx, "~x: every bit of an integer flipped (not, on a mask).",
                  samples=lambda rng: [((rng.integers(-8, 9, (3, 4)),), {}), ((rng.integers(0, 2, (5,)) > 0,), {})])
# ONNX's BitShift takes unsigned integers only: no counterpart for NumPy's signed ones
left_shift = _bitwise("left_shift", "left_shift", None, "a << b: a's bits moved b places up (a · 2^b).",
                      samples=lambda rng: _integer_samples(rng)[:2])
right_shift = _bitwise("right_shift", "right_shift", None, "a >> b: a's bits moved b places down (⌊a / 2^b⌋).",
                       samples=lambda rng: _integer_samples(rng)[:2])


def _nextafter_jax(jax, a, b):
    # JAX gives nextafter no derivative; a step of one float away from a has a's: 1 for a, 0 for b
    sg = jax.lax.stop_gradient
    return a + (jax.numpy.nextafter(sg(a), sg(b)) - sg(a))


nextafter = Primitive("nextafter", lambda xp, a, b: xp.nextafter(a, b), _broadcast("nextafter"),
                      lambda g, out, a, b: (unbroadcast(g, a.shape) if _traced(a) else None, None),
                      ufunc="nextafter",
                      doc="The next float after a in the direction of b.", jax=_nextafter_jax,
                      samples=S.binary(), reference=lambda jax: lambda a, b: _nextafter_jax(jax, a, b),
                      vjp_math="ā = ḡ (one float away from a), b̄ = 0")


# -- where, astype, stop_gradient ----------------------------------------------------------------------------------
def _where_rule(c, a, b):
    shape, _ = _broadcast("where")(c, a, b)
    return shape, np.result_type(a.dtype, b.dtype)


def _where_vjp(g, out, c, a, b):
    return (None, unbroadcast(where(c, g, 0.0), a.shape) if _traced(a) else None,
            unbroadcast(where(c, 0.0, g), b.shape) if _traced(b) else None)


def _where_onnx(ctx, c, a, b):
    c = ctx.cast(c, bool)
    a, b = ctx.cast_to_result([a, b])
    if ctx.result.dtype == bool:  # onnxruntime has no boolean Where: (c and a) or (not c and b)
        return ctx.node("Or", [ctx.node("And", [c, a]), ctx.node("And", [ctx.node("Not", [c]), b])])
    return ctx.node("Where", [c, a, b])


_where = Primitive("where", lambda xp, c, a, b: xp.where(c, a, b), _where_rule, _where_vjp, nondiff_inputs=(0,),
                   fused="where_({0}, {1}, {2})", onnx=_where_onnx)


def _where_samples(rng):
    return [((S.away0(rng, 3, 4) > 0, S.normal(rng, 3, 4), S.normal(rng, 3, 4)), {}),
            ((S.normal(rng, 3, 1) > 0, S.normal(rng, 1, 4), S.normal(rng)), {}),  # all three broadcast
            ((S.normal(rng, 1, 4) < 0, S.normal(rng, 3, 4), S.normal(rng, 3, 1)), {}),
            ((S.away0(rng, 3, 4) > 0, S.normal(rng, 3, 4), 0.0), {}),  # a Python scalar branch
            ((np.bool_(True), S.normal(rng), S.normal(rng, 3)), {})]


@exposes(_where, samples=_where_samples, reference=S.jax_numpy("where"),
         vjp_math="ā = where(c, ḡ, 0), b̄ = where(c, 0, ḡ) (each summed to its operand's shape); no gradient for "
                  "the condition c")
def where(condition, a, b):
    """Elementwise choice: a where `condition` is true, else b (broadcasting). Differentiable in a and b."""
    return _where(condition, a, b)


def _astype_vjp(g, out, x, dtype):
    return (astype(g, x.dtype) if np.dtype(x.dtype).kind in "fc" else None),


_astype = Primitive("astype", lambda xp, x, dtype: x.astype(dtype), lambda x, dtype: (x.shape, np.dtype(dtype)),
                    _astype_vjp, fused="{T}({0})", onnx=lambda ctx, x, dtype: ctx.cast(x, dtype))


def _astype_samples(rng):
    return [((S.normal(rng, 3, 4), np.float64), {}), ((S.away0(rng, 3, 4) > 0, np.float64), {}),
            ((np.arange(6).reshape(2, 3), np.float64), {})]


@exposes(_astype, samples=_astype_samples, reference=lambda jax: lambda x, dtype: jax.numpy.asarray(x).astype(dtype),
         vjp_math="x̄ = astype(ḡ, x.dtype) (none for a non-float x)")
def astype(x, dtype):
    """x converted to `dtype` (the gradient converts back)."""
    dtype = np.dtype(dtype)
    if getattr(x, "dtype", None) == dtype:
        return x
    return _astype(x, dtype=dtype)


stop_gradient = Primitive("stop_gradient", lambda xp, x: x, _same, lowering=lambda ctx, x, out=None: x,
                          onnx=lambda ctx, x: ctx.node("Identity", [x]), jax=lambda jax, x: jax.lax.stop_gradient(x),
                          differentiable=False, samples=S.unary(), reference=lambda jax: jax.lax.stop_gradient,
                          doc="x itself, but no gradient flows back through it.",
                          vjp_math="no gradient (x̄ = 0: the graph is cut here)")
