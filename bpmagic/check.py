"""Checks of a learner's work: gradients against an independent implementation, and the checks of graded cells.

`gradcheck(fn, *args)` (bp.gradcheck) compares bpmagic's gradient of one function with central differences in
float64, every entry of a small argument and random directions, up to second order; the report names the worst.

`check_gradients(fn, *args, against="jax")` traces `fn` once, in float64, and compares bpmagic's gradient of every
float argument (every Param of a cell) with
  - "jax": the traced forward graph lowered to JAX (each primitive's `jax` facet, or its implementation run with
    jax.numpy) and differentiated by JAX — an autodiff that shares none of bpmagic's VJP rules;
  - "fd": central differences of the forward pass in random directions, which needs nothing installed. The
    arguments are first nudged by a random 1e-3 of their scale: a value sitting exactly on a kink (relu of an
    all-zero patch plus a zero bias) has no derivative that differences could find.
A difference above the tolerance names the parameter and, comparing each equation's VJP the same way, the first
equation whose VJP disagrees (a custom @bp.primitive with a wrong rule, say) with the user's line.

For a teacher's graded cells (nbgrader's autograded tests, or any notebook): `bp.check.gradient(f, *args)`,
`bp.check.close(value, expected)` and `bp.check.trained(run, loss_below=...)` print one "✓" line when the work is
right and otherwise raise CheckFailed, an AssertionError (so a grader counts the cell as failed) whose message says
in the student's terms what is wrong and what to try, shown without a traceback through bpmagic.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .api import grad, trace
from .backends import is_array
from .ops.evaluate import evaluate
from .errors import BackpropError
from .ir import Literal, Var
from .pytree import arg_names, flatten, unflatten

AGAINST = ("jax", "fd")
TOLERANCE = {"jax": 1e-7, "fd": 1e-5}
HEAD = {"jax": "gradients against JAX's autodiff of the same forward pass: largest relative difference per parameter",
        "fd": "gradients against central differences (float64): largest relative difference per parameter"}


class GradcheckResult:
    """The outcome of a gradient check: truthy when every comparison passed; prints as its report (`head`, then
    `lines`). worst: bp.gradcheck's, per kind ("entry", "direction"), (error / tolerance, where, analytic, numeric)
    of the worst comparison of that kind; check_gradients', the largest relative difference of any parameter's
    gradient. check_gradients also gives rows, (name, layer, relative difference) per parameter, its tolerance, and
    culprit: the first equation whose VJP disagrees, when one does."""

    def __init__(self, passed, head, lines, worst, tolerance=None, rows=(), culprit=None):
        self.passed, self.head, self.lines, self.worst = passed, head, list(lines), worst
        self.tolerance, self.rows, self.culprit = tolerance, list(rows), culprit

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return "\n".join([self.head] + self.lines)

    _repr_pretty_ = lambda self, p, cycle: p.text(repr(self))


def _is_float(x):
    return (is_array(x) or isinstance(x, float)) and np.dtype(getattr(x, "dtype", float)).kind == "f"


def _central_difference(f, x, v, eps):
    """The slope of scalar `f` at `x` along `v`, from one step `eps` each way (its error shrinks as eps²)."""
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


def gradcheck(fn, *args, eps=1e-6, atol=1e-5, rtol=1e-3, directions=3, order=1, seed=0, argnums=None):
    """Compare bpmagic's gradient of `fn` with central finite differences, in float64.

    Checks `directions` random directions per argument, and every single entry of small arguments, then reports
    the worst mismatch by name and index. `fn` may return an array: it is reduced with a fixed random weighting.
    order=2 checks the gradient of the gradient the same way. Returns a GradcheckResult (truthy if passed).
    """
    rng = np.random.default_rng(seed)
    args64 = [_to_float64(a) for a in args]
    nums = tuple(range(len(args))) if argnums is None else (argnums,) if isinstance(argnums, int) else tuple(argnums)
    nums = tuple(i for i in nums if _is_float_tree(args64[i]))
    weights = {}

    def scalar_fn(*a):
        out = fn(*a)
        if tuple(getattr(out, "shape", ())) == ():
            return out
        w = weights.setdefault(tuple(out.shape), rng.standard_normal(out.shape))
        return ops.sum(out * w)

    target = scalar_fn
    if order == 2:
        inner = grad(scalar_fn, argnums=nums)
        probes = [_tree_like(args64[i], rng) for i in nums]

        def target(*a):
            gs = inner(*a)
            total = 0.0
            for g, p in zip(gs, probes):
                for gl, pl in zip(flatten(g)[0], flatten(p)[0]):
                    total = total + ops.sum(gl * pl)
            return total

    analytic = grad(target, argnums=nums)(*args64)
    names = arg_names(fn, len(args))
    # kind -> (error / tolerance, where, analytic, numeric): the worst single entry and the worst random direction
    worst = {"entry": (0.0, "", 0.0, 0.0), "direction": (0.0, "", 0.0, 0.0)}
    failures = total = 0
    for i, g in zip(nums, analytic):
        leaves, treedef, leaf_names = flatten(args64[i], names[i])
        for k, (x, gx, lname) in enumerate(zip(leaves, flatten(g)[0], leaf_names)):
            gx = np.asarray(gx)

            def f_at(xk):
                new_leaves = list(leaves)
                new_leaves[k] = xk
                new_args = list(args64)
                new_args[i] = unflatten(treedef, new_leaves)
                return float(np.asarray(target(*new_args)))

            checks = [("direction", rng.standard_normal(x.shape), f"{lname} along a random direction")
                      for _ in range(directions)]
            if x.size <= 64:  # small enough to check every entry, so the report can name one
                for idx in np.ndindex(*x.shape):
                    e = np.zeros(x.shape)
                    e[idx] = 1.0
                    checks.append(("entry", e, f"{lname}[{', '.join(map(str, idx))}]" if idx else lname))
            for kind, v, label in checks:
                numeric = _central_difference(f_at, x, v, eps)
                exact = float(np.sum(gx * v))
                err = abs(numeric - exact)
                ratio = err / (atol + rtol * abs(numeric))
                failures += ratio > 1
                total += 1
                if ratio >= worst[kind][0]:
                    worst[kind] = (ratio, label, exact, numeric)
    lines = [f"worst {kind}: {label}: analytic {exact:.6g}, numeric {numeric:.6g}, "
             f"|diff| {abs(numeric - exact):.3g} ({ratio:.2f} of the tolerance)"
             for kind, (ratio, label, exact, numeric) in sorted(worst.items(), reverse=True) if label]
    if not lines:
        lines.append("nothing to check: no float arguments")
    verdict = f"all {total} checks passed" if failures == 0 else f"{failures} of {total} checks failed"
    lines.append(f"{verdict}; tolerance: atol={atol} + rtol={rtol} * |numeric|, eps={eps}")
    if order == 2:
        lines.append("(order 2: the gradient of <grad f, random probe>)")
    head = "gradcheck passed" if failures == 0 else "gradcheck FAILED"
    return GradcheckResult(failures == 0, head, lines, worst)


def _to_float64(a):
    leaves, treedef, _ = flatten(a)
    return unflatten(treedef, [np.asarray(x, np.float64) if _is_float(x) else x for x in leaves])


def _is_float_tree(a):
    leaves = flatten(a)[0]
    return bool(leaves) and all(_is_float(x) for x in leaves)


def _tree_like(a, rng):
    leaves, treedef, _ = flatten(a)
    return unflatten(treedef, [rng.standard_normal(np.shape(x)) for x in leaves])


def check_gradients(fn, *args, against="jax", argnums=None, layers=None, seed=0, tolerance=None) -> GradcheckResult:
    """Compare bpmagic's gradients of scalar `fn(*args)` with respect to its float arguments (arrays or dicts of
    arrays, such as a model's params; `argnums` picks some) against `against` ("jax" or "fd"), in float64.
    `layers`: name -> layer, for the report. Returns a GradcheckResult (truthy when every gradient agrees; it
    prints as a table)."""
    if against not in AGAINST:
        raise BackpropError(f"against={against!r}: choose 'jax' (JAX installed) or 'fd' (central differences, "
                            "needs nothing); comparing with PyTorch is not available yet")
    if against == "jax":
        jax = _jax()
    tolerance = TOLERANCE[against] if tolerance is None else tolerance
    structure = [flatten(a, name if not isinstance(a, (dict, list, tuple)) else "")
                 for a, name in zip(args, arg_names(fn, len(args)))]
    leaves = [np.asarray(x, np.float64) if _is_float(x) else x for lv, _, _ in structure for x in lv]
    names = [n for _, _, ns in structure for n in ns]
    chosen = range(len(args)) if argnums is None else (argnums,) if isinstance(argnums, int) else argnums
    arg_of = [i for i, (lv, _, _) in enumerate(structure) for _ in lv]
    wrt = [k for k, x in enumerate(leaves) if _is_float(x) and arg_of[k] in chosen]

    def flat_fn(*xs):
        it, rebuilt = iter(xs), []
        for lv, treedef, _ in structure:
            rebuilt.append(unflatten(treedef, [next(it) for _ in lv]))
        return fn(*rebuilt)

    graph = trace(flat_fn, *leaves)
    ours = grad(flat_fn, argnums=tuple(wrt))(*leaves)
    if against == "jax":
        lowered = _lowered(graph, jax)
        theirs = jax.grad(lowered, argnums=tuple(wrt))(*leaves)
        diffs = [_relative(np.asarray(t), np.asarray(o)) for t, o in zip(theirs, ours)]
    else:
        rng = np.random.default_rng(seed)
        for k in wrt:  # off the kinks (see the module's docstring), then the gradient there
            scale = max(float(np.abs(leaves[k]).max(initial=0.0)), 1.0)
            leaves[k] = leaves[k] + 1e-3 * scale * rng.standard_normal(np.shape(leaves[k]))
        ours = grad(flat_fn, argnums=tuple(wrt))(*leaves)
        diffs = [_fd_difference(graph, leaves, k, np.asarray(o), rng) for k, o in zip(wrt, ours)]
    layers = layers or {}
    rows = [(names[k], str(layers.get(names[k], "-")), d) for k, d in zip(wrt, diffs)]
    worst = max((diff for _, _, diff in rows), default=0.0)
    culprit = None if worst <= tolerance else _first_disagreeing_vjp(graph, leaves, against, tolerance, seed)
    return GradcheckResult(worst <= tolerance, HEAD[against], _table(rows, tolerance, culprit), worst, tolerance,
                           rows, culprit)


def _table(rows, tolerance, culprit):
    """check_gradients' report: a row per parameter, then the verdict."""
    width = max((len(name) for name, _, _ in rows), default=4)
    lines = [f"  {name:<{width}}  layer {layer:<6} {diff:9.2e}  {'ok' if diff <= tolerance else 'DIFFERS'}"
             for name, layer, diff in rows]
    bad = ", ".join(name for name, _, diff in rows if diff > tolerance)
    if not bad:
        return lines + [f"all within {tolerance:g}"]
    lines.append(f"WARNING: the gradient of {bad} differs from the reference by more than {tolerance:g}.")
    if culprit:
        lines.append(f"The first equation whose VJP disagrees: {culprit}")
    return lines


def _jax():
    try:
        import jax
    except ImportError:
        raise BackpropError("checking against JAX needs JAX: pip install 'jax[cpu]' (or check against central "
                            "differences, against='fd' / --check fd, which needs nothing)") from None
    jax.config.update("jax_enable_x64", True)
    return jax


def _relative(theirs, ours):
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-30)
    return float(np.abs(theirs - ours).max(initial=0.0)) / scale


def jax_apply(jax, eqn, args):
    """One equation computed with JAX: the primitive's own JAX rule, or its implementation over jax.numpy."""
    from .usercode import at_source

    prim = eqn.primitive
    try:
        if prim.jax is not None:
            return prim.jax(jax, *args, **eqn.params)
        return prim.impl(jax.numpy, *args, **eqn.params)
    except Exception as e:  # a plugin's impl written with in-place writes or out=, say
        raise at_source(eqn.source, BackpropError(
            f"{prim.name} could not be computed with JAX ({type(e).__name__}: {e}). Give the primitive a JAX rule, "
            f"@bp.primitive(jax=lambda jax, *arrays, **params: ...), or check against central differences "
            "(--check fd / against='fd').")) from None


def _operands(eqn, env):
    return [env[v] if isinstance(v, Var) else np.asarray(v.value, Literal.dtype_in(v, eqn)) for v in eqn.inputs]


def _lowered(graph, jax):
    """The graph as a function of its inputs, computed with JAX."""
    def run(*inputs):
        return evaluate(graph, inputs, jax.numpy, apply=lambda e, args: jax_apply(jax, e, args))[0]

    return run


def _evaluate(graph, inputs):
    with np.errstate(all="ignore"):
        return float(np.asarray(evaluate(graph, inputs, np)[0]))


def _fd_difference(graph, leaves, k, ours, rng, eps=1e-6, directions=3):
    """Largest relative difference between <ours, v> and the central difference of the graph along v."""
    def f(xk):
        return _evaluate(graph, leaves[:k] + [xk] + leaves[k + 1:])

    worst = 0.0
    for _ in range(directions):
        v = rng.standard_normal(np.shape(leaves[k]))
        v /= max(np.linalg.norm(v), 1e-30)
        numeric = _central_difference(f, leaves[k], v, eps)
        exact = float(np.sum(ours * v))
        scale = max(abs(numeric), abs(exact), float(np.abs(ours).max(initial=0.0)), 1e-12)
        worst = max(worst, abs(numeric - exact) / scale)
    return worst


def _first_disagreeing_vjp(graph, leaves, against, tolerance, seed):
    """The first equation (in program order) whose VJP, at the values it saw, differs from the reference."""
    from . import autodiff
    from .tracing import new_trace

    env = dict(zip(graph.inputs, leaves))
    env.update(graph.consts)
    with np.errstate(all="ignore"):
        evaluate(graph, leaves, np, on_value=lambda e, value: env.__setitem__(e.outputs[0], value))
    rng = np.random.default_rng(seed)
    jax = _jax() if against == "jax" else None
    for e in graph.eqns:
        prim = e.primitive
        values = _operands(e, env)
        diff = [i for i, v in enumerate(e.inputs) if isinstance(v, Var) and i not in prim.nondiff_inputs
                and np.dtype(v.dtype).kind == "f"]
        if prim.vjp is None or not diff or e.phase != "forward":
            continue
        g = rng.standard_normal(np.shape(env[e.outputs[0]]))
        with new_trace("numpy") as tr:
            ins = [tr.new_input(x) if i in diff else x for i, x in enumerate(values)]
            out = prim.bind(*ins, **e.params)
            cts = autodiff.pullback(prim, tr.new_input(g), out, ins, e.params)
            ours = {i: (np.zeros(np.shape(values[i])) if cts[i] is None else np.asarray(getattr(cts[i], "value",
                                                                                              cts[i])))
                    for i in diff}
        if jax is not None:
            def f(*xs):
                full = list(values)
                for i, x in zip(diff, xs):
                    full[i] = x
                return jax_apply(jax, e, full)

            _, pullback = jax.vjp(f, *(values[i] for i in diff))
            theirs = dict(zip(diff, (np.asarray(t) for t in pullback(g))))
            bad = any(_relative(theirs[i], ours[i]) > tolerance for i in diff)
        else:
            bad = False
            for i in diff:
                v = rng.standard_normal(np.shape(values[i]))

                def weighted(xi):  # <g, the equation's result>, whose slope along v is <its VJP of g, v>
                    return float(np.sum(g * np.asarray(prim.impl(np, *values[:i], xi, *values[i + 1:], **e.params))))

                with np.errstate(all="ignore"):
                    numeric = _central_difference(weighted, values[i], v, 1e-6)
                exact = float(np.sum(ours[i] * v))
                scale = max(abs(numeric), abs(exact), 1e-12)
                bad = bad or abs(numeric - exact) / scale > max(tolerance, 1e-4)
        if bad:
            where = f"line {e.source.lineno}: {e.source.line}" if e.source and e.source.lineno else "(no line)"
            return f"{prim.name} at {where}"
    return None


def check_model(loss_fn, params, batch, buffers=None, against="jax", layers=None) -> GradcheckResult:
    """The gradients of a training loss `loss_fn(params, *batch)` (with buffers, `loss_fn(params, buffers, *batch)`
    returning (loss, new_buffers), as bp.fit takes it) on one batch, in float64: what %%backprop --check runs."""
    def to64(a):
        a = np.asarray(a)
        return a.astype(np.float64) if a.dtype.kind == "f" else a

    buffers64 = {k: to64(v) for k, v in (buffers or {}).items()}

    def loss(params, *batch):
        return loss_fn(params, buffers64, *batch)[0] if buffers64 else loss_fn(params, *batch)

    return check_gradients(loss, {k: to64(v) for k, v in params.items()}, *(to64(b) for b in batch),
                           against=against, argnums=0, layers=layers)


# -- checks for graded cells ---------------------------------------------------------------------------------------
class CheckFailed(AssertionError):
    """A graded check that did not pass. IPython shows its message alone: the traceback would be bpmagic's."""

    def _render_traceback_(self):
        return [f"✗ {self}"]


class Passed:
    """A graded check that passed: truthy, and already said so (its ✓ line is printed when it passes), so a cell
    that ends with a check shows that line alone, not `Out: True` under it."""

    def __init__(self, message):
        self.message = message

    def __bool__(self):
        return True

    def __repr__(self):
        return f"✓ {self.message}"

    def _ipython_display_(self):
        pass  # the line is printed already


def _passed(message):
    print(f"✓ {message}")
    return Passed(message)


def gradient(fn, *args, order=1, name=None):
    """Pass when bpmagic's gradient of `fn(*args)` (for a primitive the student wrote: its VJP rule) agrees with
    central differences in float64, up to `order` (1 or 2: the gradient of the gradient too); see bp.gradcheck."""
    name = name or getattr(fn, "__name__", "f")
    name = "f" if name == "<lambda>" else name
    for k in range(1, order + 1):
        result = gradcheck(fn, *args, order=k)
        if result:
            continue
        entry, direction = result.worst["entry"], result.worst["direction"]
        _, where, analytic, numeric = entry if entry[0] > 1 else direction  # an entry is easier to check by hand
        if k == 1:
            raise CheckFailed(
                f"The gradient of {name} is wrong: for {where} the backward pass gives {analytic:.6g}, but nudging the "
                f"input a little each way and watching the output (central differences, float64) gives "
                f"{numeric:.6g}. Check the VJP's formula: a missing factor, a wrong sign, or forgetting to multiply "
                f"by the incoming gradient g.")
        raise CheckFailed(
            f"The gradient of {name} is right, but its own gradient (second order) is not: for {where} it is "
            f"{analytic:.6g} where central differences give {numeric:.6g}. Write the VJP with bpmagic's ops on its "
            f"arguments (bp.exp, bp.sigmoid, *, +), not on raw arrays, so that the rule can itself be differentiated.")
    agree = "its first and second order agree" if order == 2 else "it agrees"
    return _passed(f"the gradient of {name}: {agree} with central differences")


def close(value, expected, name="the value", rtol=1e-6, atol=1e-12, hint=""):
    """Pass when `value` (a number or an array) equals `expected` within rtol (relative) + atol (absolute)."""
    hint = f" {hint}" if hint else ""
    try:
        if value is None or isinstance(value, (str, bytes)):
            raise TypeError
        got = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{name} should be a number, but it is {value!r} ({type(value).__name__}).{hint}") from None
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"{name} has shape {got.shape}, but it should have shape {want.shape}.{hint}")
    wrong = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if wrong.any():
        at = np.unravel_index(np.argmax(np.abs(got - want) * wrong), got.shape) if got.shape else ()
        where = f"{name}[{', '.join(map(str, at))}]" if at else name
        raise CheckFailed(f"{where} is {got[at]:.8g}, but it should be {want[at]:.8g} (to within {rtol:g} of "
                          f"it).{hint}")
    return _passed(f"{name} is right")


def trained(run, loss_below, last=10):
    """Pass when `run` (a %%backprop --name or bp.fit Run) ended without failing and its loss, averaged over its
    `last` steps, is below `loss_below`."""
    if not getattr(run, "ended", True):
        run.wait()
    name = getattr(run, "name", "the run")
    if run.status not in ("finished", "stopped"):
        outcome = run.outcome.split(": ", 1)[0]  # the error's own details are under its cell already
        raise CheckFailed(f"{name} did not train to the end: it {outcome}. Fix that first, then run its cell again.")
    losses = [x for x in run.history.get("loss", ()) if x is not None][-last:]
    if not losses:
        raise CheckFailed(f"{name} has no loss recorded: it trained no step. Give it --epochs or --steps.")
    loss = float(np.mean(losses))
    if not loss < loss_below:
        raise CheckFailed(f"{name} ended with a loss of {loss:.4g} (the mean of its last {len(losses)} steps), "
                          f"but it needs a loss below {loss_below:g}. Train longer (--epochs), change the learning "
                          f"rate (--lr), or start from other random weights (--reset --seed N), then check again.")
    # the mean, and said so: the dashboard shows the last step's loss, which is another number
    return _passed(f"{name} trained: mean loss of its last {len(losses)} steps {loss:.4g} < {loss_below:g}")
