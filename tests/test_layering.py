"""The house's layering, read from the source: imports only point down (docs/DESIGN.md).

Every module of bpmagic/ir and bpmagic/ops is parsed with `ast`; each import it makes, at module level or inside a
function, relative or absolute, is an edge to the bpmagic module it names. Within ir/ and within ops/ these edges
must form no cycle (a cycle means neither module can be read, tested or changed without the other), and ir/ imports
nothing of bpmagic outside ir/: the IR knows no ops, arrays or backends.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bpmagic"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, root: Path) -> bool:
    """Whether `name` (bpmagic.x.y) is a module or package of the source tree under `root`."""
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    base = root / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, root: Path = PACKAGE) -> set:
    """The bpmagic modules that the module at `path` imports, anywhere in its body."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            for alias in node.names:  # `from . import shape` imports the module bpmagic.ops.shape
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub, root) else base)
    top = root.name
    return {m for m in found if m == top or m.startswith(top + ".")}


def import_graph(root: Path = PACKAGE, *packages: str) -> dict:
    """module -> the bpmagic modules it imports, for every module of the given subpackages of `root`."""
    graph = {}
    for sub in packages:
        for path in sorted((root / sub).glob("*.py")):
            graph[_module_name(path, root)] = imports_of(path, root)
    return graph


def find_cycle(graph: dict, within: str):
    """A cycle among the modules of package `within` (as a list a -> b -> ... -> a), or None."""
    inside = {m: {d for d in deps if d in graph and (d == within or d.startswith(within + "."))} - {m}
              for m, deps in graph.items() if m == within or m.startswith(within + ".")}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(inside.get(m, ())):
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state:
                cycle = visit(d)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(inside):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


GRAPH = import_graph(PACKAGE, "ir", "ops")


@pytest.mark.parametrize("package", ["bpmagic.ir", "bpmagic.ops"])
def test_no_import_cycle_within(package):
    cycle = find_cycle(GRAPH, package)
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle)} (a function-level import counts too)"


def test_ir_imports_nothing_of_bpmagic_outside_ir():
    outside = {m: sorted(d for d in deps if not (d == "bpmagic.ir" or d.startswith("bpmagic.ir.")))
               for m, deps in GRAPH.items() if m == "bpmagic.ir" or m.startswith("bpmagic.ir.")}
    outside = {m: deps for m, deps in outside.items() if deps}
    assert not outside, f"the IR knows no ops, arrays or backends, but: {outside}"


def test_the_checks_see_cycles_and_every_kind_of_import(tmp_path):
    """The checks can fail: a package whose modules import each other (module level, in a function, relatively and
    absolutely) is found out, and the cycle is named."""
    pkg = tmp_path / "bpmagic" / "ops"
    pkg.mkdir(parents=True)
    (tmp_path / "bpmagic" / "__init__.py").write_text("")
    (tmp_path / "bpmagic" / "errors.py").write_text("")
    (pkg / "__init__.py").write_text("from .a import *\n")
    (pkg / "a.py").write_text("from . import b\nfrom ..errors import X\nimport numpy\n")
    (pkg / "b.py").write_text("def f():\n    import bpmagic.ops.c\n")
    (pkg / "c.py").write_text("def g():\n    from .a import h\n")
    (pkg / "d.py").write_text("from bpmagic.ops import c\n")
    graph = import_graph(tmp_path / "bpmagic", "ops")
    assert graph["bpmagic.ops.a"] == {"bpmagic.ops.b", "bpmagic.errors"}
    assert graph["bpmagic.ops.b"] == {"bpmagic.ops.c"}
    assert graph["bpmagic.ops.d"] == {"bpmagic.ops.c"}
    assert find_cycle(graph, "bpmagic.ops") == ["bpmagic.ops.a", "bpmagic.ops.b", "bpmagic.ops.c", "bpmagic.ops.a"]
    (pkg / "c.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_graph(tmp_path / "bpmagic", "ops"), "bpmagic.ops") is None
