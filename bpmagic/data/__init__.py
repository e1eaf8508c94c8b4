"""Small data sets for the teaching labs, with no download at run time: public-domain texts shipped here (see
README.md), and scikit-learn's bundled 8×8 digits read without importing scikit-learn."""
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace


def text(name: str = "carroll") -> str:
    """The text `name` (.txt in this folder), e.g. text("carroll")."""
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def digits() -> SimpleNamespace:
    """scikit-learn's bundled handwritten digits (1797 8×8 images, UCI optdigits), as `load_digits()` gives them:
    `.data` (1797, 64) float64 pixels 0..16, `.images` the same as (1797, 8, 8), `.target` the labels 0..9.

    It reads scikit-learn's copy of the file without importing scikit-learn, which (with SciPy) would add some
    75 MB to every student's kernel on a shared hub; scikit-learn must be installed (the labs' extra)."""
    import gzip

    import numpy as np

    spec = find_spec("sklearn")  # finds the package without running it
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.exists():  # not installed, or a layout we don't know: scikit-learn's own loader
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("bpmagic.data.digits() reads scikit-learn's bundled digits: pip install scikit-learn "
                              "(or bpmagic[lab])") from None
        d = load_digits()
        return SimpleNamespace(data=d.data, images=d.images, target=d.target)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        table = np.loadtxt(f, delimiter=",")
    data = table[:, :-1]
    return SimpleNamespace(data=data, images=data.reshape(-1, 8, 8), target=table[:, -1].astype(int))
