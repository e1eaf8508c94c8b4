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
