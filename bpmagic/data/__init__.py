"""Small data sets for the teaching labs, shipped in this folder so that nothing is downloaded or installed at run
time (not even in a browser's JupyterLite): public-domain texts and the 8×8 handwritten digits (README.md says where
each comes from and under what licence)."""
from importlib.resources import files
from types import SimpleNamespace


def text(name: str = "carroll") -> str:
    """The text `name` (.txt in this folder), e.g. text("carroll")."""
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def digits() -> SimpleNamespace:
    """The handwritten digits that scikit-learn's `load_digits()` gives (1797 8×8 images: the test set of the UCI
    "Optical Recognition of Handwritten Digits", E. Alpaydin & C. Kaynak, 1998), with the same arrays:
    `.data` (1797, 64) float64 pixels 0..16, `.images` the same as (1797, 8, 8), `.target` the labels 0..9.

    Read from digits.npz here (uint8, 45 kB), a copy of scikit-learn's digits.csv.gz: no scikit-learn needed, whose
    import (with SciPy) would add some 75 MB to every student's kernel on a hub and 26 MB to a JupyterLite site."""
    import numpy as np

    with files(__package__).joinpath("digits.npz").open("rb") as f, np.load(f) as npz:
        data, target = npz["pixels"].astype(np.float64), npz["target"].astype(int)  # load_digits()'s dtypes
    return SimpleNamespace(data=data, images=data.reshape(-1, 8, 8), target=target)
