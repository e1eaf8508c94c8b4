"""A third-party bpmagic plugin, as a user would write one: a primitive, a backend and an optimizer."""
import numpy as np

import bpmagic as bp
from bpmagic.backends.numpy_backend import NumpyBackend
from bpmagic.train.optim import Optimizer


@bp.primitive
def softplus(xp, x):
    """log(1 + exp(x)), computed without overflow."""
    return xp.logaddexp(0, x)


@softplus.defvjp
def _softplus_vjp(g, out, x):
    return g * bp.sigmoid(x)


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
    """p -= lr * sign(g): the update of signSGD (Bernstein et al., 2018)."""

    name = "signsgd"
    hyper_rules = {"lr": dict(lo=0, lo_open=True)}

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)

    def update(self, p, g, state, s, structure):
        return p - s["lr"] * bp.sign(g), {}
