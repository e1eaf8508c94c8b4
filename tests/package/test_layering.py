"""The house's layering, read from the source: imports only point down (DESIGN.md, "The house, bottom to top").

Every module of bpmagic is parsed with `ast`; each import it makes, at module level or inside a function, relative
or absolute, is an edge to the bpmagic module it names. These edges must form no cycle (a cycle means neither module
can be read, tested or changed without the other); every module stands on a floor of the house (FLOORS, FLOOR_OF),
and imports only from its own floor or below. The IR imports nothing of bpmagic outside ir/ but the user's line
(usercode): it knows no ops, arrays or backends.
"""
from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[2] / "bpmagic"


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


def _modules(root: Path, sub: str = ""):
    """The .py files of the package at `root` (or of its subpackage `sub`), nested packages included."""
    for path in sorted((root / sub).rglob("*.py")):
        if all((d / "__init__.py").is_file() for d in path.parents if d == root or root in d.parents):
            yield path


def import_graph(root: Path = PACKAGE, *packages: str) -> dict:
    """module -> the bpmagic modules it imports, for every module of the given subpackages of `root` (all of its
    modules when none are given)."""
    return {_module_name(path, root): imports_of(path, root)
            for sub in (packages or ("",)) for path in _modules(root, sub)}


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


# The floors of the house, bottom to top: DESIGN.md's table. A module imports only from its own floor or below.
FLOORS = ["user code", "foundation", "backends", "IR", "primitives", "tracing", "autodiff", "compile", "train",
          "public API", "front ends", "package"]

# module or package -> its floor. A module not listed here (nor inside a listed package) fails the test: place it.
FLOOR_OF = {
    # the design's table
    "bpmagic.usercode": "user code",
    "bpmagic.backends": "backends",
    "bpmagic.ir": "IR",
    "bpmagic.ops": "primitives",  # the stack of open traces sits in ops.core, where a primitive binds into a trace
    "bpmagic.tracing": "tracing",
    "bpmagic.autodiff": "autodiff",
    "bpmagic.compile": "compile",
    "bpmagic.train": "train",
    "bpmagic.api": "public API",
    "bpmagic.magic": "front ends",
    "bpmagic.cell": "front ends",
    "bpmagic.binding": "front ends",  # the cell bound to a namespace: the magic's first half, a script's too
    "bpmagic.progress": "front ends",  # a run's progress as text where no widget shows it
    "bpmagic.dashboard": "front ends",
    "bpmagic.viz": "front ends",
    # modules the table does not name
    "bpmagic.errors": "foundation",  # every floor raises them; they find the user's line through usercode alone
    "bpmagic.plugins": "foundation",  # entry points, knowing nothing of bpmagic: backends and ops load through it
    "bpmagic.pytree": "foundation",
    "bpmagic.threads": "foundation",  # whether threads can be started (not in Pyodide), and the event loop instead  # nested containers of arrays as leaves: plain Python, for any floor
    "bpmagic.onnx_export": "compile",  # a graph walked into another form, as the compile passes do; traces first
    "bpmagic.check": "public API",  # bp.check_gradients, built on the public API's grad
    "bpmagic.initializers": "front ends",  # the cell's randn, zeros, ...: the %%backprop namespace (magic.py)
    "bpmagic.live_comms": "front ends",  # widget messages while a blocking cell runs: the notebook's machinery
    "bpmagic.record": "front ends",  # the static output beside each live widget
    "bpmagic.assets": "front ends",  # where the widgets' browser code lives
    "bpmagic.data": "front ends",  # the labs' data sets, read in notebooks
    # `import bpmagic` gives the public API and the front ends' hooks (load_ipython_extension, graphs that draw
    # themselves, the cell's Param/Input annotations), so the package itself stands above them; and the kernel is
    # IPython with that whole package loaded (its version, its extension)
    "bpmagic": "package",
    "bpmagic.kernel": "package",
}


def floor_of(module: str, floors: dict = FLOOR_OF):
    """The floor of `module`: its own entry, or that of the innermost package listed that holds it (the package
    root counts only for itself); None when it has none."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in floors and (n > 1 or name == module):
            return floors[name]
    return None


def unplaced(graph: dict, floors: dict = FLOOR_OF) -> list:
    """The modules of `graph` that stand on no floor."""
    return sorted(m for m in graph if floor_of(m, floors) is None)


def upward_imports(graph: dict, floors: dict = FLOOR_OF) -> list:
    """Each import from a higher floor, as "module (floor) imports module (floor)"."""
    found = []
    for m, deps in sorted(graph.items()):
        here = floor_of(m, floors)
        for d in sorted(deps):
            there = floor_of(d, floors)
            if here is not None and there is not None and FLOORS.index(there) > FLOORS.index(here):
                found.append(f"{m} ({here}) imports {d} ({there})")
    return found


GRAPH = import_graph(PACKAGE)


def test_every_module_stands_on_a_floor():
    assert set(FLOOR_OF.values()) <= set(FLOORS)
    assert "bpmagic.ops.core" in GRAPH and "bpmagic.dashboard.panels.loss" in GRAPH  # nested modules are read
    missing = unplaced(GRAPH)
    assert not missing, f"modules on no floor of the house (place them in FLOOR_OF, saying why): {missing}"


def test_no_import_cycle():
    cycle = find_cycle(GRAPH, "bpmagic")
    assert cycle is None, f"import cycle: {' -> '.join(cycle)} (a function-level import counts too)"


def test_imports_only_point_down():
    upward = upward_imports(GRAPH)
    assert not upward, "imports from a higher floor of the house:\n" + "\n".join(upward)


def test_ir_imports_nothing_of_bpmagic_outside_ir():
    allowed = ("bpmagic.ir", "bpmagic.usercode")  # an Eqn records the user's line: a usercode.Source
    outside = {m: sorted(d for d in deps if not any(d == a or d.startswith(a + ".") for a in allowed))
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


def test_the_checks_see_floors(tmp_path):
    """The floor checks can fail: a module importing from a floor above, and a module no floor holds, are named;
    a module of a listed package is on that package's floor, and the package root only on its own."""
    root = tmp_path / "bpmagic"
    (root / "ops").mkdir(parents=True)
    (root / "__init__.py").write_text("from . import api\n")
    (root / "api.py").write_text("from .ops import core\n")
    (root / "ops" / "__init__.py").write_text("")
    (root / "ops" / "core.py").write_text("def f():\n    from ..api import grad\n")
    (root / "stray.py").write_text("")
    graph = import_graph(root)
    floors = {"bpmagic": "package", "bpmagic.api": "public API", "bpmagic.ops": "primitives"}
    assert floor_of("bpmagic.ops.core", floors) == "primitives" and floor_of("bpmagic.stray", floors) is None
    assert unplaced(graph, floors) == ["bpmagic.stray"]
    assert upward_imports(graph, floors) == ["bpmagic.ops.core (primitives) imports bpmagic.api (public API)"]
    assert find_cycle(graph, "bpmagic") == ["bpmagic.api", "bpmagic.ops.core", "bpmagic.api"]
