"""Every fused kernel bpmagic's CuPy backend would compile for a set of programs, as JSON for tests/support/cuda_probe.py:

    python cuda_corpus.py OUT.json [--broken PRIMITIVE=TEMPLATE]

Run with the test environment's Python (it needs IPython, hypothesis and JAX), in its own process: the labs' cells
run in an IPython shell of their own. The programs, each compiled for the CuPy backend on host arrays
(tests/support/cupy_host.py) and stepped, so that every kernel is called with the arguments the step gives it:

- labs: every code cell of examples/*.ipynb in order; each %%backprop cell trains 2 steps instead of its epochs (the
  step and its kernels are the same whatever the count) in the foreground, and must succeed; other cells may fail
  after such short training (their failures are listed, not fatal);
- readme: the README's Python API block, then its %%backprop cell (2 steps);
- models: tests/support/cuda_models.py (attention with a causal mask, activations, conv, a float64 RNN, the MLP) with
  statistics on and off, CUDA graphs on and off;
- optimizers: the MLP in float32 and float64 with SGD, momentum and Adam;
- random: value_and_grad graphs of support/random_programs.py (40 programs, derandomized), each
  checked against the plain NumPy step's outputs;
- templates: every primitive's fused template in float32 and float64, astype between every pair of C types, and
  the literals C has no notation for (inf, -inf, nan) in both.

--broken tanh='where_(true, tanh({0}), double({0}))' replaces a primitive's template first, then collects
the models only (the test that the check can fail).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import bpmagic as bp  # noqa: E402
from bpmagic.compile.fusion import C_TYPES, PREAMBLE  # noqa: E402
from bpmagic.ops import PRIMITIVES  # noqa: E402
from cupy_host import HostCupy  # noqa: E402

SHORT = "--steps 2"


def shortened(cell: str) -> str:
    """A %%backprop cell that trains 2 steps in the foreground, in this process: a cell's --workers go (the workers
    compile the very step one process does and meet through MPI in host memory; a cluster here would only cost
    time)."""
    first, _, body = cell.partition("\n")
    first = re.sub(r"\s--(epochs|steps|workers)\s+\S+", "", first).replace(" --background", "")
    return f"{first} {SHORT}\n{body}"


class Collector:
    def __init__(self):
        self.host = HostCupy()
        self.sources = {}  # id(kernel) -> source label
        self.notes = []

    def label_new(self, label):
        for k in self.host.kernels:
            self.sources.setdefault(id(k), label)

    def specs(self) -> list:
        """Kernels with their variants, one entry per distinct kernel source (variants merged)."""
        merged = {}
        for k in self.host.kernels:
            spec = k.spec()
            key = (spec["in_params"], spec["out_params"], spec["body"], spec["name"], spec["preamble"])
            entry = merged.setdefault(key, {**spec, "variants": [], "sources": [], "ops": k.ops})
            entry["variants"] += [v for v in spec["variants"] if v not in entry["variants"]]
            if self.sources.get(id(k)) not in entry["sources"]:
                entry["sources"].append(self.sources.get(id(k)))
        return [e for e in merged.values() if e["variants"]]


def run_cells(shell, cells, label, out):
    for i, cell in enumerate(cells):
        magic = cell.startswith("%%backprop")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            result = shell.run_cell(shortened(cell) if magic else cell)
        if not result.success:
            message = f"{label} cell {i}: {type(result.error_in_exec or result.error_before_exec).__name__}: " \
                      f"{result.error_in_exec or result.error_before_exec}"
            if magic:
                raise RuntimeError(f"{message}\n{cell}\n{err.getvalue()[-2000:]}")
            out.notes.append(message)
        out.label_new(label)


def labs_and_readme(out: Collector):
    from IPython.core.interactiveshell import InteractiveShell

    import bpmagic.train.step as step_module

    step_module.get_backend = lambda *a, **k: out.host  # every step the labs compile: the CuPy backend's
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "bpmagic")
    for path in sorted((ROOT / "examples").glob("*.ipynb")):
        shell.reset(new_session=False)  # bpmagic stays loaded
        nb = json.loads(path.read_text())
        cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        run_cells(shell, cells, f"labs/{path.stem}", out)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    api = [b for b in blocks if "bp.compile_step" in b]
    magic = [b for b in blocks if b.startswith("%%backprop")]
    assert api and magic, "the README's Python API block and its %%backprop cell"
    shell.reset(new_session=False)
    run_cells(shell, api + magic, "readme", out)


def models(out: Collector):
    from cuda_models import MODELS, mlp

    for name, make in MODELS.items():
        for stats in (True, False):
            for graph in (True, False):
                loss_fn, params, batch, optimizer = make()
                step = bp.compile_step(loss_fn, params, *batch, optimizer=optimizer(), backend=out.host,
                                       stats=stats, cuda_graph=graph)
                step(*batch)
                out.label_new(f"models/{name}")
    for dtype in (np.float32, np.float64):
        for opt in (lambda: bp.optim.SGD(lr=0.1), lambda: bp.optim.SGD(lr=0.1, momentum=0.9),
                    lambda: bp.optim.Adam(lr=0.01)):
            loss_fn, params, batch, _ = mlp(dtype)
            step = bp.compile_step(loss_fn, params, *batch, optimizer=opt(), backend=out.host, stats=True)
            step(*batch)
            out.label_new(f"optimizers/{np.dtype(dtype)}")


def random_programs(out: Collector, n=40):
    from hypothesis import given, settings

    import random_programs as rp
    from bpmagic.compile import optimize
    from bpmagic.compile.executor import Executable

    @settings(max_examples=n, database=None, **rp.COMMON)
    @given(rp.programs())
    def collect(prog):
        inputs, weights = rp.make_data(prog)
        argnums = tuple(range(prog.n_inputs))
        try:
            graph = bp.trace(bp.value_and_grad(lambda *xs: rp.run_program(prog, "bp", xs, weights),
                                               argnums=argnums), *inputs)
        except bp.BackpropError:
            return
        graph = optimize(graph)
        with np.errstate(all="ignore"):
            want = [np.array(o) for o in Executable(graph, bp.get_backend("numpy"))(*[x.copy() for x in inputs])]
            got = Executable(graph, out.host)(*[x.copy() for x in inputs])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=repr(prog))
        out.label_new("random")

    collect()


def templates(out: Collector):
    for name, prim in sorted(PRIMITIVES.items()):
        if not prim.fused or name == "astype":
            continue
        arity = len([i for i in range(3) if "{%d}" % i in prim.fused])
        for dtype in ("float32", "float64"):
            types = ["bool" if name == "where" and i == 0 else dtype for i in range(arity)]
            kernel = out.host.elementwise_kernel(
                ", ".join(f"{t} x{i}" for i, t in enumerate(types)), f"{dtype} y0",
                f"y0 = {prim.fused.format(*(f'x{i}' for i in range(arity)), T=C_TYPES[dtype])};\n",
                f"bp_fused_{name}", PREAMBLE)
            with np.errstate(all="ignore"):
                kernel(*[np.ones(4, t) for t in types], np.empty(4, dtype))
    for src in C_TYPES:
        for dst in C_TYPES:
            kernel = out.host.elementwise_kernel(f"{src} x0", f"{dst} y0",
                                                 f"y0 = {PRIMITIVES['astype'].fused.format('x0', T=C_TYPES[dst])};\n",
                                                 "bp_fused_astype", PREAMBLE)
            kernel(np.ones(4, src), np.empty(4, dst))
    out.label_new("templates")
    for dtype in (np.float32, np.float64):  # literals C has no notation for: inf, -inf, nan
        from bpmagic.compile.executor import Executable

        def f(x):
            return bp.where(x > 0, x * 2.0, -np.inf) + bp.where(x < 1, np.nan, x) * np.inf

        x = np.linspace(-1, 2, 6).astype(dtype)
        with np.errstate(all="ignore"):
            Executable(bp.trace(f, x), out.host)(x)
    out.label_new("templates/literals")


def main(path, broken=None):
    out = Collector()
    if broken:  # one primitive's template replaced: only the programs that use it
        name, template = broken.split("=", 1)
        PRIMITIVES[name].fused = template
        models(out)
    else:
        for collect in (labs_and_readme, models, random_programs, templates):
            collect(out)
    Path(path).write_text(json.dumps({"kernels": out.specs(), "notes": out.notes}))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[2] if len(args) > 2 and args[1] == "--broken" else None)
