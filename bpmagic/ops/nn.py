"""Neural-network primitives: convolution and pooling (through sliding windows), embedding, and
randomness: dropout and the draws (uniform, normal, randn_like, rand_like), fresh at every training step.

conv2d and the pools are compositions over one pair of linear primitives, `unfold` (im2col: every kernel-sized
window as a column) and its adjoint `fold` (col2im: add the windows back). Each is the other's VJP, so convolutions
are differentiable to any order and their backward graphs read as the textbook formulas.

The layers further down are composites too: conv1d is conv2d on a height-1 image; conv_transpose2d is one matmul
followed by `fold` (the adjoint of conv2d's unfold); nearest upsampling is a broadcast, bilinear upsampling two
matmuls with constant interpolation matrices; batch_norm and scaled_dot_product_attention are arithmetic, reductions
and softmax.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import elementwise as _ew
from . import linalg as _linalg
from . import reduce as _reduce
from . import samples as S
from . import shape as _shape
from .core import Primitive, composite, current_trace, exposes, shape_error

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "embedding", "dropout", "random_uniform", "uniform", "normal",
           "randn_like", "rand_like", "unfold", "fold", "pad2d",
           "batch_norm", "conv1d", "conv_transpose2d", "upsample_nearest", "upsample_bilinear",
           "scaled_dot_product_attention"]


def _out_size(size, k, stride):
    return (size - k) // stride + 1


# -- unfold / fold -----------------------------------------------------------------------------------------------
def _unfold_impl(xp, x, kernel, stride):
    """(N, C, H, W) -> (N, C, kh, kw, OH, OW) windows (a copy, so later ops see a plain array)."""
    kh, kw = kernel
    n, c, h, w = x.shape
    oh, ow = _out_size(h, kh, stride), _out_size(w, kw, stride)
    out = xp.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return out


def _unfold_rule(x, kernel, stride):
    if len(x.shape) != 4:
        raise shape_error("unfold", [x], "expects an (N, C, H, W) array")
    n, c, h, w = x.shape
    kh, kw = kernel
    if h < kh or w < kw:
        raise shape_error("unfold", [x], f"the {kh}x{kw} window is larger than the {h}x{w} image")
    return (n, c, kh, kw, _out_size(h, kh, stride), _out_size(w, kw, stride)), x.dtype


def _fold_impl(xp, cols, image_shape, stride):
    n, c, kh, kw, oh, ow = cols.shape
    out = xp.zeros((n, c) + tuple(image_shape), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
    return out


def _conv_reference(jax):
    def conv(x, w, stride=1, padding=0):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                            dimension_numbers=("NCHW", "OIHW", "NCHW"))

    return conv


def _unfold_reference(jax):
    def windows(x, kernel, stride):
        oh, ow = _out_size(x.shape[2], kernel[0], stride), _out_size(x.shape[3], kernel[1], stride)
        rows = [[x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for j in range(kernel[1])]
                for i in range(kernel[0])]
        return jax.numpy.stack([jax.numpy.stack(r, axis=2) for r in rows], axis=2)

    return windows


def _fold_reference(jax):
    def fold(cols, image_shape, stride):
        # the adjoint of unfold, by JAX's own transposition of the windows above
        x0 = jax.numpy.zeros(cols.shape[:2] + tuple(image_shape), cols.dtype)
        _, pullback = jax.vjp(lambda x: _unfold_reference(jax)(x, cols.shape[2:4], stride), x0)
        return pullback(cols)[0]

    return fold


def _unfold_onnx(ctx, x, kernel, stride):
    """im2col as a grouped convolution with a one-hot kernel: output channel (c, i, j) picks x[c] at (i, j) of each
    window, exactly."""
    n, c, kh, kw, oh, ow = ctx.result.shape
    one_hot = np.zeros((c * kh * kw, 1, kh, kw), ctx.result.dtype)
    for k in range(c * kh * kw):
        one_hot[k, 0, (k // kw) % kh, k % kw] = 1
    windows = ctx.node("Conv", [x, ctx.const(one_hot)], group=c, kernel_shape=[kh, kw], strides=[stride, stride])
    return ctx.node("Reshape", [windows, ctx.ints(ctx.result.shape)])


unfold = Primitive("unfold", _unfold_impl, _unfold_rule,
                   lambda g, out, x, kernel, stride: (fold(g, image_shape=tuple(x.shape[2:]), stride=stride),),
                   onnx=_unfold_onnx, jax=lambda jax, x, kernel, stride: _unfold_reference(jax)(x, kernel, stride),
                   doc="Sliding windows (im2col): (N, C, H, W) -> (N, C, kh, kw, OH, OW).", numpy_name=None,
                   samples=lambda rng: [((S.normal(rng, 1, 2, 3, 3),), dict(kernel=(2, 2), stride=1)),
                                        ((S.normal(rng, 1, 1, 5, 5),), dict(kernel=(2, 3), stride=2))],
                   reference=_unfold_reference,
                   vjp_math="x̄ = fold(ḡ): each window's cotangent added back into the image")
fold = Primitive("fold", _fold_impl, lambda cols, image_shape, stride: (cols.shape[:2] + tuple(image_shape),
                                                                        cols.dtype),
                 lambda g, out, cols, image_shape, stride: (unfold(g, kernel=tuple(cols.shape[2:4]),
                                                                   stride=stride),),
                 jax=lambda jax, cols, image_shape, stride: _fold_reference(jax)(cols, image_shape, stride),
                 doc="The adjoint of unfold (col2im): adds each window back into the image.", numpy_name=None,
                 samples=lambda rng: [((S.normal(rng, 1, 1, 2, 2, 2, 2),), dict(image_shape=(3, 3), stride=1)),
                                      ((S.normal(rng, 1, 2, 2, 2, 2, 2),), dict(image_shape=(4, 4), stride=2)),
                                      ((S.normal(rng, 1, 1, 2, 2, 2, 2),), dict(image_shape=(5, 5), stride=2))],
                 reference=_fold_reference, vjp_math="cols̄ = unfold(ḡ)")


def _pad_impl(xp, x, padding):
    p = padding
    return xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


pad2d = Primitive("pad2d", _pad_impl,
                  lambda x, padding: (tuple(x.shape[:2]) + tuple(s + 2 * padding for s in x.shape[2:]), x.dtype),
                  lambda g, out, x, padding: (_shape.getitem(
                      g, (slice(None), slice(None), slice(padding, padding + x.shape[2]),
                          slice(padding, padding + x.shape[3]))),),
                  onnx=lambda ctx, x, padding: ctx.node("Pad", [x, ctx.ints([0, 0, padding, padding] * 2)]),
                  doc="Zero padding of the two spatial axes of an (N, C, H, W) array.", numpy_name=None,
                  samples=lambda rng: [((S.normal(rng, 1, 2, 3, 3),), dict(padding=1)),
                                       ((S.normal(rng, 2, 1, 2, 2),), dict(padding=2))],
                  reference=lambda jax: lambda x, padding: jax.numpy.pad(
                      x, ((0, 0), (0, 0), (padding, padding), (padding, padding))),
                  vjp_math="x̄ = ḡ[:, :, p:p+H, p:p+W] (the padding's cotangent is dropped)")


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)


# -- convolution and pooling ---------------------------------------------------------------------------------------
@composite(samples=lambda rng: [
    ((S.normal(rng, 2, 2, 4, 4), S.normal(rng, 3, 2, 2, 2)), {}),
    ((S.normal(rng, 1, 2, 5, 5), S.normal(rng, 2, 2, 3, 3)), dict(stride=2, padding=1)),
    ((S.normal(rng, 1, 1, 4, 4), S.normal(rng, 2, 1, 3, 3)), dict(stride=1, padding=1)),
    ((S.normal(rng, 1, 3, 4, 5), S.normal(rng, 2, 3, 2, 3)), dict(stride=2)),
    ((S.normal(rng, 2, 3, 2, 2), S.normal(rng, 4, 3, 1, 1)), {})], reference=_conv_reference, numpy_name=None,
           vjp_math="x̄ = conv_transpose2d(ḡ, w) (stride s, padding cropped), w̄ = Σₙ ḡ ⋆ x (through unfold and fold)")
def conv2d(x, w, stride=1, padding=0):
    """2-d cross-correlation, as in PyTorch: x is (N, C, H, W), w is (out, C, kh, kw) -> (N, out, OH, OW)."""
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ShapeError(f"conv2d of {tuple(x.shape)} and {tuple(w.shape)}: x must be (N, C, H, W) and w must be "
                         "(out_channels, in_channels, kh, kw)")
    if x.shape[1] != w.shape[1]:
        raise ShapeError(f"conv2d of {tuple(x.shape)} and {tuple(w.shape)}: x has {x.shape[1]} channels but w "
                         f"expects {w.shape[1]}")
    stride, padding = int(stride), int(padding)
    if padding:
        x = pad2d(x, padding=padding)
    cols = unfold(x, kernel=tuple(w.shape[2:]), stride=stride)  # (N, C, kh, kw, OH, OW)
    n, c, kh, kw, oh, ow = cols.shape
    cols = _shape.reshape(cols, (n, c * kh * kw, oh * ow))
    out = _linalg.matmul(_shape.reshape(w, (w.shape[0], c * kh * kw)), cols)  # (N, out, OH*OW)
    return _shape.reshape(out, (n, w.shape[0], oh, ow))


def _pool_windows(x, kernel_size, stride, name):
    if len(x.shape) != 4:
        raise ShapeError(f"{name} of {tuple(x.shape)}: expects an (N, C, H, W) array")
    k = _pair(kernel_size)
    s = k[0] if stride is None else int(stride)
    cols = unfold(x, kernel=k, stride=s)
    n, c, kh, kw, oh, ow = cols.shape
    return _shape.reshape(cols, (n, c, kh * kw, oh, ow))


def _pool_reference(init, op, scale=False):
    def reference(jax):
        def pool(x, kernel_size, stride=None):
            k = _pair(kernel_size)
            s = k[0] if stride is None else int(stride)
            out = jax.lax.reduce_window(x, init, getattr(jax.lax, op), (1, 1) + k, (1, 1, s, s), "VALID")
            return out / (k[0] * k[1]) if scale else out

        return pool

    return reference


def _distinct(rng, *shape):
    return S.distinct(rng, shape)[0]


@composite(samples=lambda rng: [((_distinct(rng, 1, 2, 4, 4), 2), {}),
                                ((_distinct(rng, 1, 1, 4, 4), 2), dict(stride=1)),
                                ((_distinct(rng, 2, 1, 3, 4), (2, 3)), dict(stride=1)),
                                ((_distinct(rng, 1, 1, 5, 5), 3), dict(stride=2))],
           reference=_pool_reference(-float("inf"), "max"), numpy_name=None,
           vjp_math="x̄ = ḡ routed to each window's largest entry (shared among ties; overlapping windows add)")
def max_pool2d(x, kernel_size, stride=None):
    """Largest value in each window (stride defaults to the window size)."""
    return _reduce.max(_pool_windows(x, kernel_size, stride, "max_pool2d"), axis=2)


@composite(samples=lambda rng: [((S.normal(rng, 1, 2, 4, 4), 2), {}), ((S.normal(rng, 1, 1, 4, 4), 2), dict(stride=1)),
                                ((S.normal(rng, 1, 2, 5, 5), 3), dict(stride=2))],
           reference=_pool_reference(0.0, "add", scale=True), numpy_name=None,
           vjp_math="x̄ = ḡ / (kh · kw) spread over each window (overlapping windows add)")
def avg_pool2d(x, kernel_size, stride=None):
    """Average of each window (stride defaults to the window size)."""
    return _reduce.mean(_pool_windows(x, kernel_size, stride, "avg_pool2d"), axis=2)


# -- embedding -----------------------------------------------------------------------------------------------------
@composite(samples=lambda rng: [((S.normal(rng, 5, 3), np.array([[0, 2, 0], [4, 0, 1]])), {}),
                                ((S.normal(rng, 5, 3), np.array([3, 3, 3])), {})],
           reference=lambda jax: lambda table, ids: table[ids], numpy_name=None,
           vjp_math="tablē = zeros_like(table) with ḡ's rows added at ids (repeated ids accumulate); no gradient "
                    "for ids")
def embedding(table, ids):
    """Rows of `table` (vocab, dim) for integer `ids` of any shape -> ids.shape + (dim,)."""
    if len(table.shape) != 2:
        raise ShapeError(f"embedding of {tuple(table.shape)}: the table must be 2-d (vocabulary, dimension)")
    return _shape.take(table, ids, axis=0)


# -- randomness ---------------------------------------------------------------------------------------------------
# A draw is keyed by a pair (key, stream) of NumPy's Philox generator: counter-based, so the same pair gives the
# same numbers on every machine and backend. A compiled training step takes a fresh key at every step (from the
# run's seed and the step number: train/step.py) and each draw in the step's code gets a stream of its own, so
# dropout and noise are new at each step and a run is reproducible; a Reset replays them. Outside a training step
# (evaluation: validation, export, bp.trace for a drawing) dropout is off and the draws take key 0.

_EXPLICIT = 1 << 62  # the streams of draws given a key of their own (dropout(h, 0.5, key=3)), apart from counted ones


def _philox(key, stream, shape, dtype):
    words = np.array([int(key) % (1 << 64), int(stream) % (1 << 64)], np.uint64)
    return np.random.Generator(np.random.Philox(key=words)).random(shape, dtype=np.float64).astype(dtype)


def _uniform_impl(xp, key, shape, dtype, stream=0):
    return xp.asarray(_philox(key, stream, shape, dtype))


_uniform = Primitive("random_uniform", _uniform_impl,
                     lambda key, shape, dtype, stream=0: (tuple(shape), np.dtype(dtype)),
                     effects=("random",), differentiable=False,
                     doc="Uniform [0, 1) numbers, reproducible from an integer key (and a stream of it).")


# randomness has no JAX twin: the reference is NumPy's Philox itself, which the draw must reproduce on every backend
@exposes(_uniform, samples=lambda rng: [((np.int64(3), (3, 4)), {}), ((np.int64(7), (5,)), dict(dtype=np.float64))],
         reference=lambda jax: lambda key, shape, dtype=np.float32: jax.numpy.asarray(_philox(key, 0, shape, dtype)),
         numpy_name=None, vjp_math="no gradient (random numbers from an integer key)")
def random_uniform(key, shape, dtype=np.float32):
    """Uniform [0, 1) numbers of `shape`, the same for the same integer `key`."""
    key = key if hasattr(key, "_bp_trace") else np.asarray(key, np.int64)
    return _uniform(key, shape=tuple(shape), dtype=np.dtype(dtype))


def _step():
    """The training step being traced (its trace has a `step_key`), or None."""
    trace = current_trace()
    return trace if trace is not None and trace.step_key is not None else None


def _draw(shape, dtype, key=None, part=0):
    """Uniform [0, 1) numbers: in a training step, fresh at every step (a stream of the step's key of its own, or
    the stream `key` names); elsewhere from `key` (0 when none is given), stream `part` (a draw made of several)."""
    step = _step()
    if hasattr(key, "_bp_trace"):
        return random_uniform(key, shape, dtype)
    if step is None:
        return _uniform(np.asarray(0 if key is None else key, np.int64), shape=tuple(shape), dtype=np.dtype(dtype),
                        stream=part)
    stream = step.next_stream() if key is None else _EXPLICIT | int(key)
    return _uniform(step.step_key, shape=tuple(shape), dtype=np.dtype(dtype), stream=stream)


def _draw_shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(int(s) for s in shape[0])
    return tuple(int(s) for s in shape)


def _draw_dtype(dtype):
    """A draw's dtype: as asked, else the step's floats (a float32 model's noise is float32), else float64."""
    if dtype is not None:
        return np.dtype(dtype)
    step = _step()
    return np.dtype(step.float_dtype) if step is not None else np.dtype(np.float64)


def _uniform_reference(jax):
    def uniform(*shape, low=0.0, high=1.0, dtype=np.float64):
        return jax.numpy.asarray(_philox(0, 0, _draw_shape(shape), dtype)) * (high - low) + low

    return uniform


def _normal_reference(jax):
    def normal(*shape, mean=0.0, std=1.0, dtype=np.float64):
        u1, u2 = (jax.numpy.asarray(_philox(0, part, _draw_shape(shape), dtype)) for part in (1, 2))
        return jax.numpy.sqrt(-2.0 * jax.numpy.log1p(-u1)) * jax.numpy.cos(2 * np.pi * u2) * std + mean

    return normal


# outside a training step a draw takes key 0: the references are NumPy's Philox with that key, as random_uniform's
@composite(samples=lambda rng: [((3, 4), dict(low=-1.0, high=1.0)), ((5,), {})], differentiable=False,
           reference=_uniform_reference, numpy_name=None, vjp_math="no gradient (a random draw)")
def uniform(*shape, low=0.0, high=1.0, dtype=None):
    """Uniform numbers in [low, high) of `shape` (uniform(3, 4) or uniform((3, 4))): in a %%backprop cell's body,
    drawn anew at every step. (`W: Param = uniform(...)` is the seeded initialiser, drawn once.)"""
    if len(shape) == 2 and isinstance(shape[1], (tuple, list)):  # the old bp.uniform(key, shape)
        import warnings

        warnings.warn("bp.uniform(key, shape) is now bp.random_uniform(key, shape); uniform(*shape, low=, high=) "
                      "draws anew at every step of a training step", DeprecationWarning, stacklevel=2)
        return random_uniform(shape[0], shape[1], np.float32 if dtype is None else dtype)
    shape, dtype = _draw_shape(shape), _draw_dtype(dtype)
    u = _draw(shape, dtype)
    return u if (low, high) == (0.0, 1.0) else u * (high - low) + low


@composite(samples=lambda rng: [((3, 4), dict(mean=1.0, std=2.0)), ((5,), {})], differentiable=False,
           reference=_normal_reference, numpy_name=None, vjp_math="no gradient (a random draw)")
def normal(*shape, mean=0.0, std=1.0, dtype=None):
    """Normal numbers (Box–Muller from two uniform draws) of `shape`: in a %%backprop cell's body, drawn anew at
    every step (a VAE's noise: `z = mu + sigma * normal(mu.shape)`). (`W: Param = normal(...)` is the seeded
    initialiser, drawn once.)"""
    shape, dtype = _draw_shape(shape), _draw_dtype(dtype)
    u1, u2 = _draw(shape, dtype, part=1), _draw(shape, dtype, part=2)
    z = _ew.sqrt(-2.0 * _ew.log1p(-u1)) * _ew.cos((2 * np.pi) * u2)  # 1 - u1 is in (0, 1]: no log of zero
    return z if (mean, std) == (0.0, 1.0) else z * std + mean


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {})], differentiable=False, numpy_name=None,
           reference=lambda jax: lambda x: _normal_reference(jax)(x.shape, dtype=x.dtype),
           vjp_math="no gradient (a random draw)")
def randn_like(x):
    """Standard normal numbers shaped like `x`, in its dtype: drawn anew at every step of a training step."""
    return normal(tuple(x.shape), dtype=x.dtype)


@composite(samples=lambda rng: [((S.normal(rng, 3, 4),), {})], differentiable=False, numpy_name=None,
           reference=lambda jax: lambda x: _uniform_reference(jax)(x.shape, dtype=x.dtype),
           vjp_math="no gradient (a random draw)")
def rand_like(x):
    """Uniform [0, 1) numbers shaped like `x`, in its dtype: drawn anew at every step of a training step."""
    return uniform(tuple(x.shape), dtype=x.dtype)


def _dropout_reference(jax):
    def dropout(x, rate, key=None, training=None):
        keep = _philox(0 if key is None else key, 0, x.shape, x.dtype) >= rate
        return jax.numpy.where(keep, x * (1.0 / (1.0 - rate)), 0.0)

    return dropout


@composite(samples=lambda rng: [((S.normal(rng, 3, 4), 0.5), dict(key=7)), ((S.normal(rng, 3, 4), 0.25), dict(key=1)),
                                ((S.normal(rng, 2, 3), 0.0), dict(key=3))],
           reference=_dropout_reference, numpy_name=None, vjp_math="x̄ = ḡ · [kept] / (1 − rate)")
def dropout(x, rate, key=None, training=None):
    """Zero each entry with probability `rate` and scale the rest by 1/(1 - rate).

    In a training step (a %%backprop cell, bp.fit, bp.compile_step) the mask is new at every step, reproducible
    from the run's seed; `key` then only tells two dropouts apart. Elsewhere — the model evaluated (validation,
    export, bp.trace for a drawing) — dropout is off, unless `key` is given (the mask of that key) or training=True.
    """
    if not 0 <= rate < 1:
        raise ShapeError(f"dropout rate must be in [0, 1), got {rate}")
    if training is None:
        training = key is not None or _step() is not None
    if rate == 0 or not training:
        return x
    keep = _ew.greater_equal(_draw(tuple(x.shape), x.dtype, key), rate)
    return _ew.where(keep, x * (1.0 / (1.0 - rate)), 0.0)


# -- normalisation -------------------------------------------------------------------------------------------------
def _bn_axes(x):
    if len(x.shape) < 2:
        raise ShapeError(f"batch_norm of {tuple(x.shape)}: expects (N, C) or (N, C, ...) with channels on axis 1")
    return (0,) + tuple(range(2, len(x.shape)))


def _per_channel(v, x):
    return _shape.reshape(v, (1, x.shape[1]) + (1,) * (len(x.shape) - 2))


def _bn_ref(jax):
    def batch_norm(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True, momentum=0.1,
                   eps=1e-5):
        jnp = jax.numpy
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if training:
            mu, var = jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
        else:
            mu, var = running_mean, running_var
        y = (x - mu.reshape(shape)) / jnp.sqrt(var.reshape(shape) + eps)
        y = y * (1.0 if gamma is None else gamma.reshape(shape)) + (0.0 if beta is None else beta.reshape(shape))
        if running_mean is None:
            return y
        if not training:
            return y, running_mean, running_var
        n = x.size // x.shape[1]
        unbiased = jax.lax.stop_gradient(var) * n / max(n - 1, 1)
        return (y, (1 - momentum) * running_mean + momentum * jax.lax.stop_gradient(mu),
                (1 - momentum) * running_var + momentum * unbiased)
    return batch_norm


@composite(samples=lambda rng: [((S.normal(rng, 4, 3), S.normal(rng, 3), S.normal(rng, 3)), {}),
                                ((S.normal(rng, 3, 2, 2, 2), S.normal(rng, 2), S.normal(rng, 2)), {}),
                                ((S.normal(rng, 4, 3), S.normal(rng, 3), S.normal(rng, 3), S.normal(rng, 3),
                                  S.positive(rng, 3)), {"training": False})],
           reference=_bn_ref, numpy_name=None,
           vjp_math="x̄ = γ/σ · (ḡ − mean(ḡ) − x̂ · mean(ḡ · x̂)) over the batch axes (training); γ̄ = Σ ḡ·x̂, "
                    "β̄ = Σ ḡ")
def batch_norm(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True, momentum=0.1,
               eps=1e-5):
    """Normalise each channel (axis 1) of x (N, C, ...) to mean 0 and variance 1, then scale by gamma and shift
    by beta. training=True uses the batch's statistics; training=False uses running_mean / running_var.

    Without running averages it returns y. With them it returns (y, new_mean, new_var), so one line serves both
    modes: `h, mean1, var1 = batch_norm(h, g1, b1, mean1, var1, training=True)`; while training the averages move
    by `momentum` towards the batch's mean and (unbiased) variance, with no gradient through them; in evaluation
    they come back unchanged. In a %%backprop cell, declare them `mean1: Buffer = zeros(C)` and
    `var1: Buffer = ones(C)`: each step keeps their new values, and after training they are arrays in the notebook.
    """
    axes = _bn_axes(x)
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if v is not None and tuple(v.shape) != (x.shape[1],):
            raise ShapeError(f"batch_norm of {tuple(x.shape)}: {name} has shape {tuple(v.shape)}, but x has "
                             f"{x.shape[1]} channels on axis 1, so it must be ({x.shape[1]},)")
    if (running_mean is None) != (running_var is None):
        raise ShapeError("batch_norm: pass both running_mean and running_var, or neither")
    if training:
        mu = _reduce.mean(x, axis=axes)
        var = _reduce.mean(_ew.square(x - _per_channel(mu, x)), axis=axes)
    elif running_mean is None:
        raise ShapeError(f"batch_norm of {tuple(x.shape)} with training=False needs running_mean and running_var "
                         "(the averages collected while training)")
    else:
        mu, var = running_mean, running_var
    y = (x - _per_channel(mu, x)) / _ew.sqrt(_per_channel(var, x) + eps)
    if gamma is not None:
        y = y * _per_channel(gamma, x)
    if beta is not None:
        y = y + _per_channel(beta, x)
    if running_mean is None:
        return y
    if not training:
        return y, running_mean, running_var
    n = int(np.prod([x.shape[a] for a in axes]))
    new_mean = (1 - momentum) * running_mean + momentum * _ew.stop_gradient(mu)
    new_var = (1 - momentum) * running_var + momentum * (n / max(n - 1, 1)) * _ew.stop_gradient(var)
    return y, new_mean, new_var


# -- more convolutions ---------------------------------------------------------------------------------------------
def _conv1d_ref(jax):
    def conv1d(x, w, stride=1, padding=0):
        return jax.lax.conv_general_dilated(x, w, (stride,), [(padding, padding)])
    return conv1d


@composite(samples=lambda rng: [((S.normal(rng, 2, 2, 6), S.normal(rng, 3, 2, 3)), {}),
                                ((S.normal(rng, 1, 2, 7), S.normal(rng, 2, 2, 3)), {"stride": 2, "padding": 1})],
           reference=_conv1d_ref, numpy_name=None,
           vjp_math="x̄ = conv_transpose1d(ḡ, w), w̄ = Σₙ ḡ ⋆ x (as conv2d on a height-1 image)")
def conv1d(x, w, stride=1, padding=0):
    """1-d cross-correlation: x is (N, C, L), w is (out, C, k) -> (N, out, OL)."""
    if len(x.shape) != 3 or len(w.shape) != 3 or x.shape[1] != w.shape[1]:
        raise ShapeError(f"conv1d of {tuple(x.shape)} and {tuple(w.shape)}: x must be (N, C, L) and w "
                         "(out_channels, C, k) with the same C")
    if padding:
        x = _shape.pad(x, ((0, 0), (0, 0), (int(padding), int(padding))))
    if x.shape[2] < w.shape[2]:
        raise ShapeError(f"conv1d of {tuple(x.shape)} and {tuple(w.shape)}: the kernel is longer than the signal")
    out = conv2d(_shape.expand_dims(x, 2), _shape.expand_dims(w, 2), stride=stride)
    return _shape.squeeze(out, 2)


def _convt_ref(jax):
    def conv_transpose2d(x, w, stride=1, padding=0):
        # the gradient of conv2d with respect to its input is the transposed convolution
        n, _, h, wd = x.shape
        kh, kw = w.shape[2:]
        shape = (n, w.shape[1], (h - 1) * stride + kh - 2 * padding, (wd - 1) * stride + kw - 2 * padding)
        conv = lambda y: jax.lax.conv_general_dilated(y, w, (stride, stride), [(padding, padding)] * 2)  # noqa
        return jax.vjp(conv, jax.numpy.zeros(shape, x.dtype))[1](x)[0]
    return conv_transpose2d


@composite(samples=lambda rng: [((S.normal(rng, 2, 2, 3, 3), S.normal(rng, 2, 3, 2, 2)), {}),
                                ((S.normal(rng, 1, 2, 3, 2), S.normal(rng, 2, 1, 3, 3)),
                                 {"stride": 2, "padding": 1})],
           reference=_convt_ref, numpy_name=None,
           vjp_math="x̄ = conv2d(ḡ, w) (stride s), w̄ = Σₙ x ⋆ ḡ: the adjoint of conv2d's input gradient")
def conv_transpose2d(x, w, stride=1, padding=0):
    """Transposed 2-d convolution (the gradient of conv2d with respect to its input), as in PyTorch: x is
    (N, C, H, W), w is (C, out, kh, kw) -> (N, out, (H−1)·stride + kh − 2·padding, ...)."""
    if len(x.shape) != 4 or len(w.shape) != 4 or x.shape[1] != w.shape[0]:
        raise ShapeError(f"conv_transpose2d of {tuple(x.shape)} and {tuple(w.shape)}: x must be (N, C, H, W) and "
                         "w (C, out_channels, kh, kw) with the same C")
    stride, padding = int(stride), int(padding)
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    full = ((h - 1) * stride + kh, (wd - 1) * stride + kw)
    if full[0] <= 2 * padding or full[1] <= 2 * padding:
        raise ShapeError(f"conv_transpose2d of {tuple(x.shape)} and {tuple(w.shape)}: padding {padding} crops the "
                         f"whole {full[0]}x{full[1]} output")
    wt = _shape.transpose(_shape.reshape(w, (c, o * kh * kw)))  # (out*kh*kw, C)
    cols = _linalg.matmul(wt, _shape.reshape(x, (n, c, h * wd)))  # (N, out*kh*kw, H*W)
    image = fold(_shape.reshape(cols, (n, o, kh, kw, h, wd)), image_shape=full, stride=stride)
    if padding:
        image = _shape.getitem(image, (slice(None), slice(None), slice(padding, full[0] - padding),
                                       slice(padding, full[1] - padding)))
    return image


# -- upsampling ----------------------------------------------------------------------------------------------------
def _check_image(name, x, scale):
    if len(x.shape) != 4:
        raise ShapeError(f"{name} of {tuple(x.shape)}: expects an (N, C, H, W) array")
    if int(scale) != scale or scale < 1:
        raise ShapeError(f"{name}: scale_factor must be a whole number >= 1, got {scale}")
    return int(scale)


@composite(samples=lambda rng: [((S.normal(rng, 1, 2, 2, 3), 2), {}), ((S.normal(rng, 2, 1, 2, 2), 3), {})],
           reference=lambda jax: lambda x, s: jax.numpy.repeat(jax.numpy.repeat(x, s, axis=2), s, axis=3),
           numpy_name=None, vjp_math="x̄ = ḡ summed over each s×s block")
def upsample_nearest(x, scale_factor=2):
    """Each pixel of x (N, C, H, W) repeated into a scale_factor × scale_factor block."""
    s = _check_image("upsample_nearest", x, scale_factor)
    n, c, h, w = x.shape
    wide = _shape.broadcast_to(_shape.reshape(x, (n, c, h, 1, w, 1)), (n, c, h, s, w, s))
    return _shape.reshape(wide, (n, c, h * s, w * s))


def _linear_weights(size, s, dtype):
    """(size·s, size): PyTorch's bilinear weights with align_corners=False (half-pixel centres, edges clamped)."""
    src = np.clip((np.arange(size * s) + 0.5) / s - 0.5, 0, size - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    frac = src - lo
    m = np.zeros((size * s, size))
    np.add.at(m, (np.arange(size * s), lo), 1 - frac)
    np.add.at(m, (np.arange(size * s), hi), frac)
    return m.astype(dtype)


@composite(samples=lambda rng: [((S.normal(rng, 1, 2, 2, 3), 2), {}), ((S.normal(rng, 1, 1, 3, 3), 3), {})],
           reference=lambda jax: lambda x, s: jax.image.resize(x, x.shape[:2] + (x.shape[2] * s, x.shape[3] * s),
                                                               "bilinear"),
           numpy_name=None, vjp_math="x̄ = Aₕᵀ ḡ A_w (A the constant interpolation matrices)")
def upsample_bilinear(x, scale_factor=2):
    """x (N, C, H, W) enlarged scale_factor times by bilinear interpolation (PyTorch's align_corners=False)."""
    s = _check_image("upsample_bilinear", x, scale_factor)
    rows = _linear_weights(x.shape[2], s, x.dtype)  # (H·s, H)
    cols = _linear_weights(x.shape[3], s, x.dtype).T  # (W, W·s)
    return _linalg.matmul(_linalg.matmul(rows, x), cols)


# -- attention -----------------------------------------------------------------------------------------------------
def _sdpa_ref(jax):
    def attention(q, k, v, mask=None, is_causal=False, scale=None):
        jnp = jax.numpy
        s = q @ jnp.swapaxes(k, -1, -2) * (scale if scale is not None else 1 / np.sqrt(q.shape[-1]))
        if is_causal:
            s = jnp.where(np.tri(q.shape[-2], k.shape[-2], dtype=bool), s, -jnp.inf)
        if mask is not None:
            s = jnp.where(mask, s, -jnp.inf) if mask.dtype == bool else s + mask
        return jax.nn.softmax(s, axis=-1) @ v
    return attention


@composite(samples=lambda rng: [((S.normal(rng, 2, 4, 3), S.normal(rng, 2, 5, 3), S.normal(rng, 2, 5, 2)), {}),
                                ((S.normal(rng, 2, 2, 4, 3), S.normal(rng, 2, 2, 4, 3), S.normal(rng, 2, 2, 4, 3)),
                                 {"is_causal": True}),
                                ((S.normal(rng, 3, 2), S.normal(rng, 3, 2), S.normal(rng, 3, 2),
                                  np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], bool)), {})],
           reference=_sdpa_ref, numpy_name=None,
           vjp_math="V̄ = Pᵀ ḡ, S̄ = P ⊙ (ḡVᵀ − rowsum(P ⊙ ḡVᵀ)), Q̄ = c S̄ K, K̄ = c S̄ᵀ Q, with P = softmax(c QKᵀ)")
def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False, scale=None):
    """softmax(q kᵀ · scale) v, scale = 1/√d by default: q (…, L, d), k (…, S, d), v (…, S, dv) -> (…, L, dv).
    is_causal=True lets position i attend only to positions ≤ i; `mask` is boolean (True = attend) or added to the
    scores."""
    if len(q.shape) < 2 or len(k.shape) < 2 or len(v.shape) < 2 or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention of {tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}: "
                         "q must be (…, L, d), k (…, S, d) and v (…, S, dv): q and k share d, k and v share S")
    c = float(scale if scale is not None else 1.0 / np.sqrt(q.shape[-1]))  # a Python float: float32 stays float32
    scores = _linalg.matmul(q, _shape.swapaxes(k, -1, -2)) * c
    if is_causal:
        scores = _ew.where(np.tri(q.shape[-2], k.shape[-2], dtype=bool), scores, -np.inf)
    if mask is not None:
        boolean = np.dtype(mask.dtype) == np.bool_
        scores = _ew.where(mask, scores, -np.inf) if boolean else scores + mask
    from .composite import softmax  # composite imports nothing from nn; importing here keeps the layers' order
    return _linalg.matmul(softmax(scores, axis=-1), v)
