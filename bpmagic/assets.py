"""Where the browser views live: bpmagic/widgets/, the anywidget bundles that `npm run build` in frontend/ writes
(git-ignored in a checkout, shipped in the wheel). A checkout without that build still imports bpmagic; making a
view then says how to build it."""
from __future__ import annotations

from pathlib import Path

from .errors import BackpropError

_WIDGETS = Path(__file__).resolve().parent / "widgets"


def module(name: str) -> Path | str:
    """bpmagic/widgets/<name> (e.g. "loss_chart.js"), for a view's `_esm`; "" when it was not built."""
    path = _WIDGETS / name
    return path if path.is_file() else ""


class BuiltView:
    """Mixin for an anywidget view whose `_esm` is module(...): made without its build, it raises a BackpropError
    that says how to build it (`unbuilt_hint` adds what to do instead)."""

    unbuilt_hint = ""

    def __init__(self, *args, **kwargs):
        if not self._esm:
            raise BackpropError(
                f"bpmagic's browser view {type(self).__name__} was not built (bpmagic/widgets/ lacks its module): "
                "reinstall bpmagic with `pip install .` (node ≥ 20 builds it from source), or run `npm ci && npm run "
                f"build` in frontend/{self.unbuilt_hint}.")
        super().__init__(*args, **kwargs)
