"""The public functions: trace, grad, value_and_grad and primitive (gradcheck is in check.py, with the other checks).

Everything the notebook front ends do goes through these, so it can be done from a plain script too.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

from . import autodiff
from .backends import array_module, is_array
from .errors import BackpropError, ShapeError, call_user, described
from .ops.core import Primitive
from .pytree import arg_names, flatten, unflatten
from .tracing import Tracer, current_trace, new_trace

__all__ = ["trace", "grad", "value_and_grad", "primitive"]


def _backend_of(leaves):
    xp = array_module(*leaves)
    return "numpy" if xp is np else "cupy"


def _trace_inputs(tr, fn, args, argnums=None):
    """Replace array leaves of the chosen args by input Tracers (named after the function's parameters)."""
    new_args, inputs = list(args), []
    for i, (arg, argname) in enumerate(zip(args, arg_names(fn, len(args)))):
        if argnums is not None and i not in argnums:
            continue
        leaves, treedef, names = flatten(arg, argname if not isinstance(arg, (dict, list, tuple)) else "")
        traced = []
        for leaf, name in zip(leaves, names):
            if isinstance(leaf, Tracer) and leaf._bp_trace is tr:
                traced.append(leaf)
            else:
                if isinstance(leaf, Tracer):
                    leaf = leaf.value
                if not is_array(leaf) and not isinstance(leaf, numbers.Number):
                    raise BackpropError(f"argument {argname!r} holds a {type(leaf).__name__}; "
                                        "expected arrays (or dicts / lists / tuples of arrays)")
                traced.append(tr.new_input(leaf, name=name))
        inputs.append((i, treedef, traced))
        new_args[i] = unflatten(treedef, traced)
    return new_args, inputs


def trace(fn, *args, backend="numpy", name=None):
    """Run `fn(*args)` on traced values and return its Graph (prints as readable Python).

    Array leaves of `args` (which may be dicts / lists / tuples of arrays) become the graph's inputs.
    """
    from .compile.passes import dead_code_elimination

    with new_trace(backend) as tr:
        new_args, inputs = _trace_inputs(tr, fn, args)
        out = call_user(fn, *new_args)
        out_leaves, _, _ = flatten(out)
        graph = tr.graph([t for _, _, ts in inputs for t in ts], out_leaves,
                         name=name or getattr(fn, "__name__", "f").replace("<lambda>", "f"))
    return dead_code_elimination(graph)


def _as_tuple(argnums):
    if isinstance(argnums, numbers.Integral) and not isinstance(argnums, bool):
        return (argnums,)
    nums = tuple(argnums) if not isinstance(argnums, (str, bytes)) and hasattr(argnums, "__iter__") else None
    if nums is None or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in nums):
        raise BackpropError(f"argnums must be an argument's position (an int) or a tuple of them, got {argnums!r}")
    return nums


def value_and_grad(fn, argnums=0, has_aux=False):
    """A function returning (fn(*args), gradient of fn with respect to the args at `argnums`).

    fn must return a scalar (or, with has_aux, a pair (scalar, aux)). Arguments may be arrays or dicts / lists /
    tuples of arrays; each gradient has the structure of its argument. Works inside traced code too, so
    grad(grad(f)) and grads inside compiled steps are recorded as ordinary graphs.
    """
    nums = _as_tuple(argnums)

    def value_and_grad_fn(*args):
        for n in nums:
            if not -len(args) <= n < len(args):
                raise BackpropError(f"argnums={argnums} but the function got only {len(args)} argument(s)")
        positions = tuple(n % len(args) for n in nums)  # -1: the last, as in JAX
        tr = current_trace() or _trace_of(args)
        if tr is not None:
            return _value_and_grad_in(tr, fn, args, positions, argnums, has_aux)
        leaves = [leaf for a in args for leaf in flatten(a)[0]]
        with new_trace(_backend_of(leaves)) as tr:
            value, grads = _value_and_grad_in(tr, fn, args, positions, argnums, has_aux)
            return _concrete(value), _concrete(grads)

    _wrap(value_and_grad_fn, fn, "value_and_grad")
    return value_and_grad_fn


def grad(fn, argnums=0, has_aux=False):
    """A function returning the gradient of scalar-valued `fn` with respect to the args at `argnums` (JAX-like)."""
    vg = value_and_grad(fn, argnums, has_aux)

    def grad_fn(*args):
        value, g = vg(*args)
        return (g, value[1]) if has_aux else g

    _wrap(grad_fn, fn, "grad")
    return grad_fn


def _wrap(wrapper, fn, prefix):
    """Give `wrapper` fn's signature (so traced graphs name their inputs after fn's parameters)."""
    try:
        wrapper.__signature__ = inspect.signature(fn)
    except (TypeError, ValueError):
        pass
    wrapper.__name__ = f"{prefix}_{getattr(fn, '__name__', 'f')}".replace("<lambda>", "f")


def _trace_of(args):
    for a in args:
        for leaf in flatten(a)[0]:
            if isinstance(leaf, Tracer):
                return leaf._bp_trace
    return None


def _concrete(tree):
    def value(x):
        return x.value if isinstance(x, Tracer) else x

    leaves, treedef, _ = flatten(tree)
    return unflatten(treedef, [value(x) for x in leaves])


def _value_and_grad_in(tr, fn, args, nums, argnums, has_aux):
    start = len(tr.eqns)
    new_args, inputs = _trace_inputs(tr, fn, args, nums)
    for i, _, traced in inputs:
        for t in traced:
            if np.dtype(t.dtype).kind not in "fc":
                raise BackpropError(
                    f"grad with respect to argument {i} ({t._bp_var.name}: {t._bp_var.type_str}) is undefined: it holds "
                    "integers. Differentiate with respect to float arrays (e.g. x.astype(np.float32)), and pass "
                    "integer data (labels, indices) as an argument not listed in argnums.")
    result = call_user(fn, *new_args)
    if has_aux and not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise BackpropError(f"has_aux=True needs a function that returns a pair (loss, aux), but it returned "
                            f"{described(result)}")
    value, aux = result if has_aux else (result, None)
    if not isinstance(value, Tracer) and not is_array(value) and not isinstance(value, (int, float, np.number)):
        raise BackpropError(f"grad needs a function that returns a scalar, but it returned {described(value)}"
                            + ("; if it returns (loss, something else), pass has_aux=True"
                               if isinstance(value, (tuple, list)) and len(value) == 2 else ""))
    if tuple(getattr(value, "shape", ())) != ():
        raise ShapeError(f"grad needs a function that returns a scalar, but it returned shape "
                         f"{tuple(value.shape)}; reduce it first (e.g. .sum() or .mean())")
    all_wrt = [t for _, _, ts in inputs for t in ts]
    if isinstance(value, Tracer) and value._bp_trace is tr:
        seed = tr.const(np.ones((), value.dtype))
        grads = autodiff.backward(tr, start, value, seed, all_wrt).grads
    else:
        grads = [None] * len(all_wrt)
    grads = [g if g is not None else tr.const(np.zeros(t.shape, t.dtype)) for g, t in zip(grads, all_wrt)]
    it = iter(grads)
    per_arg = [unflatten(treedef, [next(it) for _ in ts]) for _, treedef, ts in inputs]
    g = per_arg[0] if isinstance(argnums, numbers.Integral) else tuple(per_arg)
    return (value, aux) if has_aux else value, g


def primitive(fn=None, *, name=None, shape_rule=None, **facets):
    """Decorator: make `fn(xp, *arrays, **params)` a primitive; give it a VJP with `@<name>.defvjp`.

        @bp.primitive
        def softplus(xp, x):
            return xp.logaddexp(0, x)

        @softplus.defvjp
        def _(g, out, x):               # g: adjoint of the output; out: the output; x: the input
            return g * bp.sigmoid(x)    # written with bpmagic ops, so grad-of-grad works too

    The shape rule defaults to running `fn` on zero arrays of the input shapes. `facets` are Primitive's other
    keywords (fused=, effects=, lowering=, symbol=, samples=, reference=, ...), so a plugin's op is fused,
    marked effectful and checked exactly like a built-in one.
    """
    def make(f):
        return Primitive(name or f.__name__, f, shape_rule, **facets)

    return make(fn) if fn is not None else make
