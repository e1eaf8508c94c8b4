"""What data no run can train on, found before the first step: no rows, values that are not finite, class numbers
beyond cross_entropy's classes (tracing sees one batch's; a later batch's would be scored as no class, silently)."""
from __future__ import annotations

import numpy as np

from ..backends import array_module
from ..errors import BackpropError


def _more(rows: int) -> str:
    """" (and 2 more rows)" after the first of `rows` rows found."""
    return f" (and {rows - 1} more row{'s' if rows > 2 else ''})" if rows > 1 else ""


def data_problem(array, use="train") -> str | None:
    """What makes a data set's array one that no run can train on, said to follow its name: no rows, or values that
    are not finite (a step on a batch holding one gives a nan loss whatever the model, and the guard would blame the
    first operation it meets); None when it is fine. One sum when it is (~10 ms for MNIST's 47M floats)."""
    if int(array.shape[0]) == 0:
        return f"has no rows (shape {tuple(array.shape)}): there is nothing to {use} on"
    if array.dtype.kind not in "fc":
        return None
    xp = array_module(array)
    with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows is looked at below, not warned of
        total = array.sum()
    if bool(xp.isfinite(total)):  # a nan or inf anywhere makes the sum one; a finite sum: all are finite
        return None
    bad = ~xp.isfinite(array.reshape(array.shape[0], -1))
    rows = xp.nonzero(bad.any(axis=1))[0]
    if rows.size == 0:  # finite values whose sum overflowed
        return None
    first = int(rows[0])
    value = array.reshape(array.shape[0], -1)[first][bad[first]][0]
    return (f"holds {value} in row {first}{_more(rows.size)}"
            + ": a step on a batch with it gives a nan loss whatever the model. Drop those rows first "
            "(keep = np.isfinite(X).reshape(len(X), -1).all(axis=1); X, Y = X[keep], Y[keep]) or fill them")


def check_classes(step, data, validation):
    """cross_entropy's classes, read from the data set: tracing checked one batch's; a class number out of range
    in a later batch would be scored as no class at all (its row's mask all zero), silently."""
    if step.classes_of is None:
        return
    k, n_classes = step.classes_of
    for what, arrays in (("data", data), ("validation", validation)):
        if arrays is None or k >= len(arrays):
            continue
        xp = array_module(arrays[k])
        labels = arrays[k].reshape(-1) if arrays[k].ndim == 1 else None
        if labels is None or not labels.size:
            continue
        wrong = xp.nonzero((labels < 0) | (labels >= n_classes))[0]
        if wrong.size:
            row = int(wrong[0])
            name = step.batch_names[k] if what == "data" else f"the validation set's {step.batch_names[k]}"
            raise BackpropError(
                f"{name} holds class {int(labels[row])} in row {row}"
                + _more(wrong.size)
                + f", but cross_entropy's logits have {n_classes} classes: class numbers must be 0 to {n_classes - 1}. "
                + (f"Give the model {int(labels.max()) + 1} outputs, or number" if int(labels.max()) >= n_classes
                   else "Number") + " the classes from 0 (classes, ids = np.unique(y, return_inverse=True))")
