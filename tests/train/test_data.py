"""bpmagic.data: the labs' data sets. digits() is scikit-learn's load_digits() to the bit, without importing
scikit-learn (and SciPy), which would cost every student's kernel on a hub some 75 MB (bench/classroom.py)."""
import subprocess
import sys

import numpy as np
import pytest

from bpmagic.data import digits, text


def test_digits_are_scikit_learns():
    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    ours, theirs = digits(), load_digits()
    for field in ("data", "images", "target"):
        a, b = getattr(ours, field), getattr(theirs, field)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), field
    assert np.shares_memory(ours.data, ours.images)  # one copy of the pixels, two shapes


def test_digits_do_not_import_scikit_learn():
    pytest.importorskip("sklearn")
    code = ("import sys; from bpmagic.data import digits; d = digits(); "
            "print(d.data.shape, sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(1797, 64) []"


def test_text():
    assert text("carroll").startswith("Alice was beginning") and "JABBERWOCKY" in text()
