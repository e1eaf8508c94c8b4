"""Which layer a parameter belongs to: params whose names end in the same number form one layer (W1, b1 -> "1")."""
from __future__ import annotations

import re

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def layer_of(name: str) -> str:
    """The layer of a parameter named `name`: its trailing number, else the name itself."""
    m = _TRAILING_NUMBER.search(name)
    return m.group(1) if m else name


def default_groups(names) -> "Layers":
    """name -> layer for each parameter name, by `layer_of`."""
    return Layers((n, layer_of(n)) for n in names)


class Layers(dict):
    """Which layer each parameter is in: param -> layer (a dict, as a checkpoint keeps it), and the other way,
    `members`: layer -> its params, layers in the order their first param comes."""

    @property
    def members(self) -> dict:
        out: dict = {}
        for name, layer in self.items():
            out.setdefault(layer, []).append(name)
        return out
