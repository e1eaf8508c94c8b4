"""Every fused kernel bpmagic's CuPy backend generates, compiled by NVRTC for sm_80 and sm_90 with CUDA 12 and with
CUDA 13, on a machine without a GPU.

The kernels are those of tests/support/cuda_corpus.py (the labs' cells, the README's models, 40 random programs, models
beyond the labs, every fused template and astype pair), each with every argument layout its step calls it with;
tests/support/cuda_probe.py compiles each through CuPy's own kernel generation and NVRTC compiler, with CuPy's options, in
an environment per CUDA major (tests/support/cuda_envs.py installs bpmagic[gpu] and bpmagic[gpu-cuda13] there, pinned:
2.8 GB and some minutes the first time, cached after: docs/gpu.md). The counts are written to the test log.
"""
import json
import re

import pytest

from lab_checks import EXAMPLES
from cuda_check import MAJORS, corpus, cuda_pythons, failures, finish_probe, probe, report, start_probe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernels(tmp_path_factory, request):
    found = corpus(tmp_path_factory.mktemp("cuda") / "corpus.json")
    for note in found["notes"]:  # a lab's cell that needs more than the 2 steps trained here
        report(request, f"fused kernels: (not fatal) {note}")
    return found


@pytest.fixture(scope="module")
def compiled(kernels, tmp_path_factory):
    """CUDA major -> the probe's results; both majors compile at once (a process each)."""
    cuda_pythons()
    root = tmp_path_factory.mktemp("nvrtc")
    (root / "kernels.json").write_text(json.dumps(kernels["kernels"]))
    running = {m: start_probe(m, "compile", root / "kernels.json", root / f"cuda{m}.json") for m in MAJORS}
    return {m: finish_probe(p, root / f"cuda{m}.json") for m, p in running.items()}


@pytest.mark.parametrize("major", MAJORS)
def test_every_fused_kernel_compiles_with_nvrtc(major, kernels, compiled, request):
    out = compiled[major]
    assert out["versions"]["cuda_major"] == major and out["versions"]["nvrtc"][0] == major
    results = out["results"]
    specs = kernels["kernels"]
    n_variants = sum(len(k["variants"]) for k in specs)
    per_arch = {arch: sum(r["ok"] for r in results if r["arch"] == arch) for arch in out["versions"]["archs"]}
    report(request, f"NVRTC, CUDA {major} (NVRTC {'.'.join(map(str, out['versions']['nvrtc']))}, CuPy "
                    f"{out['versions']['cupy']}): {len(specs)} fused kernels, {n_variants} variants; compiled "
                    + ", ".join(f"sm_{arch} {n}" for arch, n in per_arch.items()))
    assert not failures(results), f"NVRTC rejected fused kernels:\n{failures(results)}"
    assert len(results) == n_variants * len(per_arch)
    sources = {s.split("/")[0] for k in specs for s in k["sources"]}
    assert sources == {"labs", "readme", "models", "optimizers", "random", "templates"}
    labs = {s for k in specs for s in k["sources"] if s.startswith("labs/")}
    assert len(labs) == len(EXAMPLES), labs  # a kernel from every lab


def test_the_causal_attention_kernel_is_in_float32_and_compiles(kernels, compiled):
    """The masked scores of a causal attention: -inf as CUDA's constant, in float, beside float operands (it was
    `double(-inf)`, which NVRTC rejects: no `inf` in CUDA C, and where_ of a float and a double)."""
    masked = [k for k in kernels["kernels"] if "models/attention" in k["sources"] and "CUDART_INF_F" in k["body"]]
    assert masked, "the attention model's masked scores are fused"
    for k in masked:
        assert "double" not in k["body"] and "float64" not in k["in_params"] + k["out_params"], k
        assert re.search(r"where_\(.*float\(-CUDART_INF_F\)\)", k["body"]), k["body"]
    for major in MAJORS:
        mine = [r for r in compiled[major]["results"] if any(r["name"] == k["name"] for k in masked)]
        assert mine and all(r["ok"] for r in mine), failures(mine)


def test_non_finite_literals_are_cudas_constants_in_the_kernels_type(kernels):
    literal = [k for k in kernels["kernels"] if "templates/literals" in k["sources"]]
    bodies = {c: "".join(k["body"] for k in literal if f"{c} x0" in k["in_params"]) for c in ("float32", "float64")}
    assert "float(-CUDART_INF_F)" in bodies["float32"] and "float(CUDART_NAN_F)" in bodies["float32"]
    assert "double(-CUDART_INF)" in bodies["float64"] and "double(CUDART_NAN)" in bodies["float64"]
    assert "double" not in bodies["float32"] and "inf)" not in bodies["float32"] + bodies["float64"]


def test_a_float32_model_has_no_double_arithmetic(kernels):
    """In every kernel of a float32 program (inputs float32, bool or int), nothing is computed in double."""
    checked = 0
    for k in kernels["kernels"]:
        if {s.split("/")[0] for s in k["sources"]} <= {"templates", "random"} or "float64" in k["in_params"]:
            continue
        checked += 1
        assert "double" not in k["body"] and "float64" not in k["out_params"], k
    assert checked >= 50


def test_a_broken_template_fails_naming_the_op_and_nvrtcs_message(tmp_path):
    """The check can fail: tanh's template made `where_(bool, float, double)` in float32 models (valid Python, so
    the step still runs on host arrays; not valid CUDA), NVRTC rejects the kernels that use it, and the report names
    the kernel's ops and quotes NVRTC."""
    broken = corpus(tmp_path / "broken.json", "--broken", "tanh=where_(true, tanh({0}), double({0}))")
    uses = [k for k in broken["kernels"] if "where_(true, tanh(" in k["body"] and "float32" in k["in_params"]]
    assert uses
    (tmp_path / "kernels.json").write_text(json.dumps(uses[:2]))
    results = probe(MAJORS[-1], "compile", tmp_path / "kernels.json", tmp_path / "out.json")["results"]
    assert results and not any(r["ok"] for r in results)
    text = failures(results)
    assert "tanh" in results[0]["ops"] and 'no instance of function template "where_"' in text, text


@pytest.fixture(scope="module")
def host_steps(tmp_path_factory):
    root = tmp_path_factory.mktemp("step")
    running = {m: start_probe(m, "step", root / f"cuda{m}.json") for m in MAJORS}
    return {m: finish_probe(p, root / f"cuda{m}.json") for m, p in running.items()}


@pytest.mark.parametrize("major", MAJORS)
def test_the_cupy_step_runs_on_host_arrays_with_cupys_own_kernels(major, host_steps, request):
    """What Python can run of the CuPy backend without a device (tests/support/cupy_host.py): with CuPy installed and no
    GPU, 'auto' picks NumPy and says why, 'cupy' is an error saying how to fix it; a compiled step whose fused
    kernels are the real cupy.ElementwiseKernel objects of CupyBackend.elementwise_kernel (each call's variant
    compiled by NVRTC), split into two CUDA graphs around the guard, its matmuls the cuBLAS calls of
    gemm_arguments, trains as the NumPy step does."""
    facts = host_steps[major]
    assert facts["unavailable_reason"].startswith("CuPy cannot reach a GPU") and facts["auto"] == "numpy"
    assert "cannot be used here" in facts["cupy_error"] and "pip install 'bpmagic[gpu]'" in facts["cupy_error"]
    assert not failures(facts["results"]), failures(facts["results"])
    for name, model in facts["models"].items():
        assert model["device_kernels"] == ["cupy._core._kernel.ElementwiseKernel"] and model["kernels"] >= 5
        assert model["losses"]["cupy"] == pytest.approx(model["losses"]["numpy"], rel=1e-5), name
        assert model["max_param_difference"] < 1e-5, name
        assert model["launches"] == 2 * 4, "each of 4 steps replays its two graphs"
        assert "def _part_a(" in model["source"] and "def _part_b(" in model["source"]
    assert facts["models"]["mlp"]["gemm_calls"] > 0 and "_mm(" in facts["models"]["mlp"]["source"]
    report(request, f"CuPy step on host arrays, CUDA {major}: "
                    + ", ".join(f"{n} {m['kernels']} kernels" for n, m in facts["models"].items())
                    + f", {len(facts['results'])} NVRTC compiles")
