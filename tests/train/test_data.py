"""bpmagic.data: the labs' data sets, shipped in the package. digits() is scikit-learn's load_digits() to the bit,
read from bpmagic's own copy: no scikit-learn (and SciPy), which would cost every student's kernel on a hub some
75 MB (bench/classroom.py) and a JupyterLite site 26 MB."""
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


def test_digits_need_no_scikit_learn():
    # a Python where scikit-learn and SciPy cannot be imported (None in sys.modules: the import fails)
    code = ("import sys; sys.modules.update(sklearn=None, scipy=None); import numpy as np\n"
            "from bpmagic.data import digits; d = digits()\n"
            "print(d.data.shape, d.data.min(), d.data.max(), np.bincount(d.target).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # UCI's class counts of the optdigits test set
    assert out.strip() == "(1797, 64) 0.0 16.0 [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]"


def test_text():
    assert text("carroll").startswith("Alice was beginning") and "JABBERWOCKY" in text()
