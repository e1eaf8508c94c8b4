"""A third-party bpmagic plugin, as a user would write one: primitives, a backend and an optimizer.

`softsign` declares a fused-kernel template (the executor fuses it on a kernel-compiling backend) and `jitter`
declares an effect (a fresh random draw per call, so passes never fold or deduplicate it): every facet a built-in
primitive has, declared in the one place the plugin defines its op.
"""
import numpy as np

import bpmagic as bp
from bpmagic.backends.numpy_backend import NumpyBackend
from bpmagic.train.optim import LEARNING_RATE, Hyper, Optimizer


@bp.primitive(fused="({0} / ({T}(1) + fabs({0})))", samples=lambda rng: [((rng.standard_normal((3, 4)),), {})],
              reference=lambda jax: lambda x: x / (1 + jax.numpy.abs(x)))
def softsign(xp, x):
    """x / (1 + |x|)."""
    return x / (1 + xp.abs(x))


@softsign.defvjp
def _softsign_vjp(g, out, x):
    d = 1 + bp.abs(x)
    return g / (d * d)


_draws = np.random.default_rng(0)


@bp.primitive(effects=("random",), differentiable=False)
def jitter(xp, x):
    """x plus fresh uniform noise in [0, 1e-3): different at every call."""
    return x + xp.asarray(_draws.uniform(0, 1e-3, x.shape), x.dtype)


class CheckedNumpyBackend(NumpyBackend):
    """NumPy, but every array entering the backend is checked to be finite (a debugging backend)."""

    name = "checked-numpy"
    transfers = 0

    def asarray(self, x, dtype=None):
        a = np.asarray(x, dtype=dtype)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError("checked-numpy: a non-finite array entered the backend")
        type(self).transfers += 1
        return a


class SignSGD(Optimizer):
    """p -= lr * (sign(g) + shrink * p): the update of signSGD (Bernstein et al., 2018), with a decay of its own."""

    name = "signsgd"
    # its own hyperparameter, declared: the magic's --hyper, a history column and a dashboard control follow
    hypers = (LEARNING_RATE, Hyper("shrink", 0.0, lo=0, label="shrink", slider=(0.0, 0.1)))

    def __init__(self, lr=0.01, shrink=0.0):
        super().__init__(lr=lr, shrink=shrink)

    def scalars(self, hyper, step):
        return {"lr": hyper["lr"], "shrink": hyper["shrink"]}

    def update(self, p, g, state, s, structure):
        return p - s["lr"] * (bp.sign(g) + s["shrink"] * p), {}
