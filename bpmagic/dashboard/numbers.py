"""Numbers as the dashboard writes them, in one place: the browser views get the labels as data, and the static
image uses the same ones."""
from __future__ import annotations

import math


def number(v: float) -> str:
    """One value: plain decimals where they read better (0.0298, 12.4), powers of ten for the very small and large
    (3.1e-5)."""
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if 1e-3 <= a < 1e4:
        return f"{float(f'{v:.3g}'):g}"
    return _power_of_ten(v)


def numbers(values) -> list:
    """Values shown side by side (a panel's bars) in one style: all plain decimals when every one reads well so
    (0.0298, 12.4), else all powers of ten with two digits (7.7e-4, 1.7e-3), never a mix of the two."""
    values = [float(v) for v in values]
    if all(not math.isfinite(v) or v == 0 or 1e-2 <= abs(v) < 1e4 for v in values):
        return [number(v) for v in values]
    return [_power_of_ten(v) if math.isfinite(v) and v != 0 else number(v) for v in values]


def _power_of_ten(v: float) -> str:
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"
