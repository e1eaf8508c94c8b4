"""Where the browser code lives: widgets/ in a source checkout, bpmagic/widgets/ in an installed wheel."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def asset(name: str) -> Path:
    """widgets/<name> (e.g. "loss_chart.js", "dist/graph_view.js"), from the wheel or the repo."""
    for candidate in (_PACKAGE / "widgets" / name, _PACKAGE.parent / "widgets" / name):
        if candidate.exists():
            return candidate
    hint = (" It is built from widgets/src/ by `npm run build` in labextension/ (pip install does it)."
            if name.startswith("dist/") else "")
    raise FileNotFoundError(f"bpmagic's browser view {name} is missing from the installation.{hint}")
