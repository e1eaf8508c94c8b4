"""Matrix multiplication, batched like NumPy's `@`."""
from __future__ import annotations

import numpy as np

from . import samples as S
from . import shape as _shape
from .core import Primitive, exposes, shape_error

__all__ = ["matmul", "dot"]


def _matmul_rule(a, b):
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise shape_error("matmul", [a, b], "the primitive needs 2-d or batched operands")
    if a.shape[-1] != b.shape[-2]:
        raise shape_error("matmul", [a, b], f"inner sizes differ ({a.shape[-1]} vs {b.shape[-2]}); "
                          f"the left operand's last axis must equal the right operand's second-to-last")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise shape_error("matmul", [a, b], "batch axes do not broadcast") from None
    return batch + (a.shape[-2], b.shape[-1]), np.result_type(a.dtype, b.dtype)


def _matmul_vjp(g, out, a, b):
    ga = _matmul(g, _shape.swapaxes(b, -1, -2))
    gb = _matmul(_shape.swapaxes(a, -1, -2), g)
    return _shape.unbroadcast(ga, a.shape), _shape.unbroadcast(gb, b.shape)


def _matmul_lowering(ctx, a, b, out=None):
    # a backend's own 2-d matmul kernel, when the step asks for a precision or a capturable call (CuPy's cuBLAS)
    make = getattr(ctx.backend, "matmul_kernel", None)
    if make is None or not (ctx.cuda_graph or ctx.matmul_precision != "fp32") or out is None:
        return None
    if not len(ctx.inputs[0].shape) == 2 == len(ctx.inputs[1].shape):
        return None
    return f"{ctx.bind('_mm', lambda: make(ctx.matmul_precision))}({a}, {b}, {out})"


_matmul = Primitive("matmul", lambda xp, a, b: xp.matmul(a, b), _matmul_rule, _matmul_vjp, ufunc="matmul",
                    lowering=_matmul_lowering, symbol="@")


_MATMUL_SHAPES = [((3, 4), (4, 2)), ((3, 1), (1, 4)), ((2, 3, 4), (2, 4, 2)), ((2, 1, 3, 4), (5, 4, 2)),
                  ((3, 4), (2, 4, 2)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)),
                  ((2, 3, 4), (4,)), ((4,), (2, 4, 3))]


@exposes(_matmul, samples=S.binary(shapes=_MATMUL_SHAPES), reference=S.jax_numpy("matmul"))
def matmul(a, b):
    """a @ b: matrix product; 1-d operands act as row/column vectors and that axis is dropped, as in NumPy."""
    a_vec, b_vec = len(a.shape) == 1, len(b.shape) == 1
    if a_vec:
        a = _shape.reshape(a, (1, a.shape[0]))
    if b_vec:
        b = _shape.reshape(b, (b.shape[0], 1))
    out = _matmul(a, b)
    if a_vec or b_vec:
        keep = out.shape[:-2] + (() if a_vec else out.shape[-2:-1]) + (() if b_vec else out.shape[-1:])
        out = _shape.reshape(out, keep)
    return out


dot = matmul
