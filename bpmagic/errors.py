"""Errors a user can cause. Each message names the user's line and the shapes involved, and says what to do.

Internal bugs are assertions, never these classes. An exception raised by the user's own code while bpmagic runs it
(a misspelt name, a bad keyword) becomes one of them too, at their line (`call_user`).
"""
import inspect
import re

from .usercode import at_source, calling_line, innermost_frame, is_users, source_of, user_frames, where


class BackpropError(Exception):
    """A mistake in user code or data, reported at the user's line."""

    def _render_traceback_(self):
        """What IPython shows instead of a traceback: the line of the user's cell that led here, then the message.
        bpmagic's own frames would tell the user nothing; the message says what to do."""
        source = calling_line(self)
        shown = source is not None and source.line and source.line not in str(self)
        return ([f"line {source.lineno}: {source.line}"] if shown else []) + [f"{type(self).__name__}: {self}"]


class ShapeError(BackpropError):
    """Operands whose shapes or dtypes do not fit the operation."""


class TracingError(BackpropError):
    """Python asked a traced value for something only a concrete value has (e.g. `if x > 0:`)."""


class NonFiniteError(BackpropError):
    """A NaN or Inf appeared during a training step; the step was not applied."""


class BackendError(BackpropError):
    """The requested array backend cannot be used here."""


def did_you_mean(word: str, *candidate_groups, prefix: str = "") -> str:
    """" Did you mean tanh?" for the name closest to a misspelt `word` (difflib), or "" when none is close.
    Groups are tried in order (the user's own names before builtins), so `hh` suggests the cell's `h`, not `hash`."""
    import difflib

    for group in candidate_groups:
        names = sorted({c for c in group if isinstance(c, str) and c != word
                        and (word.startswith("_") or not c.startswith("_"))})
        # a wrong case (w1 for W1) or two letters swapped (tahn for tanh) before what difflib finds closest
        close = ([c for c in names if c.lower() == word.lower()]
                 or [c for c in names if len(c) == len(word) and sorted(c) == sorted(word)]
                 or difflib.get_close_matches(word, names, n=1))
        if close:
            return f" Did you mean {prefix}{close[0]}?"
    return ""


def described(value) -> str:
    """A value a user's function returned, in a few words: "a tuple of 2 (a scalar, an array (2,))"."""
    def one(v):
        shape = tuple(getattr(v, "shape", ()))
        return f"an array {shape}" if shape else "a scalar" if hasattr(v, "shape") or isinstance(v, (int, float)) \
            else f"a {type(v).__name__}"

    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(one(v) for v in value[:3])}" \
               + (", ...)" if len(value) > 3 else ")")
    return f"a dict with keys {', '.join(map(repr, list(value)[:4]))}" if isinstance(value, dict) else one(value)


# -- mistakes in the user's traced code ------------------------------------------------------------------------
def call_user(fn, *args, **kwargs):
    """fn(*args, **kwargs) for user code run on traced values. Any exception it raises becomes one BackpropError
    naming the user's line and its code, with "did you mean ...?" for a misspelt name. bpmagic's own errors pass
    through (they name the line already), and so do assertions failing inside bpmagic: those are bugs of ours."""
    try:
        return fn(*args, **kwargs)
    except BackpropError as e:
        frames = user_frames(e)  # an op's own check (an argument, an axis) fails before it records anything
        source = getattr(e, "source", None)
        if source is None and frames:
            source = source_of(*frames[-1])
        elif source is None or not hasattr(e, "said"):
            raise
        if len(frames) > 1 and (frames[-1][0].f_code.co_filename, frames[-1][1]) == (source.filename, source.lineno):
            e = type(e)(f"{called_from(frames)}: {getattr(e, 'said', e)}")  # inside a helper the user wrote
        raise at_source(source, e) from None
    except Exception as e:
        if isinstance(e, AssertionError) and not is_users(innermost_frame(e).f_code.co_filename):
            raise
        raise user_error(e) from None


def raise_as_users(e):
    """Re-raise `e`, raised by the user's own code (a @bp.primitive's implementation, say) as one BackpropError
    naming their line; any other exception is left to propagate as it is."""
    if not isinstance(e, BackpropError) and is_users(innermost_frame(e).f_code.co_filename):
        raise user_error(e) from None


def called_from(frames) -> str:
    """"in block(), called from line 8" for an error in a helper the user wrote (frames: the user's, outermost
    first), the calling line named as where() names any ("cell In[2], line 3" when not the cell being run)."""
    return f"in {frames[-1][0].f_code.co_name}(), called from {where(source_of(*frames[0]))}"


def user_error(e: Exception) -> BackpropError:
    """The BackpropError that tells the user about exception `e`, raised by their code while it was traced."""
    frames = user_frames(e)
    text = str(e) if not isinstance(e, KeyError) else repr(e.args[0]) if e.args else ""
    detail = f"{type(e).__name__}: {text}" if text else type(e).__name__
    hint = _suggestion(e, frames[-1][0] if frames else innermost_frame(e))
    if hint:
        detail += ("" if detail.endswith((".", "?", "!")) else ".") + hint
    if not frames:
        return BackpropError(detail)
    frame, lineno = frames[-1]
    source = source_of(frame, lineno)
    if len(frames) > 1:  # inside a helper function the user wrote: say where it was called from
        detail = f"{called_from(frames)}: {detail}"
    err = at_source(source, BackpropError(detail))
    err.original = e
    return err


def _suggestion(e, frame) -> str:
    if isinstance(e, NameError) and getattr(e, "name", None):
        import builtins

        return did_you_mean(e.name, frame.f_code.co_varnames, frame.f_globals, dir(builtins))
    if isinstance(e, AttributeError) and getattr(e, "name", None) and getattr(e, "obj", None) is not None:
        module = getattr(e.obj, "__name__", None) if inspect.ismodule(e.obj) else None
        prefix = "" if module is None else "np." if module == "numpy" else f"{module}."
        return did_you_mean(e.name, dir(e.obj), prefix=prefix)
    if isinstance(e, TypeError):
        # "softmax() got an unexpected keyword argument 'axiss'": suggest among the function's parameters
        found = re.search(r"(\w+)\(\) got an unexpected keyword argument '(\w+)'", str(e))
        for fn in _functions_named(found[1], frame) if found else ():
            try:
                hint = did_you_mean(found[2], inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                continue
            if hint:
                return hint
    return ""


def _functions_named(name, frame):
    """The functions the user's line may have called as `name`: one of their own names, or that name in a module
    they called it through (np.sum, bp.softmax). Python's builtins are not among them (sum() takes no axis)."""
    yield from (f for f in (frame.f_locals.get(name), frame.f_globals.get(name)) if callable(f))
    for value in (*frame.f_locals.values(), *frame.f_globals.values()):
        if inspect.ismodule(value) and value.__name__ != "builtins" and callable(f := getattr(value, name, None)):
            yield f
