"""Errors a user can cause. Each message names the user's line and the shapes involved, and says what to do.

Internal bugs are assertions, never these classes.
"""


class BackpropError(Exception):
    """A mistake in user code or data, reported at the user's line."""

    def _render_traceback_(self):
        """What IPython shows instead of a traceback: the line of the user's cell that led here, then the message.
        bpmagic's own frames would tell the user nothing; the message says what to do."""
        from .trace import calling_line

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
