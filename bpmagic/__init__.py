"""bpmagic: backpropagation you can see and steer, inside Jupyter.

    import bpmagic as bp
    g = bp.grad(lambda w: bp.mean((x @ w - y) ** 2))(w)
    print(bp.trace(f, x))            # the traced graph as readable Python
"""
from . import ops
from .api import grad, primitive, trace, value_and_grad
from .backends import get_backend
from .cell import Buffer, Input, Loss, Param, Target
from .errors import BackendError, BackpropError, NonFiniteError, ShapeError, TracingError
from .ir import Eqn, Graph, Var
from .ops import *  # noqa: F401,F403  (bp.tanh, bp.sum, bp.conv2d, ...)
from .ops.core import composite  # the decorator, not the ops.composite module the star import brings
from .train import CompiledStep, Controls, Run, compile_step, fit, last_run, optim
from .onnx_export import export_onnx
from .check import GradcheckResult, check_gradients, gradcheck
from . import viz  # noqa: E402  (graphs draw themselves in notebooks)

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """`%load_ext bpmagic` registers the %%backprop cell magic."""
    from .magic import load_ipython_extension as load

    load(ipython)


def __getattr__(name):
    # ops contributed by plugins (entry-point group bpmagic.ops) appear as bp.<name> too
    registry = ops.registry()
    if name in registry:
        return registry[name]
    raise AttributeError(f"module 'bpmagic' has no attribute {name!r}")
