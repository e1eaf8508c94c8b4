"""A tiny plugin package (tests/support/plugin_pkg) is pip-installed; its primitives, backend and optimizer are then found
through the entry-point groups, exactly like the built-ins, and its primitives' facets (a fused template, an effect)
are honoured by the compiler exactly like a built-in's."""
import json
import subprocess
import sys
import textwrap

import pytest




def run_python(code: str) -> dict:
    """Run code in a fresh interpreter (entry points are read at start-up) and return the JSON it prints."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_builtins_come_from_entry_points():
    from importlib.metadata import entry_points

    groups = {g: {ep.name for ep in entry_points(group=g)} for g in
              ("bpmagic.ops", "bpmagic.backends", "bpmagic.optimizers")}
    assert {"elementwise", "nn", "composite"} <= groups["bpmagic.ops"]
    assert {"numpy", "cupy"} <= groups["bpmagic.backends"]
    assert {"sgd", "adam"} <= groups["bpmagic.optimizers"]


def test_plugin_primitive_backend_and_optimizer(installed_plugin):
    result = run_python("""
        import json
        import numpy as np
        import bpmagic as bp
        from bpmagic.backends import available_backends
        from bpmagic.train.optim import get_optimizer

        x = np.linspace(-3, 3, 7)
        softsign = bp.softsign                      # found through the bpmagic.ops entry point
        check = bp.gradcheck(lambda x: bp.sum(softsign(x) ** 2), x, order=2)
        g = bp.grad(lambda x: bp.sum(softsign(x)))(x)

        backend = bp.get_backend("checked-numpy")   # found through bpmagic.backends
        opt = get_optimizer("signsgd", lr=0.1)      # found through bpmagic.optimizers
        params = {"w": np.array([1.0, -2.0, 3.0])}
        step = bp.compile_step(lambda p, t: bp.sum((p["w"] - t) ** 2), params, np.zeros(3),
                               optimizer=opt, backend=backend)
        losses = [step(np.zeros(3)) for _ in range(3)]
        print(json.dumps({
            "gradcheck": bool(check), "grad": g.tolist(), "expected": (1 / (1 + np.abs(x)) ** 2).tolist(),
            "backends": sorted(available_backends()), "w": params["w"].tolist(), "losses": losses,
            "transfers": type(backend).transfers, "in_graph": "softsign" in str(bp.trace(softsign, x)),
        }))
    """)
    assert result["gradcheck"]
    assert result["grad"] == pytest.approx(result["expected"])
    assert "checked-numpy" in result["backends"] and "numpy" in result["backends"]
    assert result["w"] == pytest.approx([0.7, -1.7, 2.7])     # three signSGD steps of 0.1
    assert result["losses"][0] == pytest.approx(14.0)
    assert result["transfers"] > 0
    assert result["in_graph"]


def test_plugin_primitives_are_fused_and_effects_respected(installed_plugin):
    result = run_python("""
        import json
        import numpy as np
        import bpmagic as bp
        from bpmagic.backends.numpy_backend import NumpyBackend
        from bpmagic.compile.executor import Executable
        from bpmagic.compile.fusion import numpy_kernel
        from bpmagic.compile.passes import fold_constants, optimize
        from bpmagic.ir import Graph

        class FusingNumpy(NumpyBackend):  # runs fused kernel bodies with NumPy, as tests/compile/test_fusion.py does
            kernels = []

            def elementwise_kernel(self, in_params, out_params, body, name, preamble):
                self.kernels.append(name)
                return numpy_kernel(in_params, out_params, body)

        x = np.linspace(-3, 3, 7)
        graph = bp.trace(lambda x: bp.softsign(x * 2.0) + 1.0, x)
        backend = FusingNumpy()
        fused = Executable(graph, backend)(x)[0]

        twice = optimize(bp.trace(lambda x: bp.jitter(x) - bp.jitter(x), x))
        diff = Executable(twice, NumpyBackend())(x)[0]
        traced = bp.trace(lambda x, c: x + bp.jitter(c), x, np.ones(7))
        as_const = Graph(traced.inputs[:1], traced.eqns, traced.outputs, {traced.inputs[1]: np.ones(7)})
        run = Executable(fold_constants(as_const), NumpyBackend())
        a, b = run(x)[0].copy(), run(x)[0].copy()
        print(json.dumps({
            "kernels": backend.kernels, "fused": fused.tolist(), "expected": (2 * x / (1 + np.abs(2 * x)) + 1).tolist(),
            "jitters": sum(e.primitive.name == "jitter" for e in twice.eqns), "diff_nonzero": bool(np.all(diff != 0)),
            "two_runs_differ": bool(np.all(a != b)),
        }))
    """)
    assert result["kernels"] == ["bp_fused_multiply_softsign_add"]
    assert result["fused"] == pytest.approx(result["expected"], rel=1e-14)
    assert result["jitters"] == 2 and result["diff_nonzero"]  # two draws, never merged into one
    assert result["two_runs_differ"]  # a draw on a constant input is not folded into a constant


def test_broken_plugin_is_reported_not_fatal(monkeypatch):
    import bpmagic.plugins as plugins

    class FakeEP:
        name, value = "broken", "no_such_module_xyz:thing"

    monkeypatch.setattr(plugins, "entry_points", lambda group: [FakeEP()] if group == "bpmagic.ops" else [])
    plugins.reload_plugins()
    try:
        with pytest.warns(UserWarning, match="broken"):
            loaded = plugins.load_group("bpmagic.ops")
        assert "elementwise" in loaded  # built-ins still load
    finally:
        plugins.reload_plugins()
