"""Nested containers of arrays (dicts, lists, tuples) flattened to leaves and rebuilt, as JAX's pytrees."""
from __future__ import annotations


def flatten(tree, path=""):
    """(leaves, treedef, names): leaves in order, a structure to rebuild from, and a readable name per leaf."""
    if isinstance(tree, dict):
        leaves, names, defs = [], [], []
        for k, v in tree.items():
            lv, d, nm = flatten(v, f"{path}.{k}" if path else str(k))
            leaves += lv
            names += nm
            defs.append((k, d))
        return leaves, ("dict", defs), names
    if isinstance(tree, (list, tuple)):
        leaves, names, defs = [], [], []
        for i, v in enumerate(tree):
            lv, d, nm = flatten(v, f"{path}{i}" if path else f"_{i}")
            leaves += lv
            names += nm
            defs.append(d)
        return leaves, (type(tree).__name__, defs), names
    return [tree], None, [path or "x"]


def unflatten(treedef, leaves):
    """Rebuild the structure described by `treedef` from `leaves` (consumed in order)."""
    it = iter(leaves)

    def build(d):
        if d is None:
            return next(it)
        kind, parts = d
        if kind == "dict":
            return {k: build(sub) for k, sub in parts}
        items = [build(sub) for sub in parts]
        return tuple(items) if kind == "tuple" else items

    out = build(treedef)
    assert next(it, None) is None, "more leaves than the structure holds"
    return out



def arg_names(fn, n) -> list:
    """Names for `fn`'s first n positional arguments (its parameters' names, then arg<i>): the leaves' names."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (names + [f"arg{i}" for i in range(len(names), n)])[:n]
