"""Activation functions beyond sigmoid, tanh and relu (primitives in elementwise.py): softplus, gelu, silu,
leaky_relu, elu, selu, hard_tanh.

All are compositions (tinygrad's lesson: a small primitive set), with PyTorch's and JAX's signatures and defaults.
Where a branch is chosen with `where`, the unchosen branch is computed on safe values, so a large input never
puts inf * 0 = nan into the gradient (JAX's double-where trick).
"""
from __future__ import annotations

import math

from . import composite as _composite
from . import elementwise as _ew
from . import samples as S
from . import special as _special
from .core import composite

__all__ = ["softplus", "gelu", "silu", "leaky_relu", "elu", "selu", "hard_tanh"]


def _kinked(rng, *shape):
    """Away from the kink at 0 (leaky_relu, elu, selu)."""
    return S.away0(rng, *shape)


@composite(samples=S.join(S.unary(), S.unary(lambda rng, *s: 30 * S.normal(rng, *s), shapes=[(3, 4)])),
           reference=lambda jax: jax.nn.softplus, vjp_math="x̄ = ḡ · σ(x)")
def softplus(x):
    """log(1 + e^x), without overflow (logaddexp(x, 0)); its derivative is sigmoid(x)."""
    return _ew.logaddexp(x, 0.0)


def _gelu_reference(jax):
    return lambda x, approximate="none": jax.nn.gelu(x, approximate=approximate == "tanh")


@composite(samples=S.join(S.unary(), S.unary(approximate="tanh")), reference=_gelu_reference,
           vjp_math="x̄ = ḡ · (Φ(x) + x · φ(x)), φ the standard normal density; approximate=tanh: x̄ = ḡ · (½(1 + "
                    "t) + ½x(1 − t²) · √(2/π)(1 + 0.134145x²)), t = tanh(√(2/π)(x + 0.044715x³))")
def gelu(x, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF; approximate="tanh" is the tanh formula (as PyTorch and JAX)."""
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * (x * x * x))
        return 0.5 * x * (1.0 + _ew.tanh(inner))
    if approximate != "none":
        raise ValueError(f'gelu: approximate must be "none" or "tanh", got {approximate!r}')
    return 0.5 * x * (1.0 + _special.erf(x * (1 / math.sqrt(2))))


@composite(samples=S.unary(), reference=lambda jax: jax.nn.silu, vjp_math="x̄ = ḡ · σ(x) · (1 + x · (1 − σ(x)))")
def silu(x):
    """x * sigmoid(x) (also called swish)."""
    return x * _ew.sigmoid(x)


@composite(samples=S.join(S.unary(_kinked), S.unary(_kinked, negative_slope=0.2)),
           reference=lambda jax: lambda x, negative_slope=0.01: jax.nn.leaky_relu(x, negative_slope),
           vjp_math="x̄ = ḡ where x ≥ 0, else negative_slope · ḡ")
def leaky_relu(x, negative_slope=0.01):
    """x where x >= 0, else negative_slope * x."""
    return _ew.where(_ew.greater_equal(x, 0.0), x, x * negative_slope)


def _elu(x, alpha):
    positive = _ew.greater(x, 0.0)
    safe = _ew.where(positive, 0.0, x)  # expm1 of a large x would overflow in the branch not taken
    return _ew.where(positive, x, alpha * _ew.expm1(safe))


@composite(samples=S.join(S.unary(_kinked), S.unary(_kinked, alpha=0.5)),
           reference=lambda jax: lambda x, alpha=1.0: jax.nn.elu(x, alpha),
           vjp_math="x̄ = ḡ where x > 0, else ḡ · α · eˣ")
def elu(x, alpha=1.0):
    """x where x > 0, else alpha * (e^x - 1)."""
    return _elu(x, alpha)


# the constants of Klambauer et al. (2017), as in PyTorch and JAX
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@composite(samples=S.unary(_kinked), reference=lambda jax: jax.nn.selu,
           vjp_math="x̄ = λ · ḡ where x > 0, else λ · ḡ · α · eˣ (λ, α the SELU constants)")
def selu(x):
    """scale * elu(x, alpha) with the self-normalising constants."""
    return _SELU_SCALE * _elu(x, _SELU_ALPHA)


def _hard_tanh_samples(rng):
    return [((S.avoiding(rng, [(-2.0, -1.1), (-0.9, 0.9), (1.1, 2.0)], 3, 4),), {}),
            ((S.avoiding(rng, [(-2.0, -0.6), (-0.4, 0.4), (0.6, 2.0)], 3, 4),), dict(min_val=-0.5, max_val=0.5))]


@composite(samples=_hard_tanh_samples,
           reference=lambda jax: lambda x, min_val=-1.0, max_val=1.0: jax.numpy.clip(x, min_val, max_val),
           vjp_math="x̄ = ḡ · [min_val < x < max_val]")
def hard_tanh(x, min_val=-1.0, max_val=1.0):
    """x limited to [min_val, max_val]."""
    return _composite.clip(x, min_val, max_val)
