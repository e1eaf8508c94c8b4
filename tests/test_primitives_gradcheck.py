"""Gradient checks of every primitive and composite, first and second order, in float64.

Each case is a function of float64 arrays (integer data such as indices and labels is closed over, or passed as
an integer argument that gradcheck leaves alone). `bp.gradcheck` compares bpmagic's gradient with central finite
differences, per entry for these small arrays; order=2 does the same for the gradient of <grad f, probe>.

Inputs are drawn away from the kinks of non-smooth ops (relu, abs, maximum/minimum, max, clip) and inside the
domains of log / sqrt / power, so finite differences are meaningful. A few gradient values are also compared with
JAX (an independent implementation) to 1e-10 relative, and a coverage test makes sure every built-in
differentiable primitive is exercised by at least one case.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

import bpmagic as bp
from bpmagic.ops.core import PRIMITIVES
from bpmagic.ops.shape import _split_index, scatter_add

try:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax
except ImportError:  # pragma: no cover - JAX is a test dependency; only the JAX comparisons need it
    jax = jnp = lax = None

needs_jax = pytest.mark.skipif(jax is None, reason="JAX is not installed")


# -- input generators: each takes an np.random.Generator and returns a float64 array (or a tuple of them) ---------
class Gen:
    def __init__(self, make, multi=False):
        self.make, self.multi = make, multi


def normal(*shape):
    return Gen(lambda rng: np.asarray(rng.standard_normal(shape), np.float64))


def uniform_in(lo, hi, *shape):
    return Gen(lambda rng: np.asarray(rng.uniform(lo, hi, shape), np.float64))


def positive(*shape):
    """In [0.5, 2]: inside the domain of log, sqrt and power with a traced exponent."""
    return uniform_in(0.5, 2.0, *shape)


def away0(*shape):
    """|x| in [0.2, 1.5], random sign: away from the kinks of relu, abs, sign and the pole of 1/x."""
    return Gen(lambda rng: np.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.5, shape), np.float64))


def distinct(*shapes):
    """Arrays whose entries (across all of them) differ pairwise by >= 0.1: no ties for max/min/maximum."""
    def make(rng):
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        vals = (rng.permutation(sum(sizes)) - sum(sizes) / 2) * 0.13 + rng.uniform(0, 0.02)
        out, start = [], 0
        for s, n in zip(shapes, sizes):
            out.append(np.asarray(vals[start:start + n].reshape(s), np.float64))
            start += n
        return tuple(out)

    return Gen(make, multi=True)


def avoiding(bands, *shape):
    """Values drawn uniformly from the given (lo, hi) bands (to stay clear of clip bounds)."""
    def make(rng):
        which = rng.integers(0, len(bands), shape)
        lo = np.array([b[0] for b in bands])[which]
        hi = np.array([b[1] for b in bands])[which]
        return np.asarray(lo + (hi - lo) * rng.uniform(0, 1, shape), np.float64)

    return Gen(make)


class Case(NamedTuple):
    id: str
    fn: Callable
    args: tuple
    kw: dict

    def __repr__(self):
        return f"Case({self.id})"


def case(id, fn, *specs, **gradcheck_kw):
    rng = np.random.default_rng(zlib.crc32(id.encode()))
    args = []
    for s in specs:
        if isinstance(s, Gen):
            v = s.make(rng)
            args.extend(v) if s.multi else args.append(v)
        else:
            args.append(s)
    return Case(id, fn, tuple(args), gradcheck_kw)


def _const(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


# -- the cases ---------------------------------------------------------------------------------------------------
CASES: list[Case] = []
add_cases = CASES.extend

# broadcasting pairs: same shape, (3,1)+(1,4), (2,3,4)+(4,), 0-d with (3,), (3,) with 0-d, 0-d with 0-d, rank
# promotion with size-1 axes on both sides, and (1,1) against (3,4)
BCAST = [((3, 4), (3, 4), "3x4|3x4"), ((3, 1), (1, 4), "3x1|1x4"), ((2, 3, 4), (4,), "2x3x4|4"),
         ((), (3,), "0d|3"), ((3,), (), "3|0d"), ((), (), "0d|0d"), ((2, 1, 4), (3, 1), "2x1x4|3x1"),
         ((1, 1), (3, 4), "1x1|3x4")]

for sa, sb, tag in BCAST:
    add_cases([
        case(f"add-{tag}", bp.add, normal(*sa), normal(*sb)),
        case(f"subtract-{tag}", bp.subtract, normal(*sa), normal(*sb)),
        case(f"multiply-{tag}", bp.multiply, normal(*sa), normal(*sb)),
        case(f"divide-{tag}", bp.divide, normal(*sa), away0(*sb)),
        case(f"power-traced-exponent-{tag}", bp.power, positive(*sa), normal(*sb)),
        case(f"maximum-{tag}", bp.maximum, distinct(sa, sb)),
        case(f"minimum-{tag}", bp.minimum, distinct(sa, sb)),
    ])

add_cases([
    # Python scalars mixed with arrays (weak scalars become literals)
    case("add-x+2.0", lambda x: bp.add(x, 2.0), normal(3, 4)),
    case("subtract-2.0-x", lambda x: bp.subtract(2.0, x), normal(3, 4)),
    case("multiply-3*x", lambda x: bp.multiply(3, x), normal(3, 4)),
    case("divide-1/x", lambda x: bp.divide(1.0, x), away0(3, 4)),
    case("divide-x/2", lambda x: bp.divide(x, 2.0), normal(3, 4)),
    case("maximum-x,0.3", lambda x: bp.maximum(x, 0.3), avoiding([(-1.5, 0.2), (0.4, 1.5)], 3, 4)),
    case("minimum-x,-0.3", lambda x: bp.minimum(x, -0.3), avoiding([(-1.5, -0.4), (-0.2, 1.5)], 3, 4)),
    # power with a constant exponent (the VJP's constant branch), and a constant array exponent
    case("power-const-2", lambda x: bp.power(x, 2), normal(3, 4)),
    case("power-const-3", lambda x: bp.power(x, 3.0), normal(3, 4)),
    case("power-const-0.5", lambda x: bp.power(x, 0.5), positive(3, 4)),
    case("power-const--1.5", lambda x: bp.power(x, -1.5), positive(3, 4)),
    case("power-const-array-exponent", lambda x: bp.power(x, np.array([1.0, 2.0, -0.5, 3.0])), positive(3, 4)),
    case("power-const-base-2**x", lambda y: bp.power(2.0, y), normal(3, 4)),
    case("power-traced-0d-base", bp.power, positive(), normal(3)),
])

# unary elementwise: a 2-d case, a 0-d case and one with size-1 axes
UNARY = [("negative", bp.negative, normal), ("exp", bp.exp, normal), ("log", bp.log, positive),
         ("tanh", bp.tanh, normal), ("sigmoid", bp.sigmoid, normal), ("relu", bp.relu, away0),
         ("abs", bp.abs, away0), ("sqrt", bp.sqrt, positive), ("square", bp.square, normal)]
for name, op, gen in UNARY:
    add_cases([
        case(f"{name}-3x4", op, gen(3, 4)),
        case(f"{name}-0d", op, gen()),
        case(f"{name}-2x1x3", op, gen(2, 1, 3)),
    ])
add_cases([
    case("sigmoid-large-inputs", lambda x: bp.sigmoid(x * 8.0), normal(3, 4)),
    case("relu-composed", lambda x, y: bp.relu(x) * y, away0(3, 4), normal(3, 4)),
])

# where, with boolean conditions from comparisons
C31 = _const(11, 3, 1)
add_cases([
    case("where-cond-from-traced-x", lambda x, a, b: bp.where(x > 0, a, b), away0(3, 4), normal(3, 4),
         normal(3, 4)),
    case("where-bcast-3x1|1x4|0d", lambda a, b: bp.where(bp.greater(C31, 0.0), a, b), normal(1, 4), normal()),
    case("where-bcast-cond-1x4", lambda x, y: bp.where(bp.less(x[:1], 0.0), x, y * 2.0), away0(3, 4),
         normal(3, 1)),
    case("where-else-0.0", lambda x, y: bp.where(x > 0, x * y, 0.0), away0(3, 4), normal(3, 4)),
    case("where-piecewise", lambda x: bp.where(bp.greater_equal(x, 0.0), bp.exp(x), x * x), away0(3, 4)),
    case("where-0d", lambda c, a, b: bp.where(c > 0, a, b), away0(), normal(), normal(3)),
])

# reductions
AXES = [(None, False, "all"), (None, True, "all-keepdims"), (0, False, "axis0"), (1, True, "axis1-keepdims"),
        (-1, False, "axis-1"), ((0, 2), False, "axis(0,2)"), ((0, 2), True, "axis(0,2)-keepdims"),
        ((-1, -3), False, "axis(-1,-3)"), ((-2,), True, "axis(-2,)-keepdims")]
for axis, keep, tag in AXES:
    add_cases([
        case(f"sum-2x3x4-{tag}", lambda x, axis=axis, keep=keep: bp.sum(x, axis=axis, keepdims=keep),
             normal(2, 3, 4)),
        case(f"mean-2x3x4-{tag}", lambda x, axis=axis, keep=keep: bp.mean(x, axis=axis, keepdims=keep),
             normal(2, 3, 4)),
        case(f"max-2x3x4-{tag}", lambda x, axis=axis, keep=keep: bp.max(x, axis=axis, keepdims=keep),
             distinct((2, 3, 4))),
        case(f"min-2x3x4-{tag}", lambda x, axis=axis, keep=keep: bp.min(x, axis=axis, keepdims=keep),
             distinct((2, 3, 4))),
    ])
for name, op in [("sum", bp.sum), ("mean", bp.mean), ("max", bp.max), ("min", bp.min)]:
    add_cases([
        case(f"{name}-0d", lambda x, op=op: op(x) * x, distinct(())),
        case(f"{name}-size1-axis", lambda x, op=op: op(x, axis=1), distinct((3, 1, 4))),
        case(f"{name}-size1-axis-keepdims", lambda x, op=op: op(x, axis=1, keepdims=True) * x, distinct((3, 1, 4))),
        case(f"{name}-1d", lambda x, op=op: op(x, axis=0), distinct((5,))),
    ])

# matmul
add_cases([
    case("matmul-2d-3x4@4x2", bp.matmul, normal(3, 4), normal(4, 2)),
    case("matmul-outer-3x1@1x4", bp.matmul, normal(3, 1), normal(1, 4)),
    case("matmul-batched-2x3x4@2x4x2", bp.matmul, normal(2, 3, 4), normal(2, 4, 2)),
    case("matmul-bcast-batch-2x1x3x4@5x4x2", bp.matmul, normal(2, 1, 3, 4), normal(5, 4, 2)),
    case("matmul-bcast-2d@batched-3x4@2x4x2", bp.matmul, normal(3, 4), normal(2, 4, 2)),
    case("matmul-bcast-batched@2d-2x3x4@4x2", bp.matmul, normal(2, 3, 4), normal(4, 2)),
    case("matmul-vec@mat-4@4x3", bp.matmul, normal(4), normal(4, 3)),
    case("matmul-mat@vec-3x4@4", bp.matmul, normal(3, 4), normal(4)),
    case("matmul-vec@vec-4@4", bp.matmul, normal(4), normal(4)),
    case("matmul-batched@vec-2x3x4@4", bp.matmul, normal(2, 3, 4), normal(4)),
    case("matmul-vec@batched-4@2x4x3", bp.matmul, normal(4), normal(2, 4, 3)),
    case("matmul-same-operand-x@x.T", lambda x: bp.matmul(x, bp.transpose(x)), normal(3, 4)),
])

# shape ops
IDX_REP = np.array([0, 2, 0, 1, 2, 2])
add_cases([
    case("reshape-2x3x4->6x4", lambda x: bp.reshape(x, (6, 4)), normal(2, 3, 4)),
    case("reshape-(-1,)", lambda x: bp.reshape(x, (-1,)), normal(2, 3, 4)),
    case("reshape-(4,-1)", lambda x: bp.reshape(x, (4, -1)), normal(2, 3, 4)),
    case("reshape-size1-axes", lambda x: bp.reshape(x, (2, 1, 12, 1)), normal(2, 3, 4)),
    case("reshape-0d->1x1", lambda x: bp.reshape(x, (1, 1)) * 2.0, normal()),
    case("transpose-default-2x3x4", bp.transpose, normal(2, 3, 4)),
    case("transpose-default-2d", bp.transpose, normal(3, 4)),
    case("transpose-axes(1,0,2)", lambda x: bp.transpose(x, (1, 0, 2)), normal(2, 3, 4)),
    case("transpose-axes(2,0,1)", lambda x: bp.transpose(x, (2, 0, 1)), normal(2, 3, 4)),
    case("transpose-negative-axes(-1,0,1)", lambda x: bp.transpose(x, (-1, 0, 1)), normal(2, 3, 4)),
    case("swapaxes-0,2", lambda x: bp.swapaxes(x, 0, 2), normal(2, 3, 4)),
    case("swapaxes--1,-2", lambda x: bp.swapaxes(x, -1, -2), normal(2, 3, 4)),
    case("broadcast_to-3x1->2x3x4", lambda x: bp.broadcast_to(x, (2, 3, 4)), normal(3, 1)),
    case("broadcast_to-0d->3", lambda x: bp.broadcast_to(x, (3,)), normal()),
    case("broadcast_to-4->2x3x4", lambda x: bp.broadcast_to(x, (2, 3, 4)), normal(4)),
    case("broadcast_to-1x4->3x4", lambda x: bp.broadcast_to(x, (3, 4)), normal(1, 4)),
    case("expand_dims-0", lambda x: bp.expand_dims(x, 0), normal(3, 4)),
    case("expand_dims--1", lambda x: bp.expand_dims(x, -1), normal(3, 4)),
    case("expand_dims-1", lambda x: bp.expand_dims(x, 1), normal(3, 4)),
    case("squeeze-all", bp.squeeze, normal(3, 1, 4, 1)),
    case("squeeze-axis1", lambda x: bp.squeeze(x, 1), normal(3, 1, 4, 1)),
    case("squeeze-axis(1,3)", lambda x: bp.squeeze(x, (1, 3)), normal(3, 1, 4, 1)),
    case("squeeze-axis-1", lambda x: bp.squeeze(x, -1), normal(3, 1, 4, 1)),
    # getitem: basic indexing
    case("getitem-int", lambda x: bp.getitem(x, 1), normal(3, 4)),
    case("getitem-negative-int", lambda x: bp.getitem(x, -1), normal(3, 4)),
    case("getitem-int,int->0d", lambda x: bp.getitem(x, (1, -2)), normal(3, 4)),
    case("getitem-slice", lambda x: bp.getitem(x, slice(1, 3)), normal(4, 3)),
    case("getitem-step2", lambda x: bp.getitem(x, slice(None, None, 2)), normal(5, 3)),
    case("getitem-reverse", lambda x: bp.getitem(x, slice(None, None, -1)), normal(5, 3)),
    case("getitem-negative-slice", lambda x: bp.getitem(x, slice(-3, -1)), normal(5, 3)),
    case("getitem-negative-step", lambda x: bp.getitem(x, (slice(None), slice(-1, 0, -2))), normal(3, 5)),
    case("getitem-int,step", lambda x: bp.getitem(x, (1, slice(None, None, 2))), normal(3, 5)),
    case("getitem-None,slice,int", lambda x: bp.getitem(x, (None, slice(None), 1)), normal(3, 4)),
    case("getitem-Ellipsis,int", lambda x: bp.getitem(x, (Ellipsis, 1)), normal(2, 3, 4)),
    case("getitem-Ellipsis,None", lambda x: bp.getitem(x, (Ellipsis, None)), normal(2, 3)),
    case("getitem-int,Ellipsis,slice", lambda x: bp.getitem(x, (0, Ellipsis, slice(1, 3))), normal(2, 3, 4)),
    case("getitem-size1-axis", lambda x: bp.getitem(x, (slice(None), 0)), normal(3, 1)),
    # getitem: integer arrays (the VJP scatter-adds; repeats must accumulate)
    case("getitem-intarray-repeated", lambda x: bp.getitem(x, IDX_REP), normal(3, 4)),
    case("getitem-intarray-repeated-negative", lambda x: bp.getitem(x, np.array([-1, 0, -1, 2, -3])),
         normal(3, 4)),
    case("getitem-list-index", lambda x: bp.getitem(x, [1, 1, 0]), normal(3, 4)),
    case("getitem-intarray-2d-index", lambda x: bp.getitem(x, np.array([[0, 2], [2, 2]])), normal(3, 4)),
    case("getitem-slice,intarray", lambda x: bp.getitem(x, (slice(None), np.array([3, 0, 3]))), normal(3, 4)),
    case("getitem-intarray,slice", lambda x: bp.getitem(x, (IDX_REP, slice(1, None))), normal(3, 4)),
    case("getitem-two-intarrays", lambda x: bp.getitem(x, (np.array([0, 2, 0, 0]), np.array([1, 3, 1, 1]))),
         normal(3, 4)),
    case("getitem-two-intarrays-broadcast", lambda x: bp.getitem(x, (np.array([[0], [2]]), np.array([1, 0, 1]))),
         normal(3, 4)),
    case("getitem-intarrays-split-by-slice", lambda x: bp.getitem(x, (np.array([1, 0, 1]), slice(None),
                                                                        np.array([3, 3, 0]))), normal(2, 3, 4)),
    case("take-axis0-repeated", lambda x: bp.take(x, IDX_REP), normal(3, 4)),
    case("take-axis1", lambda x: bp.take(x, np.array([3, 1, 1]), axis=1), normal(3, 4)),
    case("take-axis-1-2d-indices", lambda x: bp.take(x, np.array([[0, 1], [1, 1]]), axis=-1), normal(2, 3, 2)),
    case("scatter_add-repeated", lambda g: scatter_add(g, *_split_index(IDX_REP)[1],
                                                       spec=_split_index(IDX_REP)[0], shape=(3, 4)),
         normal(6, 4)),
    case("scatter_add-basic-slice", lambda g: scatter_add(g, spec=_split_index((slice(None), slice(1, 4, 2)))[0],
                                                          shape=(3, 5)), normal(3, 2)),
    # concatenate / stack
    case("concatenate-axis0-3-inputs", lambda a, b, c: bp.concatenate([a, b, c], axis=0),
         normal(2, 3), normal(1, 3), normal(3, 3)),
    case("concatenate-axis1-3-inputs", lambda a, b, c: bp.concatenate([a, b, c], axis=1),
         normal(2, 1), normal(2, 3), normal(2, 2)),
    case("concatenate-axis-1-3d", lambda a, b: bp.concatenate([a, b], axis=-1), normal(2, 2, 3), normal(2, 2, 1)),
    case("concatenate-same-input-twice", lambda a: bp.concatenate([a, a * 2.0, a], axis=0), normal(2, 3)),
    case("stack-axis0-3-inputs", lambda a, b, c: bp.stack([a, b, c]), normal(2, 3), normal(2, 3), normal(2, 3)),
    case("stack-axis1", lambda a, b: bp.stack([a, b], axis=1), normal(2, 3), normal(2, 3)),
    case("stack-axis-1", lambda a, b: bp.stack([a, b], axis=-1), normal(2, 3), normal(2, 3)),
    case("stack-0d", lambda a, b: bp.stack([a, b]), normal(), normal()),
    # astype
    case("astype-f64-noop", lambda x: bp.astype(x, np.float64) * x, normal(3, 4)),
    case("astype-bool-mask", lambda x: x * bp.astype(x > 0, np.float64), away0(3, 4)),
])

# neural-network ops
add_cases([
    case("conv2d-s1-p0-C2-O3", lambda x, w: bp.conv2d(x, w), normal(2, 2, 4, 4), normal(3, 2, 2, 2)),
    case("conv2d-s2-p1-C2-O2-k3", lambda x, w: bp.conv2d(x, w, stride=2, padding=1),
         normal(1, 2, 5, 5), normal(2, 2, 3, 3)),
    case("conv2d-s1-p1-C1-O2-k3", lambda x, w: bp.conv2d(x, w, stride=1, padding=1),
         normal(1, 1, 4, 4), normal(2, 1, 3, 3)),
    case("conv2d-s2-p0-C3-k2x3-nonsquare", lambda x, w: bp.conv2d(x, w, stride=2),
         normal(1, 3, 4, 5), normal(2, 3, 2, 3)),
    case("conv2d-s1-p0-1x1-kernel", lambda x, w: bp.conv2d(x, w), normal(2, 3, 2, 2), normal(4, 3, 1, 1)),
    case("max_pool2d-k2", lambda x: bp.max_pool2d(x, 2), distinct((1, 2, 4, 4))),
    case("max_pool2d-k2-s1-overlapping", lambda x: bp.max_pool2d(x, 2, stride=1), distinct((1, 1, 4, 4))),
    case("max_pool2d-k(2,3)-s1", lambda x: bp.max_pool2d(x, (2, 3), stride=1), distinct((2, 1, 3, 4))),
    case("max_pool2d-k3-s2", lambda x: bp.max_pool2d(x, 3, stride=2), distinct((1, 1, 5, 5))),
    case("avg_pool2d-k2", lambda x: bp.avg_pool2d(x, 2), normal(1, 2, 4, 4)),
    case("avg_pool2d-k2-s1", lambda x: bp.avg_pool2d(x, 2, stride=1), normal(1, 1, 4, 4)),
    case("avg_pool2d-k3-s2", lambda x: bp.avg_pool2d(x, 3, stride=2), normal(1, 2, 5, 5)),
    case("embedding-repeated-ids", lambda t: bp.embedding(t, np.array([[0, 2, 0], [4, 0, 1]])), normal(5, 3)),
    case("embedding-same-id", lambda t: bp.embedding(t, np.array([3, 3, 3])), normal(5, 3)),
    case("dropout-rate0.5-key7", lambda x: bp.dropout(x, 0.5, key=7), normal(3, 4)),
    case("dropout-rate0.25-key1-composed", lambda x: bp.tanh(bp.dropout(x, 0.25, key=1)), normal(3, 4)),
    case("unfold-k2-s1", lambda x: bp.unfold(x, kernel=(2, 2), stride=1), normal(1, 2, 3, 3)),
    case("unfold-k2x3-s2", lambda x: bp.unfold(x, kernel=(2, 3), stride=2), normal(1, 1, 5, 5)),
    case("fold-k2-s1", lambda c: bp.fold(c, image_shape=(3, 3), stride=1), normal(1, 1, 2, 2, 2, 2)),
    case("fold-k2-s2", lambda c: bp.fold(c, image_shape=(4, 4), stride=2), normal(1, 2, 2, 2, 2, 2)),
    case("fold-k2-s2-uncovered-border", lambda c: bp.fold(c, image_shape=(5, 5), stride=2), normal(1, 1, 2, 2, 2, 2)),
    case("pad2d-1", lambda x: bp.pad2d(x, padding=1), normal(1, 2, 3, 3)),
    case("pad2d-2", lambda x: bp.pad2d(x, padding=2), normal(2, 1, 2, 2)),
])

# composites
ONE_HOT = np.eye(3)[[0, 2, 1, 2]]
add_cases([
    case("softmax-axis-1", bp.softmax, normal(3, 4)),
    case("softmax-axis0", lambda x: bp.softmax(x, axis=0), normal(3, 4)),
    case("softmax-3d-axis1", lambda x: bp.softmax(x, axis=1), normal(2, 3, 4)),
    case("softmax-size1-axis", lambda x: bp.softmax(x, axis=1) * x, normal(3, 1)),
    case("softmax-large-logits", lambda x: bp.softmax(x * 30.0), normal(2, 3)),
    case("log_softmax-axis-1", bp.log_softmax, normal(3, 4)),
    case("log_softmax-axis0", lambda x: bp.log_softmax(x, axis=0), normal(3, 4)),
    case("log_softmax-3d-axis1", lambda x: bp.log_softmax(x, axis=1), normal(2, 3, 4)),
    case("logsumexp-axis-1", bp.logsumexp, normal(3, 4)),
    case("logsumexp-axis0", lambda x: bp.logsumexp(x, axis=0), normal(3, 4)),
    case("logsumexp-keepdims", lambda x: bp.logsumexp(x, axis=1, keepdims=True), normal(3, 4)),
    case("logsumexp-axis(0,2)", lambda x: bp.logsumexp(x, axis=(0, 2)), normal(2, 3, 4)),
    case("logsumexp-axis-None", lambda x: bp.logsumexp(x, axis=None), normal(3, 4)),
    case("logsumexp-1d", bp.logsumexp, normal(5)),
    case("cross_entropy-int-labels-closed", lambda z: bp.cross_entropy(z, np.array([0, 2, 1, 2])), normal(4, 3)),
    case("cross_entropy-int-labels-arg", bp.cross_entropy, normal(4, 3), np.array([1, 1, 0, 2])),
    case("cross_entropy-int-labels-3d", lambda z: bp.cross_entropy(z, np.array([[0, 3, 3], [1, 2, 0]])),
         normal(2, 3, 4)),
    case("cross_entropy-one-hot", lambda z: bp.cross_entropy(z, ONE_HOT), normal(4, 3)),
    case("cross_entropy-soft-labels-both-args", bp.cross_entropy, normal(4, 3), uniform_in(0, 1, 4, 3)),
    case("mse-3x4", bp.mse, normal(3, 4), normal(3, 4)),
    case("mse-5", bp.mse, normal(5), normal(5)),
    case("mse-0d", bp.mse, normal(), normal()),
    case("binary_cross_entropy", bp.binary_cross_entropy, uniform_in(0.05, 0.95, 3, 4), uniform_in(0, 1, 3, 4)),
    case("binary_cross_entropy-hard-labels", lambda p: bp.binary_cross_entropy(p, np.array([0.0, 1, 1, 0, 1])),
         uniform_in(0.05, 0.95, 5)),
    case("layer_norm-axis-1", bp.layer_norm, normal(3, 4)),
    case("layer_norm-axis0", lambda x: bp.layer_norm(x, axis=0), normal(3, 4)),
    case("layer_norm-axis(1,2)", lambda x: bp.layer_norm(x, axis=(1, 2)), normal(2, 3, 4)),
    case("layer_norm-scale-shift", lambda x, g, b: bp.layer_norm(x) * g + b, normal(3, 4), normal(4), normal(4)),
    case("clip-scalar-bounds", lambda x: bp.clip(x, -0.5, 0.5),
         avoiding([(-2.0, -0.7), (-0.3, 0.3), (0.7, 2.0)], 3, 4)),
    case("clip-traced-bounds", bp.clip, avoiding([(-2.0, -0.7), (-0.3, 0.3), (0.7, 2.0)], 3, 4),
         uniform_in(-0.55, -0.45, 3, 1), uniform_in(0.45, 0.55, 1, 4)),
    case("mlp-tanh-mse", lambda x, w1, b1, w2: bp.mse(bp.tanh(x @ w1 + b1) @ w2, np.ones((4, 1))),
         normal(4, 3), normal(3, 5), normal(5), normal(5, 1)),
])

# the Tracer's operators (gradcheck's finite differences run them on plain NumPy arrays: an independent check)
K34 = _const(5, 3, 4)
add_cases([
    case("op:+", lambda a, b: a + b, normal(3, 1), normal(1, 4)),
    case("op:-", lambda a, b: a - b, normal(2, 3, 4), normal(4)),
    case("op:*", lambda a, b: a * b, normal(), normal(3)),
    case("op:/", lambda a, b: a / b, normal(3, 4), away0(3, 1)),
    case("op:**", lambda a, b: a ** b, positive(3, 4), normal(4)),
    case("op:**2", lambda a: a ** 2, normal(3, 4)),
    case("op:@", lambda a, b: a @ b, normal(2, 3, 4), normal(4, 2)),
    case("op:unary-", lambda a: -a, normal(3, 4)),
    case("op:abs()", lambda a: abs(a), away0(3, 4)),
    case("op:radd-const-array", lambda a: K34 + a, normal(3, 4)),
    case("op:rsub-scalar", lambda a: 1.0 - a, normal(3, 4)),
    case("op:rmul-const-array", lambda a: K34 * a, normal(4)),
    case("op:rtruediv-scalar", lambda a: 2.0 / a, away0(3, 4)),
    case("op:rpow-scalar", lambda a: 3.0 ** a, normal(3, 4)),
    case("op:rmatmul-const-array", lambda a: K34 @ a, normal(4, 2)),
    case("op:x[...]-mixed", lambda a: a[1:, None, ::-2], normal(3, 4)),
    case("op:x[intarray]", lambda a: a[IDX_REP], normal(3, 4)),
    case("op:x.reshape(tuple)", lambda a: a.reshape((4, 3)), normal(3, 4)),
    case("op:x.reshape(*ints)", lambda a: a.reshape(2, -1), normal(3, 4)),
    case("op:x.flatten()", lambda a: a.flatten(), normal(3, 4)),
    case("op:x.T", lambda a: a.T, normal(3, 4)),
    case("op:x.transpose(axes)", lambda a: a.transpose(2, 0, 1), normal(2, 3, 4)),
    case("op:x.sum(axis)", lambda a: a.sum(1), normal(3, 4)),
    case("op:x.sum(axis,keepdims)", lambda a: a.sum(axis=0, keepdims=True), normal(3, 4)),
    case("op:x.mean()", lambda a: a.mean(), normal(3, 4)),
    case("op:x.mean(axis)", lambda a: a.mean(axis=-1), normal(3, 4)),
    case("op:x.max(axis)", lambda a: a.max(1), distinct((3, 4))),
    case("op:x.max()", lambda a: a.max(), distinct((3, 4))),
    case("op:chain", lambda a, b: ((a @ b).T ** 2).sum(0) / (1.0 + abs(b).mean()), normal(3, 4), normal(4, 2)),
])

# cases checked at first order only: float32 rounding makes second differences meaningless
ORDER1_ONLY: list[Case] = [
    case("astype-f32-roundtrip", lambda x: bp.astype(bp.astype(x, np.float32), np.float64) * 2.0, normal(3, 4),
         eps=1e-3, atol=1e-3, rtol=1e-3),
    case("astype-f32-roundtrip-tanh", lambda x: bp.astype(bp.tanh(bp.astype(x, np.float32)), np.float64),
         normal(3, 4), eps=1e-3, atol=1e-3, rtol=1e-2),
]

assert len({c.id for c in CASES + ORDER1_ONLY}) == len(CASES + ORDER1_ONLY), "duplicate case ids"


def _params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("c", _params(CASES + ORDER1_ONLY))
def test_gradcheck_order1(c):
    result = bp.gradcheck(c.fn, *c.args, order=1, **c.kw)
    assert result, result


@pytest.mark.parametrize("c", _params(CASES))
def test_gradcheck_order2(c):
    result = bp.gradcheck(c.fn, *c.args, order=2, **c.kw)
    assert result, result


# -- coverage: every built-in differentiable primitive is exercised -------------------------------------------------
def _float_argnums(args):
    return tuple(i for i, a in enumerate(args) if np.dtype(np.asarray(a).dtype).kind == "f")


def _scalarized(fn, args):
    """fn reduced to a scalar with fixed random weights (as gradcheck does), keeping fn's signature for naming."""
    out = np.asarray(fn(*args))
    w = np.random.default_rng(0).standard_normal(out.shape)

    def scalar(*a):
        y = fn(*a)
        return y if tuple(getattr(y, "shape", ())) == () else bp.sum(y * w)

    return scalar


def _primitives_used(c):
    """Names of the primitives in the forward graph of a case and in the graph of its gradient.

    A case that crashes here fails its own gradcheck tests; here it just covers nothing."""
    try:
        return _primitives_used_or_raise(c)
    except bp.BackpropError:
        return set()


def _primitives_used_or_raise(c):
    names = {e.primitive.name for e in bp.trace(c.fn, *c.args).eqns}
    scalar = _scalarized(c.fn, c.args)
    names |= {e.primitive.name for e in bp.trace(bp.grad(scalar, argnums=_float_argnums(c.args)), *c.args).eqns}
    return names


def _builtin_differentiable():
    return {name for name, p in PRIMITIVES.items()
            if p.vjp is not None and getattr(p.impl, "__module__", "").startswith("bpmagic.")}


def test_every_builtin_differentiable_primitive_is_gradchecked():
    builtin = _builtin_differentiable()
    # sanity: the registry really holds the built-ins this file is about
    assert {"add", "matmul", "getitem", "scatter_add", "unfold", "fold", "pad2d", "max", "sum", "where",
            "astype"} <= builtin
    used = set()
    for c in CASES + ORDER1_ONLY:
        used |= _primitives_used(c)
    missing = builtin - used
    assert not missing, f"built-in differentiable primitives with no gradcheck case: {sorted(missing)}"


def test_every_case_records_equations():
    """Each case really runs through bpmagic's primitives (and is not, say, a no-op reshape)."""
    empty = []
    for c in CASES + ORDER1_ONLY:
        try:
            eqns = bp.trace(c.fn, *c.args).eqns
        except bp.BackpropError:  # a crash fails the case's own gradcheck tests
            eqns = [None]
        if not eqns:
            empty.append(c.id)
    assert not empty, f"cases whose forward trace is empty: {empty}"


# -- specific properties --------------------------------------------------------------------------------------------
def test_stop_gradient_blocks_the_gradient():
    x = np.random.default_rng(1).standard_normal((3, 4))
    g = bp.grad(lambda x: bp.sum(bp.stop_gradient(x) ** 2))(x)
    assert g.shape == x.shape and g.dtype == np.float64
    np.testing.assert_array_equal(g, np.zeros_like(x))
    # only the path outside stop_gradient contributes: d/dx sum(sg(x) * x) = x
    np.testing.assert_array_equal(bp.grad(lambda x: bp.sum(bp.stop_gradient(x) * x))(x), x)
    # and the same holds at second order
    h = bp.grad(lambda x: bp.sum(bp.grad(lambda y: bp.sum(bp.stop_gradient(y) * y ** 2))(x)))(x)
    np.testing.assert_allclose(h, 2.0 * x, rtol=1e-14)


def test_stop_gradient_value_is_identity():
    x = np.random.default_rng(2).standard_normal((2, 3))
    np.testing.assert_array_equal(bp.stop_gradient(x), x)


def _dropout_mask(x, rate, key):
    return np.asarray(bp.uniform(key, x.shape, x.dtype)) >= rate


def test_dropout_gradient_is_the_scaled_mask():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    rate, key = 0.4, 12
    mask = _dropout_mask(x, rate, key)
    assert 0 < mask.sum() < mask.size
    out = bp.dropout(x, rate, key=key)
    np.testing.assert_allclose(out, np.where(mask, x / (1 - rate), 0.0), rtol=1e-15)
    g = bp.grad(lambda x: bp.sum(bp.dropout(x, rate, key=key) * w))(x)
    np.testing.assert_allclose(g, np.where(mask, w / (1 - rate), 0.0), rtol=1e-15)


def test_dropout_is_reproducible_by_key():
    x = np.random.default_rng(4).standard_normal((8, 8))
    a, b = bp.dropout(x, 0.5, key=5), bp.dropout(x, 0.5, key=5)
    np.testing.assert_array_equal(a, b)
    c = bp.dropout(x, 0.5, key=6)
    assert not np.array_equal(a, c)
    # traced and eager runs agree, and the gradient uses the same mask as the forward pass
    g = bp.grad(lambda x: bp.sum(bp.dropout(x, 0.5, key=5)))(x)
    np.testing.assert_array_equal(g != 0, a != 0)


def test_dropout_rate_statistics_and_rate0():
    x = np.ones((40, 50))
    kept = np.mean(bp.dropout(x, 0.3, key=0) != 0)
    assert 0.6 < kept < 0.8
    np.testing.assert_array_equal(bp.dropout(x, 0.0, key=0), x)


@pytest.mark.parametrize("shape,kernel,stride", [((2, 3, 5, 5), (2, 2), 1), ((1, 2, 5, 6), (2, 3), 2),
                                                 ((1, 1, 4, 4), (3, 3), 1), ((2, 1, 6, 5), (1, 1), 2)],
                         ids=["k2-s1", "k2x3-s2", "k3-s1", "k1-s2"])
def test_unfold_fold_are_adjoint(shape, kernel, stride):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    cols = bp.unfold(x, kernel=kernel, stride=stride)
    y = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, y)
    rhs = np.vdot(x, bp.fold(y, image_shape=shape[2:], stride=stride))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_astype_float32_gradient_value_and_dtype():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4)).astype(np.float32)
    g = bp.grad(lambda x: bp.sum(bp.astype(x, np.float32) * w))(x)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, w.astype(np.float64))
    # and back: a float32 argument gets a float32 gradient
    x32 = x.astype(np.float32)
    g32 = bp.grad(lambda x: bp.sum(bp.astype(x, np.float64) * w.astype(np.float64)))(x32)
    assert g32.dtype == np.float32
    np.testing.assert_array_equal(g32, w)


# -- gradient values against JAX ------------------------------------------------------------------------------------
def _rng(tag):
    return np.random.default_rng(zlib.crc32(tag.encode()))


def _jax_pool(x, k, s, init, op):
    return lax.reduce_window(x, init, op, (1, 1, k, k), (1, 1, s, s), "VALID")


def _ref_cases():
    """(id, bp function, jax function, args): the same math written twice; gradients w.r.t. every argument."""
    r = _rng("jax")
    labels = np.array([2, 0, 1, 1, 2])
    onehot = np.eye(3)[[1, 0, 2, 2, 0]]
    w_out = r.standard_normal((2, 3, 3, 3))
    pool_in = distinct((2, 2, 4, 4)).make(r)[0]
    pool_w = r.standard_normal((2, 2, 2, 2))
    idx, idx2 = np.array([0, 2, 2, 1, 0, 2]), np.array([3, 3, 1, 0, 3, 0])
    mm_w = r.standard_normal((2, 5, 3, 2))
    gi_w = r.standard_normal((6, 4))
    ln_w = r.standard_normal((3, 6))
    conv_w = r.standard_normal((2, 3, 3, 3))
    return [
        ("softmax-cross-entropy-int-labels",
         lambda z: bp.cross_entropy(z, labels),
         lambda z: -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(5), labels]),
         (r.standard_normal((5, 3)),)),
        ("cross-entropy-one-hot",
         lambda z: bp.cross_entropy(z, onehot),
         lambda z: -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(z), axis=-1)),
         (r.standard_normal((5, 3)),)),
        ("layer_norm-scale",
         lambda x: bp.sum(bp.layer_norm(x) * ln_w),
         lambda x: jnp.sum((x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5) * ln_w),
         (r.standard_normal((3, 6)),)),
        ("conv2d-s2-p1",
         lambda x, w: bp.sum(bp.tanh(bp.conv2d(x, w, stride=2, padding=1)) * w_out),
         lambda x, w: jnp.sum(jnp.tanh(lax.conv_general_dilated(
             x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))) * w_out),
         (r.standard_normal((2, 3, 5, 5)), r.standard_normal((3, 3, 3, 3)))),
        ("conv2d-s1-p0",
         lambda x, w: bp.sum(bp.conv2d(x, w) ** 2),
         lambda x, w: jnp.sum(lax.conv_general_dilated(
             x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")) ** 2),
         (r.standard_normal((1, 3, 5, 4)), conv_w)),
        ("max_pool2d-k2",
         lambda x: bp.sum(bp.max_pool2d(x, 2) * pool_w),
         lambda x: jnp.sum(_jax_pool(x, 2, 2, -jnp.inf, lax.max) * pool_w),
         (pool_in,)),
        ("avg_pool2d-k3-s1",
         lambda x: bp.sum(bp.avg_pool2d(x, 3, stride=1) ** 2),
         lambda x: jnp.sum((_jax_pool(x, 3, 1, 0.0, lax.add) / 9.0) ** 2),
         (r.standard_normal((1, 2, 4, 5)),)),
        ("matmul-batched-broadcast",
         lambda a, b: bp.sum(bp.tanh(a @ b) * mm_w),
         lambda a, b: jnp.sum(jnp.tanh(a @ b) * mm_w),
         (r.standard_normal((2, 1, 3, 4)), r.standard_normal((5, 4, 2)))),
        ("getitem-repeated-int-indices",
         lambda x: bp.sum(bp.tanh(x[idx]) * gi_w) + bp.sum(x[idx, idx2] ** 3),
         lambda x: jnp.sum(jnp.tanh(x[idx]) * gi_w) + jnp.sum(x[idx, idx2] ** 3),
         (r.standard_normal((3, 4)),)),
        ("logsumexp-softmax",
         lambda x: bp.sum(bp.logsumexp(x, axis=0) ** 2) + bp.sum(bp.softmax(x, axis=1) * x),
         lambda x: jnp.sum(jax.nn.logsumexp(x, axis=0) ** 2) + jnp.sum(jax.nn.softmax(x, axis=1) * x),
         (r.standard_normal((4, 3)),)),
        ("binary_cross_entropy",
         lambda p, y: bp.binary_cross_entropy(p, y),
         lambda p, y: -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)),
         (r.uniform(0.05, 0.95, (3, 4)), r.uniform(0, 1, (3, 4)))),
        ("power-traced-exponent",
         lambda x, y: bp.sum(x ** y),
         lambda x, y: jnp.sum(x ** y),
         (r.uniform(0.5, 2.0, (3, 1)), r.standard_normal((1, 4)))),
        ("embedding-mlp",
         lambda t, w: bp.mse(bp.relu(bp.embedding(t, np.array([1, 3, 1, 0])) @ w), np.ones((4, 2))),
         lambda t, w: jnp.mean((jax.nn.relu(t[np.array([1, 3, 1, 0])] @ w) - 1.0) ** 2),
         (r.standard_normal((4, 3)), r.standard_normal((3, 2)))),
    ]


_REF = _ref_cases() if jax is not None else []


def _assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale + 1e-300, err_msg=what)


@needs_jax
@pytest.mark.parametrize("ref", [pytest.param(r, id=r[0]) for r in _REF])
def test_gradient_matches_jax(ref):
    name, f_bp, f_jax, args = ref
    nums = tuple(range(len(args)))
    value_bp, g_bp = bp.value_and_grad(f_bp, argnums=nums)(*args)
    value_jax, g_jax = jax.jit(jax.value_and_grad(f_jax, argnums=nums))(*args)  # jit: one compile, not one per op
    np.testing.assert_allclose(np.asarray(value_bp), np.asarray(value_jax), rtol=1e-12)
    for i, (a, e) in enumerate(zip(g_bp, g_jax)):
        _assert_close(a, e, f"{name}: gradient w.r.t. argument {i}")


@needs_jax
@pytest.mark.parametrize("ref", [pytest.param(r, id=r[0]) for r in _REF
                                 if r[0] in {"softmax-cross-entropy-int-labels", "layer_norm-scale", "conv2d-s2-p1",
                                             "matmul-batched-broadcast", "getitem-repeated-int-indices",
                                             "logsumexp-softmax", "power-traced-exponent"}])
def test_second_order_matches_jax(ref):
    """Hessian-vector products: grad of <grad f, v> against JAX's."""
    name, f_bp, f_jax, args = ref
    probes = [np.random.default_rng(i).standard_normal(np.shape(a)) for i, a in enumerate(args)]
    nums = tuple(range(len(args)))

    def hvp_bp(*a):
        return sum(bp.sum(g * p) for g, p in zip(bp.grad(f_bp, argnums=nums)(*a), probes))

    def hvp_jax(*a):
        return sum(jnp.sum(g * p) for g, p in zip(jax.grad(f_jax, argnums=nums)(*a), probes))

    for i, (a, e) in enumerate(zip(bp.grad(hvp_bp, argnums=nums)(*args),
                                     jax.jit(jax.grad(hvp_jax, argnums=nums))(*args))):
        _assert_close(a, e, f"{name}: second-order gradient w.r.t. argument {i}")
