"""Sample inputs (and reference helpers) an op declares with itself (OpInfo), for the generated check table and docs.

Each generator takes a NumPy Generator and returns float64 arrays drawn where finite differences are meaningful:
away from the kinks of non-smooth ops (relu, abs, max, clip) and inside the domains of log, sqrt and power.
`unary` and `binary` build a whole `samples(rng)` function for an elementwise op over the usual shapes (0-d,
size-1 axes, broadcasting pairs), so most ops declare their samples in one short expression.
"""
from __future__ import annotations

import numpy as np

UNARY_SHAPES = [(3, 4), (), (2, 1, 3)]
# broadcasting pairs: same shape, (3,1)+(1,4), rank promotion, 0-d on either side, size-1 axes on both sides
BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((), (3,)), ((3,), ()), ((), ()),
                 ((2, 1, 4), (3, 1)), ((1, 1), (3, 4))]


def normal(rng, *shape):
    return np.asarray(rng.standard_normal(shape), np.float64)


def uniform_in(rng, lo, hi, *shape):
    return np.asarray(rng.uniform(lo, hi, shape), np.float64)


def positive(rng, *shape):
    """In [0.5, 2]: inside the domain of log, sqrt and power with a traced exponent."""
    return uniform_in(rng, 0.5, 2.0, *shape)


def away0(rng, *shape):
    """|x| in [0.2, 1.5], random sign: away from the kinks of relu, abs, sign and the pole of 1/x."""
    return np.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.5, shape), np.float64)


def distinct(rng, *shapes):
    """Arrays whose entries (across all of them) differ pairwise by >= 0.1: no ties for max/min/maximum/sort."""
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    vals = (rng.permutation(sum(sizes)) - sum(sizes) / 2) * 0.13 + rng.uniform(0, 0.02)
    out, start = [], 0
    for s, n in zip(shapes, sizes):
        out.append(np.asarray(vals[start:start + n].reshape(s), np.float64))
        start += n
    return tuple(out)


def avoiding(rng, bands, *shape):
    """Values drawn uniformly from the given (lo, hi) bands (to stay clear of clip bounds and other kinks)."""
    which = rng.integers(0, len(bands), shape)
    lo = np.array([b[0] for b in bands])[which]
    hi = np.array([b[1] for b in bands])[which]
    return np.asarray(lo + (hi - lo) * rng.uniform(0, 1, shape), np.float64)


def off_integer_quotients(rng):
    """(a, b) pairs whose quotients a / b stay 0.1 or more from an integer: fmod and remainder jump there."""
    def pair(sa, sb):
        b = away0(rng, *sb)
        shape = np.broadcast_shapes(sa, sb)
        q = rng.integers(-3, 4, shape) + rng.uniform(0.1, 0.9, shape)
        a = np.asarray(q * b)
        assert a.shape == tuple(sa), "the quotient's shape must be a's: b broadcasts against a"
        return a, b

    shapes = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 3, 4), (3, 1)), ((3,), ()), ((), ())]
    return ([(pair(sa, sb), {}) for sa, sb in shapes]
            + [((uniform_in(rng, 0.1, 0.9, 3, 4) + rng.integers(-3, 4, (3, 4)), 1.0), {}),  # a Python divisor
               ((2.5, np.array([0.7, -1.1, 0.9, -1.3])), {})])  # a Python dividend


def unary(gen=normal, shapes=UNARY_SHAPES, **kwargs):
    """samples(rng) for a one-input op: `gen` over each shape, with the same keyword arguments."""
    return lambda rng: [((gen(rng, *s),), dict(kwargs)) for s in shapes]


def binary(gen_a=normal, gen_b=normal, shapes=BINARY_SHAPES):
    """samples(rng) for a broadcasting two-input op."""
    return lambda rng: [((gen_a(rng, *sa), gen_b(rng, *sb)), {}) for sa, sb in shapes]


def join(*samplers):
    """One samples function from several: their lists, concatenated."""
    return lambda rng: [s for sampler in samplers for s in sampler(rng)]


def scalar_mixes(gen=normal, scalar=2.0):
    """samples(rng) for a binary op with a Python scalar on either side (weak scalars become literals)."""
    return lambda rng: [((gen(rng, 3, 4), scalar), {}), ((scalar, gen(rng, 3, 4)), {})]


def jax_numpy(name):
    """reference(jax) for an op that jax.numpy has under `name`."""
    return lambda jax: getattr(jax.numpy, name)
