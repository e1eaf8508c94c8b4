"""Errors a user can cause. Each message names the user's line and the shapes involved, and says what to do.

Internal bugs are assertions, never these classes.
"""


class BackpropError(Exception):
    """A mistake in user code or data, reported at the user's line."""


class ShapeError(BackpropError):
    """Operands whose shapes or dtypes do not fit the operation."""


class TracingError(BackpropError):
    """Python asked a traced value for something only a concrete value has (e.g. `if x > 0:`)."""


class NonFiniteError(BackpropError):
    """A NaN or Inf appeared during a training step; the step was not applied."""


class BackendError(BackpropError):
    """The requested array backend cannot be used here."""


def did_you_mean(word: str, candidates, prefix: str = "") -> str:
    """" Did you mean tanh?" for the candidates closest to a misspelt `word` (difflib), or "" when none is close."""
    import difflib

    names = {c for c in candidates if isinstance(c, str) and c != word and (word.startswith("_") or
                                                                           not c.startswith("_"))}
    close = difflib.get_close_matches(word, sorted(names), n=3, cutoff=0.75)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"{prefix}{c}" for c in close) + "?"
