"""Random straight-line programs for checking bpmagic against an independent implementation (JAX, float64).

Hypothesis builds each program ONCE as a plain description (a list of `Step(op, operand indices, params)` over 1-3
inputs of small random shapes, 0-d to 3-d), then `run_program` interprets it with bpmagic ("bp") or jax.numpy
("jax"). The op table `OPS` (elementwise, activation and reduction ops, linear algebra, NumPy's shape functions,
losses and layers) maps an op name to (bpmagic callable, JAX callable, generator); the generator picks operands among
the values computed so far (broadcast-compatible shapes of different rank are common) and the op's parameters, and
records the result's shape. Every value that no later step reads is reduced to a scalar as sum (or mean) of value *
fixed random weights, and those scalars are added up: the loss. Python operators on traced values (a + b, a @ b,
a[idx], c / a, ...) and method forms (a.sum(), a.T) are used for some steps, so the overloads are exercised too.
Used by autodiff/test_random_programs.py and by support/cuda_corpus.py (the CUDA kernels of 40 programs).
"""
from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from hypothesis import HealthCheck
from hypothesis import strategies as st

import bpmagic as bp

RTOL, ATOL = 1e-9, 1e-12
MAX_SIZE = 64          # no value has more elements than this
MAX_NDIM = 4
MAX_STEPS = 8
LN_EPS = 1e-5          # bp.layer_norm's default eps

# report_multiple_bugs=False: shrink one failure only (every example compiles with XLA, so shrinking is not cheap)
COMMON = {"deadline": None, "derandomize": True, "print_blob": True, "report_multiple_bugs": False,
          "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}


# ================================================================================================================
# programs
# ================================================================================================================
@dataclasses.dataclass
class Step:
    op: str
    args: tuple        # indices of earlier values (inputs first, then steps)
    params: dict
    shape: tuple       # the result's shape, as the generator expects it


@dataclasses.dataclass
class Program:
    input_shapes: list
    steps: list
    sinks: list        # (value index, "sum" | "mean", style): the terms of the loss
    seed: int          # data: inputs and loss weights come from np.random.default_rng(seed)

    @property
    def n_inputs(self):
        return len(self.input_shapes)

    def name(self, i):
        return f"x{i}" if i < self.n_inputs else f"v{i}"

    def shapes(self):
        return list(self.input_shapes) + [s.shape for s in self.steps]

    def __repr__(self):
        lines = [f"Program(seed={self.seed}): "
                 + ", ".join(f"{self.name(i)}: f64{s}" for i, s in enumerate(self.input_shapes))]
        for k, s in enumerate(self.steps):
            i = self.n_inputs + k
            params = ", ".join(f"{key}={_fmt(v)}" for key, v in s.params.items())
            call = f"{s.op}({', '.join(self.name(a) for a in s.args)}{', ' if params else ''}{params})"
            doc = OPS[s.op].doc
            lines.append(f"  {self.name(i)} = {call:<70} -> {s.shape}" + (f"    # {doc}" if doc else ""))
        terms = [f"{red}({self.name(i)} * W{i})" for i, red, _ in self.sinks]
        lines.append(f"  loss = {' + '.join(terms)}    (W*: fixed random weights of the value's shape)")
        return "\n".join(lines)


def _fmt(v):
    if isinstance(v, np.generic):
        v = np.asarray(v)
    if isinstance(v, np.ndarray):
        return f"<const f64{v.shape}>" if v.dtype.kind == "f" else repr(v.tolist())
    if isinstance(v, slice):
        return ":".join("" if x is None else str(x) for x in (v.start, v.stop)) + (
            "" if v.step is None else f":{v.step}")
    if v is Ellipsis:
        return "..."
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def make_data(prog, seed=None):
    """Inputs and loss weights of a program, from its seed (or another one)."""
    rng = np.random.default_rng(prog.seed if seed is None else seed)
    inputs = [rng.standard_normal(s) for s in prog.input_shapes]
    shapes = prog.shapes()
    weights = [rng.standard_normal(shapes[i]) for i, _, _ in prog.sinks]
    return inputs, weights


def run_program(prog, lib, inputs, weights):
    """Interpret `prog` with lib = "bp" or "jax" on the given (traced or concrete) inputs; returns the loss."""
    vals = list(inputs)
    for k, s in enumerate(prog.steps):
        fn = OPS[s.op].bp if lib == "bp" else OPS[s.op].jax
        out = fn(*(vals[i] for i in s.args), **s.params)
        if tuple(out.shape) != tuple(s.shape):
            raise AssertionError(f"{lib}: step {prog.name(prog.n_inputs + k)} = {s.op} gave shape "
                                 f"{tuple(out.shape)}, expected {s.shape}\n{prog!r}")
        vals.append(out)
    loss = None
    for (i, red, style), w in zip(prog.sinks, weights):
        v = vals[i]
        if lib == "bp":
            if style == "method":
                term = (v * w).sum() if red == "sum" else (v * w).mean()
            else:
                term = bp.sum(v * w) if red == "sum" else bp.mean(v * w)
        else:
            term = jnp.sum(v * w) if red == "sum" else jnp.mean(v * w)
        loss = term if loss is None else loss + term
    return loss


# ================================================================================================================
# the op table: name -> Op(bpmagic callable, JAX callable, generator, smooth)
#   generator(draw, shapes) -> (operand indices, params, result shape), or None when it does not apply
#   smooth: twice differentiable everywhere (allowed in the second-order test)
# ================================================================================================================
@dataclasses.dataclass
class Op:
    bp: object
    jax: object
    gen: object
    smooth: bool = True
    doc: str = ""      # what the step computes from its operands a, b, ... where the name does not say it


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def _bcast(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _fits(shape):
    return shape is not None and 0 < _size(shape) <= MAX_SIZE and len(shape) <= MAX_NDIM


def _pick(draw, shapes, ok=lambda s: True):
    """An index of a value whose shape satisfies `ok`; 0 draws (what hypothesis shrinks to) the most recent one."""
    cands = [i for i, s in enumerate(shapes) if ok(tuple(s))]
    if not cands:
        return None
    return cands[len(cands) - 1 - draw(st.integers(0, len(cands) - 1))]


# Hypothesis favours small and repeated choices; the low bits of a wide integer are close to uniform (and shrink)
_WIDE = st.integers(0, 2 ** 20)


def _style(draw, *styles):
    return draw(st.sampled_from(styles or ("op", "fn")))


# -- elementwise unary ----------------------------------------------------------------------------------------------
def _gen_unary(*styles):
    def gen(draw, shapes):
        i = _pick(draw, shapes)
        return (i,), ({"style": _style(draw, *styles)} if styles else {}), shapes[i]
    return gen


def _gen_pow_const(draw, shapes):
    i = _pick(draw, shapes)
    return (i,), {"k": draw(st.sampled_from([2, 3, 2.0, 3.0])), "style": _style(draw)}, shapes[i]


SCALAR_FORMS = ["a*c", "c*a", "a+c", "c+a", "a-c", "c-a", "c/(1.5+a*a)"]


def _gen_scalar(draw, shapes):
    i = _pick(draw, shapes)
    return (i,), {"form": draw(st.sampled_from(SCALAR_FORMS)), "c": draw(st.sampled_from([0.5, -1.25, 2.0]))}, \
        shapes[i]


def _scalar(a, form, c):
    return {"a*c": lambda: a * c, "c*a": lambda: c * a, "a+c": lambda: a + c, "c+a": lambda: c + a,
            "a-c": lambda: a - c, "c-a": lambda: c - a, "c/(1.5+a*a)": lambda: c / (1.5 + a * a)}[form]()


# -- elementwise binary, broadcasting -------------------------------------------------------------------------------
def _gen_binary(*styles, extra=None):
    def gen(draw, shapes):
        i = _pick(draw, shapes)
        j = _pick(draw, shapes, lambda s: _fits(_bcast(shapes[i], s)))
        params = {"style": _style(draw, *styles)} if styles else {}
        if extra:
            params.update(extra(draw))
        return (i, j), params, _bcast(shapes[i], shapes[j])
    return gen


def _bp_den(b, den):
    # a denominator that stays away from 0
    return {"1.5+b*b": lambda: 1.5 + b * b, "square(b)+1.5": lambda: bp.square(b) + 1.5,
            "exp(b)": lambda: bp.exp(b)}[den]()


def _jax_den(b, den):
    return {"1.5+b*b": lambda: 1.5 + b * b, "square(b)+1.5": lambda: jnp.square(b) + 1.5,
            "exp(b)": lambda: jnp.exp(b)}[den]()


def _bp_divide(a, b, style, den):
    d = _bp_den(b, den)
    return a / d if style == "op" else bp.divide(a, d)


def _bp_pow_traced(a, b, style):
    base = bp.exp(bp.tanh(a))  # positive, and bounded so that base ** b cannot overflow
    return base ** b if style == "op" else bp.power(base, b)


# -- reductions -----------------------------------------------------------------------------------------------------
def _gen_axis(draw, n, allow_tuple=True, allow_none=True):
    kinds = ["int"] * (n > 0) + ["tuple"] * (n > 0 and allow_tuple) + ["none"] * allow_none
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-n, n - 1))
    axes = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
    return tuple(a - n if draw(st.booleans()) else a for a in axes)


def _reduced(shape, axis, keepdims):
    n = len(shape)
    axes = set(range(n)) if axis is None else {a % n for a in ((axis,) if isinstance(axis, int) else axis)}
    return tuple(1 if i in axes else s for i, s in enumerate(shape) if keepdims or i not in axes)


def _gen_reduce(*styles):
    def gen(draw, shapes):
        i = _pick(draw, shapes)
        s = shapes[i]
        axis = _gen_axis(draw, len(s))
        keepdims = draw(st.booleans())
        return (i,), {"axis": axis, "keepdims": keepdims, "style": _style(draw, *styles)}, \
            _reduced(s, axis, keepdims)
    return gen


def _bp_reduce(name):
    def fn(a, axis, keepdims, style):
        if style == "method":
            return getattr(a, name)(axis=axis, keepdims=keepdims)
        return getattr(bp, name)(a, axis=axis, keepdims=keepdims)
    return fn


def _jax_reduce(name):
    return lambda a, axis, keepdims, style: getattr(jnp, name)(a, axis=axis, keepdims=keepdims)


# -- matmul ---------------------------------------------------------------------------------------------------------
def _matmul_shape(a, b):
    if len(a) == 0 or len(b) == 0:
        return None
    try:
        return np.matmul(np.zeros(a), np.zeros(b)).shape
    except ValueError:
        return None


def _gen_matmul(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    a = tuple(shapes[i])
    n = a[-1]
    mode = draw(st.sampled_from(["reshape", "swap", "direct"]))
    params, j, bshape = {}, None, None
    if mode == "swap" and len(a) >= 2 and _fits(a[:-1] + (a[-2],)):
        # a @ swapaxes(c, -1, -2) with c of a's shape (often a itself): a Gram matrix
        j = _pick(draw, shapes, lambda s: s == a)
        bshape = a[:-2] + (a[-1], a[-2])
    elif mode == "direct":
        j = _pick(draw, shapes, lambda s: _fits(_matmul_shape(a, s)))
        if j is not None:
            bshape = tuple(shapes[j])
    if j is None:
        # a @ reshape(c, (n, k)): any value whose size is a multiple of n gives a compatible right operand
        mode = "reshape"
        j = _pick(draw, shapes, lambda s: _size(s) % n == 0 and _fits(a[:-1] + (_size(s) // n,)))
        if j is None:
            if len(a) < 2 or not _fits(a[:-1] + (a[-2],)):
                return None
            mode, j, bshape = "swap", i, a[:-2] + (a[-1], a[-2])
        else:
            k = _size(shapes[j]) // n
            bshape = (n,) if k == 1 and draw(st.booleans()) else (n, k)
            params["bshape"] = bshape
    params["mode"] = mode
    params["style"] = _style(draw)
    return (i, j), params, _matmul_shape(a, bshape)


def _bp_matmul(a, b, mode, style, bshape=None):
    if mode == "swap":
        b = bp.swapaxes(b, -1, -2)
    elif mode == "reshape":
        b = bp.reshape(b, bshape)
    return a @ b if style == "op" else bp.matmul(a, b)


def _jax_matmul(a, b, mode, style, bshape=None):
    if mode == "swap":
        b = jnp.swapaxes(b, -1, -2)
    elif mode == "reshape":
        b = jnp.reshape(b, bshape)
    return jnp.matmul(a, b)


# -- constants from outside the program (numpy arrays on either side: exercises the r-operators) ---------------------
def _gen_const(draw, shapes):
    i = _pick(draw, shapes)
    s = tuple(shapes[i])
    form = draw(st.sampled_from(["c+a", "a+c", "c-a", "a-c", "c*a", "a*c", "c/(1.5+a*a)", "a/c", "c@a", "a@c"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if "@" in form:
        if len(s) == 0:
            return None
        k = draw(st.integers(1, 3))
        if form == "c@a":
            cshape = (k, s[-2]) if len(s) >= 2 else (k, s[0])
        else:
            cshape = (s[-1], k)
        out = _matmul_shape(cshape, s) if form == "c@a" else _matmul_shape(s, cshape)
        if not _fits(out):
            return None
    else:
        # the value's shape, a suffix of it, or either with some axes of size 1: broadcasts against the value
        cshape = s[draw(st.integers(0, len(s))):]
        cshape = tuple(1 if draw(st.booleans()) else d for d in cshape) if draw(st.booleans()) else cshape
        out = _bcast(s, cshape)
    c = rng.standard_normal(cshape)
    if form == "a/c":
        c = 1.5 + c * c
    return (i,), {"form": form, "c": c}, out


def _const(a, form, c):
    return {"c+a": lambda: c + a, "a+c": lambda: a + c, "c-a": lambda: c - a, "a-c": lambda: a - c,
            "c*a": lambda: c * a, "a*c": lambda: a * c, "c/(1.5+a*a)": lambda: c / (1.5 + a * a),
            "a/c": lambda: a / c, "c@a": lambda: c @ a, "a@c": lambda: a @ c}[form]()


# -- shape ops ------------------------------------------------------------------------------------------------------
def _prime_factors(n):
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _gen_reshape(draw, shapes):
    i = _pick(draw, shapes)
    total = _size(shapes[i])
    k = draw(st.integers(1 if total > 1 else 0, MAX_NDIM))
    shape = [1] * k
    for f in _prime_factors(total):
        shape[draw(st.integers(0, k - 1))] *= f
    out = tuple(shape)
    if k and draw(st.booleans()):
        shape[draw(st.integers(0, k - 1))] = -1
    style = _style(draw, "method", "splat", "fn") if k else _style(draw, "method", "fn")
    return (i,), {"shape": tuple(shape), "style": style}, out


def _bp_reshape(a, shape, style):
    if style == "method":
        return a.reshape(shape)
    if style == "splat":
        return a.reshape(*shape)
    return bp.reshape(a, shape)


def _gen_transpose(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 2)
    if i is None:
        return None
    s = shapes[i]
    n = len(s)
    style = _style(draw, "T", "method", "splat", "fn")
    perms = list(itertools.permutations(range(n)))  # (st.permutations rarely makes 3-cycles)
    perm = perms[-1] if style == "T" else perms[draw(st.integers(0, 2 ** 16)) % len(perms)]
    if style == "fn" and draw(st.booleans()):
        perm = tuple(p - n for p in perm)  # negative axes
    return (i,), {"axes": perm, "style": style}, tuple(s[p] for p in perm)


def _bp_transpose(a, axes, style):
    if style == "T":
        return a.T
    if style == "method":
        return a.transpose(axes)
    if style == "splat":
        return a.transpose(*axes)
    return bp.transpose(a, axes)


def _gen_broadcast_to(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) < MAX_NDIM)
    if i is None:
        return None
    s = shapes[i]
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=min(2, MAX_NDIM - len(s)))))
    out = lead + tuple(draw(st.integers(1, 3)) if d == 1 else d for d in s)
    if not _fits(out):
        return None
    return (i,), {"shape": out}, out


def _gen_index(draw, s):
    """An index expression for shape s: slices, ints, integer arrays (repeats allowed), None, Ellipsis."""
    n = len(s)
    n_idx = draw(st.integers(0 if n == 0 else 1, n))
    ellipsis = n_idx < n and draw(st.booleans())
    axes = range(n - n_idx, n) if ellipsis else range(n_idx)
    arr_shape = draw(st.sampled_from([(1,), (2,), (3,), (4,), (2, 2), (3, 1)]))
    items = []
    for ax in axes:
        d = s[ax]
        kind = ["slice", "int", "array", "full"][draw(_WIDE) % 4]  # (sampled_from would favour slices)
        if kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-d, d)))
            stop = draw(st.one_of(st.none(), st.integers(-d - 1, d + 2)))
            step = draw(st.sampled_from([None, 1, 2, -1, -2]))
            sl = slice(start, stop, step)
            items.append(sl if len(range(d)[sl]) else slice(None))
        elif kind == "int":
            items.append(draw(st.integers(-d, d - 1)))
        elif kind == "array":
            shape = arr_shape if draw(st.booleans()) else arr_shape[-1:]
            vals = draw(st.lists(st.integers(-d, d - 1), min_size=_size(shape), max_size=_size(shape)))
            items.append(np.array(vals, dtype=np.int64).reshape(shape))
        else:
            items.append(slice(None))
    if ellipsis:
        items.insert(0, Ellipsis)
    if draw(st.integers(0, 3)) == 0:
        items.insert(draw(st.integers(0, len(items))), None)
    return tuple(items)


def _gen_getitem(draw, shapes):
    i = _pick(draw, shapes)
    s = tuple(shapes[i])
    idx = _gen_index(draw, s)
    out = np.zeros(s)[idx].shape
    if not _fits(out):
        return None
    if len(idx) == 1 and draw(st.booleans()):
        idx = idx[0]  # a[i] rather than a[(i,)]
    return (i,), {"idx": idx, "style": _style(draw)}, out


def _gen_concatenate(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    s = tuple(shapes[i])
    n = len(s)
    axis = draw(st.integers(0, n - 1))
    ok = [j for j, t in enumerate(shapes) if len(t) == n and all(t[k] == s[k] for k in range(n) if k != axis)]
    others = [ok[draw(st.integers(0, len(ok) - 1))] for _ in range(draw(st.integers(1, 2)))]
    out = s[:axis] + (sum(shapes[j][axis] for j in [i] + others),) + s[axis + 1:]
    if not _fits(out):
        return None
    return (i, *others), {"axis": axis - n if draw(st.booleans()) else axis}, out


def _gen_stack(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) < MAX_NDIM)
    if i is None:
        return None
    s = tuple(shapes[i])
    ok = [j for j, t in enumerate(shapes) if tuple(t) == s]
    others = [ok[draw(st.integers(0, len(ok) - 1))] for _ in range(draw(st.integers(1, 2)))]
    axis = draw(st.integers(-len(s) - 1, len(s)))
    out = list(s)
    out.insert(axis % (len(s) + 1), 1 + len(others))
    if not _fits(tuple(out)):
        return None
    return (i, *others), {"axis": axis}, tuple(out)


# -- composites -----------------------------------------------------------------------------------------------------
def _gen_softmax_like(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    return (i,), {"axis": draw(st.integers(-len(shapes[i]), len(shapes[i]) - 1))}, shapes[i]


def _gen_logsumexp(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    s = shapes[i]
    axis = _gen_axis(draw, len(s))
    if axis == ():
        axis = -1
    keepdims = draw(st.booleans())
    return (i,), {"axis": axis, "keepdims": keepdims}, _reduced(s, axis, keepdims)


def _jax_layer_norm(x, axis):
    mu = jnp.mean(x, axis=axis, keepdims=True)
    d = x - mu
    var = jnp.mean(d * d, axis=axis, keepdims=True)
    return d / jnp.sqrt(var + LN_EPS)


def _gen_spread_reduce(draw, shapes):
    """var / std / prod: an axis set that reduces at least two entries (std's gradient is infinite at zero spread)."""
    i = _pick(draw, shapes, lambda s: _size(s) >= 2)
    if i is None:
        return None
    s = shapes[i]
    axis = _gen_axis(draw, len(s))
    axes = set(range(len(s))) if axis is None else {a % len(s) for a in ((axis,) if isinstance(axis, int) else axis)}
    n = _size([s[a] for a in axes])
    if n < 2:
        axis, n = None, _size(s)
    keepdims = draw(st.booleans())
    return (i,), {"axis": axis, "keepdims": keepdims, "ddof": draw(st.sampled_from([0, 0, 1]))}, \
        _reduced(s, axis, keepdims)


def _ramp(shape):
    """0, 1, 2, ... in `shape`: added before std, whose gradient is infinite where all entries are equal."""
    return np.arange(_size(shape), dtype=np.float64).reshape(shape)


def _gen_cumsum(draw, shapes):
    i = _pick(draw, shapes)
    s = shapes[i]
    axis = None if not s or draw(st.integers(0, 3)) == 0 else draw(st.integers(-len(s), len(s) - 1))
    return (i,), {"axis": axis}, ((_size(s),) if axis is None else tuple(s))


def _gen_param(name, values):
    def gen(draw, shapes):
        i = _pick(draw, shapes)
        return (i,), {name: draw(st.sampled_from(values))}, shapes[i]
    return gen


def _wrapped(name, inner_bp, inner_jax, doc, jax_fn=None, smooth=True):
    bp_fn, jax_fn = getattr(bp, name), jax_fn or getattr(jnp, name)
    return Op(lambda a: bp_fn(inner_bp(a)), lambda a: jax_fn(inner_jax(a)), _gen_unary(), smooth=smooth, doc=doc)


# -- linear algebra beyond matmul, NumPy's shape functions, losses and layers ------------------------------------
_LETTERS = "abcd"


def _gen_einsum1(draw, shapes):
    """One operand: a permutation of some of its axes, the others summed ("abc->ca")."""
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    n = len(shapes[i])
    letters = _LETTERS[:n]
    keep = [c for c in letters if draw(st.booleans())]
    out = "".join(draw(st.permutations(keep))) if keep else ""
    return (i,), {"spec": f"{letters}->{out}"}, tuple(shapes[i][letters.index(c)] for c in out)


def _gen_contract(draw, shapes):
    """a's last axis against the first axis of b (einsum, tensordot(axes=1) or dot): b is a value whose first axis
    fits, or else a fixed matrix."""
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    a = tuple(shapes[i])
    j = _pick(draw, shapes, lambda t: len(t) >= 1 and t[0] == a[-1] and len(a) + len(t) - 2 <= MAX_NDIM)
    form = draw(st.sampled_from(["einsum", "tensordot", "dot"]))
    if j is None or draw(st.booleans()):
        cols = draw(st.integers(1, 3))
        out = a[:-1] + (cols,)
        return ((i,), {"form": form, "cols": cols}, out) if _fits(out) else None
    out = a[:-1] + tuple(shapes[j])[1:]
    return ((i, j), {"form": form, "cols": 0}, out) if _fits(out) or out == () else None


def _contract(lib):
    def f(a, *b, form, cols):
        b = b[0] if b else np.cos(np.arange(a.shape[-1] * cols, dtype=np.float64)).reshape(a.shape[-1], cols)
        n, m = len(a.shape), len(b.shape)
        if form == "einsum":
            la, lb = "abcd"[:n], "wxyz"[:m]
            lb = la[-1] + lb[1:]
            return lib.einsum(f"{la},{lb}->{la[:-1]}{lb[1:]}", a, b)
        if form == "tensordot":
            return lib.tensordot(a, b, axes=1)
        # np.dot contracts a's last axis with b's second-to-last: move b's first axis there
        return lib.dot(a, lib.moveaxis(b, 0, -2)) if m >= 2 else lib.dot(a, b)
    return f


def _gen_outer(draw, shapes):
    i, j = _pick(draw, shapes), _pick(draw, shapes)
    out = (_size(shapes[i]), _size(shapes[j]))
    return ((i, j), {}, out) if _fits(out) else None


def _gen_axis_op(extra=None, min_ndim=1):
    """One operand and one axis (and whatever `extra(draw, shape, axis)` adds: params and the result's shape)."""
    def gen(draw, shapes):
        i = _pick(draw, shapes, lambda s: len(s) >= min_ndim)
        if i is None:
            return None
        s = tuple(shapes[i])
        axis = draw(st.integers(-len(s), len(s) - 1))
        params, out = extra(draw, s, axis % len(s)) if extra else ({}, s)
        return ((i,), {"axis": axis, **params}, out) if out is not None and _fits(out) else None
    return gen


def _pad_extra(draw, s, axis):
    before, after = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    widths = [(0, 0)] * len(s)
    widths[axis] = (before, after)
    return {"widths": tuple(widths), "value": draw(st.sampled_from([0.0, 0.5]))}, \
        s[:axis] + (s[axis] + before + after,) + s[axis + 1:]


def _roll_extra(draw, s, axis):
    return {"shift": draw(st.integers(-3, 3))}, s


def _repeat_extra(draw, s, axis):
    r = draw(st.integers(1, 3))
    return {"repeats": r}, s[:axis] + (s[axis] * r,) + s[axis + 1:]


def _take_extra(draw, s, axis):
    idx = np.array(draw(st.lists(st.integers(0, s[axis] - 1), min_size=1, max_size=4)))
    return {"indices": idx}, s[:axis] + (len(idx),) + s[axis + 1:]


def _split_extra(draw, s, axis):
    divisors = [n for n in (1, 2, 3) if s[axis] % n == 0]
    n = draw(st.sampled_from(divisors))
    k = draw(st.integers(0, n - 1))
    return {"sections": n, "piece": k}, s[:axis] + (s[axis] // n,) + s[axis + 1:]


def _diff_extra(draw, s, axis):
    return ({}, s[:axis] + (s[axis] - 1,) + s[axis + 1:]) if s[axis] >= 2 else ({}, None)


def _gen_tile(draw, shapes):
    i = _pick(draw, shapes)
    s = tuple(shapes[i])
    reps = tuple(draw(st.lists(st.integers(1, 2), min_size=1, max_size=max(len(s), 1))))
    n = max(len(reps), len(s))
    full_s, full_r = (1,) * (n - len(s)) + s, (1,) * (n - len(reps)) + reps
    out = tuple(a * b for a, b in zip(full_s, full_r))
    return ((i,), {"reps": reps}, out) if _fits(out) else None


def _gen_triangle(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 2)
    return None if i is None else ((i,), {"k": draw(st.integers(-1, 1))}, shapes[i])


def _gen_moveaxis(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 2)
    if i is None:
        return None
    s = tuple(shapes[i])
    src, dst = draw(st.integers(0, len(s) - 1)), draw(st.integers(0, len(s) - 1))
    order = [a for a in range(len(s)) if a != src]
    order.insert(dst, src)
    return (i,), {"source": src, "destination": dst}, tuple(s[a] for a in order)


def _gen_same_pair(draw, shapes):
    """Two values of one shape (a value with itself is fine): the losses that compare prediction and target."""
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    j = _pick(draw, shapes, lambda t: tuple(t) == tuple(shapes[i]))
    axis = draw(st.integers(-len(shapes[i]), len(shapes[i]) - 1))
    return (i, j), {"axis": axis}, ()


def _gen_nll(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1 and s[-1] >= 2)
    if i is None:
        return None
    s = tuple(shapes[i])
    labels = np.array(draw(st.lists(st.integers(0, s[-1] - 1), min_size=_size(s[:-1]), max_size=_size(s[:-1]))),
                      np.int64).reshape(s[:-1])
    return (i,), {"labels": labels}, ()


def _gen_batch_norm(draw, shapes):
    """(N, C) or (N, C, H, W) with N·H·W >= 2 per channel; gamma and beta fixed per channel."""
    i = _pick(draw, shapes, lambda s: len(s) in (2, 4) and _size(s) // s[1] >= 2)
    return None if i is None else ((i,), {}, shapes[i])


def _channel_params(c):
    return 1.0 + 0.1 * np.arange(c, dtype=np.float64), 0.05 * np.arange(c, dtype=np.float64)


def _jax_batch_norm(x):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    gamma, beta = _channel_params(x.shape[1])
    mu = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=axes, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * gamma.reshape(shape) + beta.reshape(shape)


def _gen_conv1d(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) == 3 and s[2] >= 2)
    if i is None:
        return None
    n, c, length = shapes[i]
    out_c, k = draw(st.integers(1, 2)), draw(st.integers(1, min(3, length)))
    out = (n, out_c, length - k + 1)
    return ((i,), {"out_c": out_c, "k": k}, out) if _fits(out) else None


def _fixed_kernel(out_c, c, k):
    return np.cos(np.arange(out_c * c * k, dtype=np.float64)).reshape(out_c, c, k)


def _gen_upsample(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) == 4 and 4 * _size(s) <= MAX_SIZE)
    if i is None:
        return None
    n, c, h, w = shapes[i]
    return (i,), {}, (n, c, 2 * h, 2 * w)


def _jax_upsample_nearest(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)


# -- issue 27: NumPy's remaining functions, and np.linalg on well-conditioned matrices -----------------------------
def _den(lib, b):
    return 1.5 + b * b  # a divisor away from 0


def _gen_quantile(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    s = shapes[i]
    axis = draw(st.integers(-len(s), len(s) - 1))
    keepdims = draw(st.booleans())
    return (i,), {"q": draw(st.sampled_from([0.5, 0.25, 0.9])), "axis": axis, "keepdims": keepdims}, \
        _reduced(s, axis, keepdims)


def _gen_atleast(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) <= 3)
    if i is None:
        return None
    s = tuple(shapes[i])
    out = {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}.get(len(s), s)
    return (i,), {}, out


def _gen_atleast_2d(draw, shapes):
    i = _pick(draw, shapes)
    s = tuple(shapes[i])
    return (i,), {}, (1,) * (2 - len(s)) + s if len(s) < 2 else s


def _gen_joined(draw, shapes):
    i = _pick(draw, shapes)
    j = _pick(draw, shapes, lambda s: tuple(s) == tuple(shapes[i]))
    form = draw(st.sampled_from(["hstack", "vstack", "column_stack", "dstack"]))
    out = getattr(np, form)([np.zeros(shapes[i]), np.zeros(shapes[j])]).shape
    return ((i, j), {"form": form}, out) if _fits(out) else None


def _gen_nsplit(draw, shapes):
    form = draw(st.sampled_from(["vsplit", "hsplit", "dsplit"]))
    min_ndim = {"vsplit": 2, "hsplit": 1, "dsplit": 3}[form]

    def splits_in_two(s):
        axis = {"vsplit": 0, "hsplit": 1 if len(s) > 1 else 0, "dsplit": 2}[form]
        return len(s) >= min_ndim and s[axis] % 2 == 0

    i = _pick(draw, shapes, splits_in_two)
    if i is None:
        return None
    piece = draw(st.integers(0, 1))
    return (i,), {"form": form, "piece": piece}, getattr(np, form)(np.zeros(shapes[i]), 2)[piece].shape


def _gen_rollaxis(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 2)
    if i is None:
        return None
    n = len(shapes[i])
    axis, start = draw(st.integers(-n, n - 1)), draw(st.integers(0, n))
    return (i,), {"axis": axis, "start": start}, np.rollaxis(np.zeros(shapes[i]), axis, start).shape


def _array_split_extra(draw, s, axis):
    n = draw(st.integers(1, 3))
    k = draw(st.integers(0, n - 1))
    piece = np.array_split(np.zeros(s), n, axis=axis)[k].shape
    return ({"sections": n, "piece": k}, piece) if 0 not in piece else ({}, None)


def _gen_diag(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) in (1, 2))
    if i is None:
        return None
    s = tuple(shapes[i])
    k = draw(st.integers(-1, 1))
    out = np.diag(np.zeros(s), k).shape
    return ((i,), {"k": k}, out) if _fits(out) and 0 not in out else None


def _gen_rot90(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 2)
    if i is None:
        return None
    s = tuple(shapes[i])
    k = draw(st.integers(-1, 2))
    return (i,), {"k": k}, np.rot90(np.zeros(s), k).shape


def _gen_unstack(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    s = tuple(shapes[i])
    axis = draw(st.integers(-len(s), len(s) - 1))
    piece = draw(st.integers(0, s[axis] - 1))
    return (i,), {"axis": axis, "piece": piece}, s[:axis % len(s)] + s[axis % len(s) + 1:]


def _gen_broadcast_pair(draw, shapes):
    i = _pick(draw, shapes)
    j = _pick(draw, shapes, lambda s: _fits(_bcast(shapes[i], s)))
    return (i, j), {"which": draw(st.integers(0, 1))}, _bcast(shapes[i], shapes[j])


def _gen_meshgrid(draw, shapes):
    i, j = _pick(draw, shapes), _pick(draw, shapes)
    indexing = draw(st.sampled_from(["xy", "ij"]))
    a, b = _size(shapes[i]), _size(shapes[j])
    out = (b, a) if indexing == "xy" else (a, b)
    return ((i, j), {"indexing": indexing, "which": draw(st.integers(0, 1))}, out) if _fits(out) else None


def _gen_append(draw, shapes):
    i, j = _pick(draw, shapes), _pick(draw, shapes)
    out = (_size(shapes[i]) + _size(shapes[j]),)
    return ((i, j), {}, out) if _fits(out) else None


def _gradient_extra(draw, s, axis):
    if s[axis] < 3:
        return {}, None
    return {"spacing": draw(st.sampled_from([1.0, 0.5])), "edge_order": draw(st.integers(1, 2))}, s


def _gen_vecdot(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    j = _pick(draw, shapes, lambda s: len(s) >= 1 and s[-1] == shapes[i][-1] and _fits(_bcast(shapes[i], s)))
    return (i, j), {}, _bcast(shapes[i], shapes[j])[:-1]


def _gen_cross(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1 and s[-1] in (2, 3))
    if i is None:
        return None
    j = _pick(draw, shapes, lambda s: len(s) >= 1 and s[-1] in (2, 3) and _fits(_bcast(shapes[i][:-1], s[:-1])))
    batch = _bcast(shapes[i][:-1], shapes[j][:-1])
    out = batch if shapes[i][-1] == 2 == shapes[j][-1] else batch + (3,)
    return ((i, j), {}, out) if _fits(out) or out == () else None


def _gen_kron(draw, shapes):
    i, j = _pick(draw, shapes), _pick(draw, shapes)
    out = np.kron(np.zeros(shapes[i]), np.zeros(shapes[j])).shape
    return ((i, j), {}, out) if _fits(out) else None


def _gen_matrix_transpose(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 2)
    return None if i is None else ((i,), {}, tuple(shapes[i][:-2]) + (shapes[i][-1], shapes[i][-2]))


def _gen_einsum_sublist(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    n = len(shapes[i])
    keep = [k for k in range(n) if draw(st.booleans())]
    out = draw(st.permutations(keep)) if keep else []
    return (i,), {"spec": "".join(str(k) for k in out)}, tuple(shapes[i][k] for k in out)


def _jax_cross(a, b):
    # jnp.cross needs 3-vectors unless both are 2-vectors: a 2-vector gets a 0 z component, as NumPy's does
    pad = lambda v: jnp.concatenate([v, jnp.zeros(v.shape[:-1] + (1,))], -1) if v.shape[-1] == 2 else v  # noqa: E731
    if a.shape[-1] == 2 == b.shape[-1]:
        return jnp.cross(a, b)
    return jnp.cross(pad(a), pad(b))


def _jax_np_gradient(a, spacing, axis, edge_order):
    # np.gradient is linear in a: NumPy's own, applied to the unit vectors, is its matrix (JAX has no edge_order=2)
    stencil = np.gradient(np.eye(a.shape[axis]), spacing, axis=0, edge_order=edge_order)
    return jnp.moveaxis(jnp.tensordot(stencil, a, axes=([1], [axis])), 0, axis)


def _matrix(lib, a):
    """A symmetric positive-definite matrix (…, n, n) from a value with last axis n: a aᵀ + diag(2, 4, …, 2n), whose
    eigenvalues (and singular values) are at least 2 and, generically, distinct."""
    n = a.shape[-1]
    return a[..., :, None] * a[..., None, :] + np.diag(2.0 * np.arange(1, n + 1))


LINALG_FORMS = {
    "inv": lambda lib, m, a: lib.linalg.inv(m),
    "solve": lambda lib, m, a: lib.linalg.solve(m, a[..., None]),
    "det": lambda lib, m, a: lib.linalg.det(m),
    "logabsdet": lambda lib, m, a: lib.linalg.slogdet(m)[1],
    "cholesky": lambda lib, m, a: lib.linalg.cholesky(m),
    "eigvalsh": lambda lib, m, a: lib.linalg.eigvalsh(m),
    "eigenvectors²": lambda lib, m, a: lib.linalg.eigh(m)[1] ** 2,  # squared: the signs are LAPACK's choice
    "svdvals": lambda lib, m, a: lib.linalg.svd(m, compute_uv=False),
    "U² of svd": lambda lib, m, a: lib.linalg.svd(m, full_matrices=False)[0] ** 2,
    "Q² of qr": lambda lib, m, a: lib.linalg.qr(m)[0] ** 2,
    "R² of qr": lambda lib, m, a: lib.linalg.qr(m)[1] ** 2,
    "pinv": lambda lib, m, a: lib.linalg.pinv(m),
    "matrix_power 3": lambda lib, m, a: lib.linalg.matrix_power(m * 0.3, 3),
    "matrix_power -2": lambda lib, m, a: lib.linalg.matrix_power(m, -2),
}
NORM_ORDS = [None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf]


def _gen_linalg(draw, shapes):
    i = _pick(draw, shapes, lambda s: 1 <= len(s) <= 3 and 2 <= s[-1] <= 4)
    if i is None:
        return None
    s = tuple(shapes[i])
    form = draw(st.sampled_from(sorted(LINALG_FORMS)))
    out = tuple(np.asarray(LINALG_FORMS[form](np, _matrix(np, np.ones(s) + np.arange(s[-1])), np.ones(s))).shape)
    return (i,), {"form": form}, out


def _linalg(lib):
    return lambda a, form: LINALG_FORMS[form](lib, _matrix(lib, a), a)


def _gen_norm(draw, shapes):
    i = _pick(draw, shapes, lambda s: len(s) >= 1)
    if i is None:
        return None
    s = tuple(shapes[i])
    if len(s) >= 2 and draw(st.booleans()):
        ord = draw(st.sampled_from(NORM_ORDS))
        return (i,), {"ord": ord, "axis": (len(s) - 2, len(s) - 1), "matrix": True}, s[:-2]
    ord = draw(st.sampled_from([None, 1, 2, 3, np.inf]))
    axis = draw(st.integers(-len(s), len(s) - 1))
    return (i,), {"ord": ord, "axis": axis, "matrix": False}, s[:axis % len(s)] + s[axis % len(s) + 1:]


def _norm(lib):
    def f(a, ord, axis, matrix):
        if matrix:  # shifted by a matrix with distinct singular values, so that nuc / 2 / -2 are differentiable
            a = a + np.diag(2.0 * np.arange(1, a.shape[-1] + 1))[:a.shape[-2]] if a.shape[-2] <= a.shape[-1] else \
                a + np.diag(2.0 * np.arange(1, a.shape[-2] + 1))[:, :a.shape[-1]]
        else:
            a = a + 0.5 * lib.sign(a)  # away from 0, where |a| has its kink
        return lib.linalg.norm(a, ord, axis)
    return f


# -- the table ------------------------------------------------------------------------------------------------------
OPS = {
    # elementwise unary
    "negative": Op(lambda a, style: -a if style == "op" else bp.negative(a), lambda a, style: -a,
                   _gen_unary("op", "fn")),
    "square": Op(lambda a: bp.square(a), lambda a: jnp.square(a), _gen_unary()),
    "exp": Op(lambda a: bp.exp(bp.tanh(a)), lambda a: jnp.exp(jnp.tanh(a)), _gen_unary(), doc="exp(tanh(a))"),
    "log": Op(lambda a: bp.log(1 + a * a), lambda a: jnp.log(1 + a * a), _gen_unary(), doc="log(1 + a * a)"),
    "tanh": Op(lambda a: bp.tanh(a), lambda a: jnp.tanh(a), _gen_unary()),
    "sigmoid": Op(lambda a: bp.sigmoid(a), lambda a: jax.nn.sigmoid(a), _gen_unary()),
    "sqrt": Op(lambda a: bp.sqrt(1.0 + bp.square(a)), lambda a: jnp.sqrt(1.0 + jnp.square(a)), _gen_unary(),
               doc="sqrt(1.0 + square(a))"),
    "relu": Op(lambda a: bp.relu(a), lambda a: jax.nn.relu(a), _gen_unary(), smooth=False),
    "abs": Op(lambda a, style: abs(a) if style == "op" else bp.abs(a), lambda a, style: jnp.abs(a),
              _gen_unary("op", "fn"), smooth=False),
    "power_const": Op(lambda a, k, style: a ** k if style == "op" else bp.power(a, k),
                      lambda a, k, style: a ** k, _gen_pow_const, doc="a ** k"),
    "rpow": Op(lambda a: 1.5 ** bp.tanh(a), lambda a: 1.5 ** jnp.tanh(a), _gen_unary(), doc="1.5 ** tanh(a)"),
    "scalar": Op(_scalar, _scalar, _gen_scalar, doc="form, with the Python float c"),
    # elementary functions and activations, kept inside their domains (and from overflow) by an inner function
    "sin": Op(bp.sin, jnp.sin, _gen_unary()),
    "cos": Op(bp.cos, jnp.cos, _gen_unary()),
    "tan": _wrapped("tan", bp.tanh, jnp.tanh, "tan(tanh(a))"),
    "arcsin": _wrapped("arcsin", lambda a: 0.9 * bp.tanh(a), lambda a: 0.9 * jnp.tanh(a), "arcsin(0.9 * tanh(a))"),
    "arccos": _wrapped("arccos", lambda a: 0.9 * bp.tanh(a), lambda a: 0.9 * jnp.tanh(a), "arccos(0.9 * tanh(a))"),
    "arctan": Op(bp.arctan, jnp.arctan, _gen_unary()),
    "sinh": _wrapped("sinh", bp.tanh, jnp.tanh, "sinh(tanh(a))"),
    "cosh": _wrapped("cosh", bp.tanh, jnp.tanh, "cosh(tanh(a))"),
    "arcsinh": Op(bp.arcsinh, jnp.arcsinh, _gen_unary()),
    "arctanh": _wrapped("arctanh", lambda a: 0.9 * bp.tanh(a), lambda a: 0.9 * jnp.tanh(a),
                        "arctanh(0.9 * tanh(a))"),
    "log1p": _wrapped("log1p", lambda a: a * a, lambda a: a * a, "log1p(a * a)"),
    "expm1": _wrapped("expm1", bp.tanh, jnp.tanh, "expm1(tanh(a))"),
    "log2": _wrapped("log2", lambda a: 1 + a * a, lambda a: 1 + a * a, "log2(1 + a * a)"),
    "log10": _wrapped("log10", lambda a: 1 + a * a, lambda a: 1 + a * a, "log10(1 + a * a)"),
    "exp2": _wrapped("exp2", bp.tanh, jnp.tanh, "exp2(tanh(a))"),
    "reciprocal": _wrapped("reciprocal", lambda a: 1.5 + a * a, lambda a: 1.5 + a * a, "reciprocal(1.5 + a * a)"),
    "erf": Op(bp.erf, jax.scipy.special.erf, _gen_unary()),
    "sign": Op(bp.sign, jnp.sign, _gen_unary(), smooth=False),
    "floor": Op(bp.floor, jnp.floor, _gen_unary(), smooth=False),
    "ceil": Op(bp.ceil, jnp.ceil, _gen_unary(), smooth=False),
    "round": Op(lambda a, decimals: bp.round(a, decimals), lambda a, decimals: jnp.round(a, decimals),
                _gen_param("decimals", [0, 1]), smooth=False),
    "clip": Op(lambda a: bp.clip(a, -0.5, 0.7), lambda a: jnp.clip(a, -0.5, 0.7), _gen_unary(), smooth=False,
               doc="clip(a, -0.5, 0.7)"),
    "softplus": Op(bp.softplus, jax.nn.softplus, _gen_unary()),
    "gelu": Op(lambda a, approximate: bp.gelu(a, approximate=approximate),
               lambda a, approximate: jax.nn.gelu(a, approximate=approximate == "tanh"),
               _gen_param("approximate", ["none", "tanh"])),
    "silu": Op(bp.silu, jax.nn.silu, _gen_unary()),
    "leaky_relu": Op(lambda a, negative_slope: bp.leaky_relu(a, negative_slope),
                     lambda a, negative_slope: jax.nn.leaky_relu(a, negative_slope),
                     _gen_param("negative_slope", [0.01, 0.2]), smooth=False),
    "elu": Op(lambda a, alpha: bp.elu(a, alpha), lambda a, alpha: jax.nn.elu(a, alpha),
              _gen_param("alpha", [1.0, 0.5]), smooth=False),
    "selu": Op(bp.selu, jax.nn.selu, _gen_unary(), smooth=False),
    "hard_tanh": Op(bp.hard_tanh, lambda a: jnp.clip(a, -1.0, 1.0), _gen_unary(), smooth=False),
    "const": Op(_const, _const, _gen_const, doc="form, with the NumPy array c"),
    # elementwise binary (broadcasting)
    "add": Op(lambda a, b, style: a + b if style == "op" else bp.add(a, b), lambda a, b, style: a + b,
              _gen_binary("op", "fn")),
    "subtract": Op(lambda a, b, style: a - b if style == "op" else bp.subtract(a, b), lambda a, b, style: a - b,
                   _gen_binary("op", "fn")),
    "multiply": Op(lambda a, b, style: a * b if style == "op" else bp.multiply(a, b), lambda a, b, style: a * b,
                   _gen_binary("op", "fn")),
    "divide": Op(_bp_divide, lambda a, b, style, den: a / _jax_den(b, den),
                 _gen_binary("op", "fn", extra=lambda draw: {
                     "den": draw(st.sampled_from(["1.5+b*b", "square(b)+1.5", "exp(b)"]))}), doc="a / den"),
    "power_traced": Op(_bp_pow_traced, lambda a, b, style: jnp.exp(jnp.tanh(a)) ** b, _gen_binary("op", "fn"),
                       doc="exp(tanh(a)) ** b"),
    "maximum": Op(lambda a, b: bp.maximum(a, b), lambda a, b: jnp.maximum(a, b), _gen_binary(), smooth=False),
    "minimum": Op(lambda a, b: bp.minimum(a, b), lambda a, b: jnp.minimum(a, b), _gen_binary(), smooth=False),
    "logaddexp": Op(bp.logaddexp, jnp.logaddexp, _gen_binary()),
    "where": Op(lambda a, b, style: bp.where(a > b, a, b) if style == "op" else bp.where(bp.greater(a, b), a, b),
                lambda a, b, style: jnp.where(a > b, a, b), _gen_binary("op", "fn"), smooth=False,
                doc="where(a > b, a, b)"),
    # reductions
    "sum": Op(_bp_reduce("sum"), _jax_reduce("sum"), _gen_reduce("fn", "method")),
    "mean": Op(_bp_reduce("mean"), _jax_reduce("mean"), _gen_reduce("fn", "method")),
    "max": Op(_bp_reduce("max"), _jax_reduce("max"), _gen_reduce("fn", "method"), smooth=False),
    "min": Op(_bp_reduce("min"), _jax_reduce("min"), _gen_reduce("fn"), smooth=False),
    "var": Op(lambda a, axis, keepdims, ddof: bp.var(a, axis=axis, keepdims=keepdims, ddof=ddof),
              lambda a, axis, keepdims, ddof: jnp.var(a, axis=axis, keepdims=keepdims, ddof=ddof),
              _gen_spread_reduce),
    "std": Op(lambda a, axis, keepdims, ddof: bp.std(a + _ramp(a.shape), axis=axis, keepdims=keepdims, ddof=ddof),
              lambda a, axis, keepdims, ddof: jnp.std(a + _ramp(a.shape), axis=axis, keepdims=keepdims, ddof=ddof),
              _gen_spread_reduce, doc="std(a + ramp): the ramp keeps equal entries (a value joined to itself) apart"),
    "prod": Op(lambda a, axis, keepdims, ddof: bp.prod(a, axis=axis, keepdims=keepdims),
               lambda a, axis, keepdims, ddof: jnp.prod(a, axis=axis, keepdims=keepdims), _gen_spread_reduce),
    "cumsum": Op(lambda a, axis: bp.cumsum(a, axis=axis), lambda a, axis: jnp.cumsum(a, axis=axis), _gen_cumsum),
    # linear algebra
    "matmul": Op(_bp_matmul, _jax_matmul, _gen_matmul,
                 doc="a @ b (mode=swap: a @ swapaxes(b, -1, -2); mode=reshape: a @ reshape(b, bshape))"),
    # shape
    "reshape": Op(_bp_reshape, lambda a, shape, style: jnp.reshape(a, shape), _gen_reshape),
    "transpose": Op(_bp_transpose, lambda a, axes, style: jnp.transpose(a, axes), _gen_transpose),
    "broadcast_to": Op(lambda a, shape: bp.broadcast_to(a, shape), lambda a, shape: jnp.broadcast_to(a, shape),
                       _gen_broadcast_to),
    "getitem": Op(lambda a, idx, style: a[idx] if style == "op" else bp.getitem(a, idx),
                  lambda a, idx, style: a[idx], _gen_getitem),
    "concatenate": Op(lambda *xs, axis: bp.concatenate(list(xs), axis=axis),
                      lambda *xs, axis: jnp.concatenate(xs, axis=axis), _gen_concatenate),
    "stack": Op(lambda *xs, axis: bp.stack(list(xs), axis=axis), lambda *xs, axis: jnp.stack(xs, axis=axis),
                _gen_stack),
    # composites
    "softmax": Op(lambda a, axis: bp.softmax(a, axis=axis), lambda a, axis: jax.nn.softmax(a, axis=axis),
                  _gen_softmax_like),
    "log_softmax": Op(lambda a, axis: bp.log_softmax(a, axis=axis),
                      lambda a, axis: jax.nn.log_softmax(a, axis=axis), _gen_softmax_like),
    "logsumexp": Op(lambda a, axis, keepdims: bp.logsumexp(a, axis=axis, keepdims=keepdims),
                    lambda a, axis, keepdims: jsp.logsumexp(a, axis=axis, keepdims=keepdims), _gen_logsumexp),
    "layer_norm": Op(lambda a, axis: bp.layer_norm(a, axis=axis), _jax_layer_norm, _gen_softmax_like,
                     doc=f"(a - mean) / sqrt(var + {LN_EPS})"),
    # linear algebra beyond matmul
    "einsum1": Op(lambda a, spec: bp.einsum(spec, a), lambda a, spec: jnp.einsum(spec, a), _gen_einsum1,
                  doc="einsum(spec, a)"),
    "contract": Op(_contract(bp), _contract(jnp), _gen_contract,
                   doc="a's last axis against b's first (b: a fixed matrix of `cols` columns when cols > 0), by "
                       "einsum, tensordot(axes=1) or dot"),
    "outer": Op(bp.outer, jnp.outer, _gen_outer),
    # NumPy's shape functions
    "pad": Op(lambda a, axis, widths, value: bp.pad(a, widths, constant_values=value),
              lambda a, axis, widths, value: jnp.pad(a, widths, constant_values=value), _gen_axis_op(_pad_extra)),
    "flip": Op(lambda a, axis: bp.flip(a, axis), lambda a, axis: jnp.flip(a, axis), _gen_axis_op()),
    "roll": Op(lambda a, axis, shift: bp.roll(a, shift, axis), lambda a, axis, shift: jnp.roll(a, shift, axis),
               _gen_axis_op(_roll_extra)),
    "repeat": Op(lambda a, axis, repeats: bp.repeat(a, repeats, axis),
                 lambda a, axis, repeats: jnp.repeat(a, repeats, axis), _gen_axis_op(_repeat_extra)),
    "take": Op(lambda a, axis, indices: bp.take(a, indices, axis=axis),
               lambda a, axis, indices: jnp.take(a, indices, axis=axis), _gen_axis_op(_take_extra)),
    "split": Op(lambda a, axis, sections, piece: bp.split(a, sections, axis)[piece],
                lambda a, axis, sections, piece: jnp.split(a, sections, axis)[piece], _gen_axis_op(_split_extra),
                doc="split(a, sections, axis)[piece]"),
    "diff": Op(lambda a, axis: bp.diff(a, axis=axis), lambda a, axis: jnp.diff(a, axis=axis),
               _gen_axis_op(_diff_extra)),
    "sort": Op(lambda a, axis: bp.sort(a, axis), lambda a, axis: jnp.sort(a, axis), _gen_axis_op(), smooth=False),
    "argmin_take": Op(lambda a, axis: bp.take_along_axis(a, bp.expand_dims(bp.argmin(a, axis), axis), axis),
                      lambda a, axis: jnp.take_along_axis(a, jnp.expand_dims(jnp.argmin(a, axis), axis), axis),
                      _gen_axis_op(lambda draw, s, axis: ({}, s[:axis] + (1,) + s[axis + 1:])), smooth=False,
                      doc="take_along_axis(a, argmin(a, axis) as a size-1 axis, axis)"),
    "tile": Op(lambda a, reps: bp.tile(a, reps), lambda a, reps: jnp.tile(a, reps), _gen_tile),
    "tril": Op(lambda a, k: bp.tril(a, k), lambda a, k: jnp.tril(a, k), _gen_triangle),
    "triu": Op(lambda a, k: bp.triu(a, k), lambda a, k: jnp.triu(a, k), _gen_triangle),
    "moveaxis": Op(lambda a, source, destination: bp.moveaxis(a, source, destination),
                   lambda a, source, destination: jnp.moveaxis(a, source, destination), _gen_moveaxis),
    # losses (scalars) and layers
    "huber": Op(lambda a, b, axis: bp.huber(a, b), lambda a, b, axis: jnp.mean(
        jnp.where(jnp.abs(a - b) <= 1.0, 0.5 * (a - b) ** 2, jnp.abs(a - b) - 0.5)), _gen_same_pair, smooth=False),
    "l1": Op(lambda a, b, axis: bp.l1(a, b), lambda a, b, axis: jnp.mean(jnp.abs(a - b)), _gen_same_pair,
             smooth=False),
    "cosine_similarity": Op(lambda a, b, axis: bp.mean(bp.cosine_similarity(a + 1.5, b - 1.5, axis=axis)),
                            lambda a, b, axis: jnp.mean(jnp.sum((a + 1.5) * (b - 1.5), axis) / jnp.maximum(
                                jnp.linalg.norm(a + 1.5, axis=axis) * jnp.linalg.norm(b - 1.5, axis=axis), 1e-8)),
                            _gen_same_pair, doc="mean(cosine_similarity(a + 1.5, b - 1.5, axis))"),
    "kl_div": Op(lambda a, b, axis: bp.kl_div(bp.log_softmax(a, axis=-1), bp.softmax(b, axis=-1)),
                 lambda a, b, axis: jnp.sum(jax.nn.softmax(b, -1) * (jax.nn.log_softmax(b, -1)
                                                                   - jax.nn.log_softmax(a, -1))) / (a.shape[0] if a.ndim > 1 else 1),
                 _gen_same_pair, doc="kl_div(log_softmax(a), softmax(b))"),
    "nll": Op(lambda a, labels: bp.nll(bp.log_softmax(a, axis=-1), labels),
              lambda a, labels: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(a, -1), labels[..., None], -1)),
              _gen_nll, doc="nll(log_softmax(a), labels)"),
    "batch_norm": Op(lambda a: bp.batch_norm(a, *_channel_params(a.shape[1])), _jax_batch_norm, _gen_batch_norm,
                     doc="batch_norm(a, gamma, beta) with batch statistics"),
    "conv1d": Op(lambda a, out_c, k: bp.conv1d(a, _fixed_kernel(out_c, a.shape[1], k)),
                 lambda a, out_c, k: jax.lax.conv_general_dilated(a, _fixed_kernel(out_c, a.shape[1], k), (1,),
                                                                  "VALID"), _gen_conv1d,
                 doc="conv1d(a, a fixed kernel)"),
    "upsample_nearest": Op(lambda a: bp.upsample_nearest(a), _jax_upsample_nearest, _gen_upsample),
    # issue 27: remainders and friends (binary, broadcasting)
    "remainder": Op(lambda a, b, style: {"op": lambda: a % _den(bp, b), "fn": lambda: np.remainder(a, _den(bp, b)),
                                         "divmod": lambda: divmod(a, _den(bp, b))[1]}[style](),
                    lambda a, b, style: jnp.remainder(a, _den(jnp, b)), _gen_binary("op", "fn", "divmod"),
                    smooth=False, doc="a % (1.5 + b * b)"),
    "fmod": Op(lambda a, b: np.fmod(a, _den(bp, b)), lambda a, b: jnp.fmod(a, _den(jnp, b)), _gen_binary(),
               smooth=False, doc="fmod(a, 1.5 + b * b)"),
    "floor_divide": Op(lambda a, b, style: a // _den(bp, b) if style == "op" else np.floor_divide(a, _den(bp, b)),
                       lambda a, b, style: jnp.floor_divide(a, _den(jnp, b)), _gen_binary("op", "fn"),
                       smooth=False, doc="a // (1.5 + b * b)"),
    "arctan2": Op(lambda a, b: np.arctan2(a, b), jnp.arctan2, _gen_binary()),
    # JAX's own hypot splits the gradient at |a| = |b| (hypot(a, a)): the reference is the formula
    "hypot": Op(lambda a, b: np.hypot(a, b), lambda a, b: jnp.sqrt(a * a + b * b), _gen_binary()),
    "logaddexp2": Op(lambda a, b: np.logaddexp2(a, b), jnp.logaddexp2, _gen_binary()),
    "fmax": Op(lambda a, b: np.fmax(a, b), jnp.fmax, _gen_binary(), smooth=False),
    "fmin": Op(lambda a, b: np.fmin(a, b), jnp.fmin, _gen_binary(), smooth=False),
    "copysign": Op(lambda a, b: np.copysign(a, b), jnp.copysign, _gen_binary(), smooth=False),
    # unary
    "trunc": Op(np.trunc, jnp.trunc, _gen_unary(), smooth=False),
    "sinc": Op(np.sinc, jnp.sinc, _gen_unary()),
    "deg2rad": Op(lambda a: np.deg2rad(a) + np.rad2deg(a), lambda a: jnp.deg2rad(a) + jnp.rad2deg(a), _gen_unary(),
                  doc="deg2rad(a) + rad2deg(a)"),
    "nan_to_num": Op(np.nan_to_num, jnp.nan_to_num, _gen_unary()),
    # reductions and scans
    "quantile": Op(lambda a, q, axis, keepdims: np.quantile(a, q, axis=axis, keepdims=keepdims),
                   lambda a, q, axis, keepdims: jnp.quantile(a, q, axis=axis, keepdims=keepdims), _gen_quantile,
                   smooth=False),
    "median": Op(lambda a, q, axis, keepdims: np.median(a, axis=axis, keepdims=keepdims),
                 lambda a, q, axis, keepdims: jnp.median(a, axis=axis, keepdims=keepdims), _gen_quantile,
                 smooth=False),
    "cumprod": Op(lambda a, axis: np.cumprod(a, axis=axis), lambda a, axis: jnp.cumprod(a, axis=axis), _gen_cumsum),
    # shape functions
    "atleast_3d": Op(np.atleast_3d, jnp.atleast_3d, _gen_atleast),
    "atleast_2d": Op(lambda a: np.atleast_1d(np.atleast_2d(a)), jnp.atleast_2d, _gen_atleast_2d),
    "joined": Op(lambda a, b, form: getattr(np, form)([a, b]), lambda a, b, form: getattr(jnp, form)([a, b]),
                 _gen_joined, doc="form([a, b]): hstack, vstack, column_stack or dstack"),
    "nsplit": Op(lambda a, form, piece: getattr(np, form)(a, 2)[piece],
                 lambda a, form, piece: getattr(jnp, form)(a, 2)[piece], _gen_nsplit,
                 doc="form(a, 2)[piece]: vsplit, hsplit or dsplit in two"),
    "rollaxis": Op(lambda a, axis, start: np.rollaxis(a, axis, start),
                   lambda a, axis, start: jnp.rollaxis(a, axis, start), _gen_rollaxis),
    "select": Op(lambda a, b: np.select([a > b, a < -0.5], [a, b * b], default=0.25),
                 lambda a, b: jnp.select([a > b, a < -0.5], [a, b * b], default=0.25), _gen_binary(), smooth=False,
                 doc="select([a > b, a < -0.5], [a, b * b], default=0.25)"),
    "percentile": Op(lambda a, q, axis, keepdims: np.percentile(a, 100 * q, axis=axis, keepdims=keepdims),
                     lambda a, q, axis, keepdims: jnp.percentile(a, 100 * q, axis=axis, keepdims=keepdims),
                     _gen_quantile, smooth=False),
    "aliases": Op(lambda a: np.positive(a) + np.real(a) + np.conj(a) + np.imag(a) + np.degrees(a) + np.radians(a)
                  + np.angle(a + 5.0),
                  lambda a: jnp.positive(a) + jnp.real(a) + jnp.conj(a) + jnp.imag(a) + jnp.degrees(a) + jnp.radians(a)
                  + jnp.angle(a + 5.0), _gen_unary(),
                  doc="positive + real + conj + imag + degrees + radians + angle(a + 5) (real arrays)"),
    "array_split": Op(lambda a, axis, sections, piece: np.array_split(a, sections, axis)[piece],
                      lambda a, axis, sections, piece: jnp.array_split(a, sections, axis)[piece],
                      _gen_axis_op(_array_split_extra), doc="array_split(a, sections, axis)[piece]"),
    "diag": Op(lambda a, k: np.diag(a, k), lambda a, k: jnp.diag(a, k), _gen_diag),
    "rot90": Op(lambda a, k: np.rot90(a, k), lambda a, k: jnp.rot90(a, k), _gen_rot90),
    "unstack": Op(lambda a, axis, piece: np.unstack(a, axis=axis)[piece],
                  lambda a, axis, piece: jnp.unstack(a, axis=axis)[piece], _gen_unstack,
                  doc="unstack(a, axis)[piece]"),
    "broadcast_arrays": Op(lambda a, b, which: np.broadcast_arrays(a, b)[which],
                           lambda a, b, which: jnp.broadcast_arrays(a, b)[which], _gen_broadcast_pair,
                           doc="broadcast_arrays(a, b)[which]"),
    "meshgrid": Op(lambda a, b, indexing, which: np.meshgrid(a, b, indexing=indexing)[which],
                   lambda a, b, indexing, which: jnp.meshgrid(jnp.ravel(a), jnp.ravel(b), indexing=indexing)[which],
                   _gen_meshgrid, doc="meshgrid(a, b, indexing)[which] (of the flattened values)"),
    "append": Op(lambda a, b: np.append(a, b), jnp.append, _gen_append),
    "gradient": Op(lambda a, axis, spacing, edge_order: np.gradient(a, spacing, axis=axis, edge_order=edge_order),
                   lambda a, axis, spacing, edge_order: _jax_np_gradient(a, spacing, axis, edge_order),
                   _gen_axis_op(_gradient_extra), doc="np.gradient (finite differences) along axis"),
    "matrix_transpose": Op(lambda a: np.matrix_transpose(a), jnp.matrix_transpose,
                           _gen_matrix_transpose),
    # products
    "vecdot": Op(lambda a, b: np.vecdot(a, b), jnp.vecdot, _gen_vecdot),
    "cross": Op(lambda a, b: np.cross(a, b), _jax_cross, _gen_cross),
    "kron": Op(lambda a, b: np.kron(a, b), jnp.kron, _gen_kron),
    "einsum_sublist": Op(lambda a, spec: np.einsum(a, list(range(a.ndim)), [int(c) for c in spec]),
                         lambda a, spec: jnp.einsum(a, list(range(a.ndim)), [int(c) for c in spec]),
                         _gen_einsum_sublist, doc="einsum(a, [0, 1, ...], spec): sums and permutes axes"),
    # np.linalg, on a well-conditioned symmetric matrix made from a
    "linalg": Op(_linalg(np), _linalg(jnp), _gen_linalg,
                 doc="form of M = a aᵀ + diag(2, 4, …) (a's last axis n: M is n × n, its eigenvalues distinct)"),
    "norm": Op(_norm(np), _norm(jnp), _gen_norm,
               doc="np.linalg.norm(a + a shift, ord, axis): vector or matrix norms away from their kinks"),
}
# how often each op is drawn (relative): ops with more ways to go wrong (indexing, shapes, matmul) come up more
WEIGHTS = {"add": 2, "multiply": 2, "maximum": 2, "where": 2, "const": 2, "sum": 2, "mean": 2, "max": 2, "matmul": 4,
           "linalg": 4, "norm": 2,
           "reshape": 2, "transpose": 3, "broadcast_to": 2, "getitem": 4, "concatenate": 2, "stack": 2}
ALL_OPS = tuple(name for name in OPS for _ in range(WEIGHTS.get(name, 1)))
SMOOTH_OPS = tuple(name for name in ALL_OPS if OPS[name].smooth)


# ================================================================================================================
# the strategy
# ================================================================================================================
def _shape(draw):
    ndim = draw(st.sampled_from([1, 2, 3, 2, 0]))  # 0-d values are rarer: fewer ops apply to them
    return tuple(draw(st.integers(1, 4)) for _ in range(ndim))


@st.composite
def programs(draw, ops=ALL_OPS, max_steps=MAX_STEPS):
    base = _shape(draw)
    shapes = [base]
    for _ in range(draw(st.integers(0, 2))):
        # broadcasting is the common case: a suffix of the first shape, some of its axes set to 1, or a new shape
        kind = draw(st.sampled_from(["suffix", "ones", "same", "other"]))
        if kind == "other":
            s = _shape(draw)
        else:
            s = base[draw(st.integers(0, len(base))):] if kind != "same" else base
            if kind == "ones":
                s = tuple(1 if draw(st.booleans()) else d for d in s)
        shapes.append(tuple(s))
    input_shapes = list(shapes)
    steps = []
    # Hypothesis favours small and repeated choices: st.sampled_from(ops) would cover ops unevenly, and
    # st.integers(1, max_steps) would make a third of all programs one step long. The low bits of wide integers,
    # shifted by offsets from a drawn seed, are close to uniform and still shrink (towards 1 step, any op).
    offsets = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))).integers(len(ops), size=max_steps)
    for k in range(1 + draw(_WIDE) % max_steps):
        name = ops[(draw(_WIDE) + int(offsets[k])) % len(ops)]
        made = OPS[name].gen(draw, shapes)
        if made is None:  # does not apply to any value here: fall back to tanh of one
            name, made = "tanh", _gen_unary()(draw, shapes)
        args, params, out = made
        steps.append(Step(name, tuple(args), params, tuple(out)))
        shapes.append(tuple(out))
    used = {a for s in steps for a in s.args}
    sinks = [(i, draw(st.sampled_from(["sum", "mean"])), _style(draw, "fn", "method"))
             for i in range(len(input_shapes), len(shapes)) if i not in used]
    return Program(input_shapes, steps, sinks, draw(st.integers(0, 2 ** 32 - 1)))
