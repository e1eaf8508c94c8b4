"""bpmagic's cuBLAS binding (the capturable matmul of the CuPy backend), checked without a GPU: the library is
found through cuda-pathfinder in both wheel layouts (CUDA 12: nvidia/cublas/lib, CUDA 13: nvidia/cu13/lib) and in a
system CUDA, every function the step calls resolves, and the ctypes prototypes and constants are those of the real
cublas_v2.h (a C file of them compiled against the CUDA 12 and 13 headers, warnings as errors)."""
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpmagic.backends.cupy_backend import CUBLAS_CONSTANTS, CUBLAS_FUNCTIONS
from cuda_check import MAJORS, cuda_pythons, probe, report

pytestmark = pytest.mark.slow

LAYOUT = {12: "nvidia/cublas/lib/libcublas.so.12", 13: "nvidia/cu13/lib/libcublas.so.13"}


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    cuda_pythons()
    root = tmp_path_factory.mktemp("cublas")
    return {m: probe(m, "cublas", root / f"cuda{m}.json") for m in MAJORS}


@pytest.mark.parametrize("major", MAJORS)
def test_cublas_is_found_in_the_wheels_and_every_function_resolves(major, found, request):
    out = found[major]
    report(request, f"cuBLAS, CUDA {major}: {out['path']} (found via {out['found_via']})")
    assert out["path"].endswith(LAYOUT[major]) and out["found_via"] == "site-packages"
    assert out["functions"] == dict.fromkeys(CUBLAS_FUNCTIONS, True)
    assert out["argtypes"] == {name: [t.__name__ for _, t in params] for name, params in CUBLAS_FUNCTIONS.items()}


def _system_cuda(root: Path) -> Path:
    """A system CUDA's layout (lib64 under its root), holding the CUDA 13 wheel's cuBLAS."""
    wheel = Path(probe(13, "cublas", root / "found.json")["path"]).parent
    lib64 = root / "cuda" / "lib64"
    lib64.mkdir(parents=True)
    for lib in wheel.glob("libcublas*.so*"):
        (lib64 / lib.name).symlink_to(lib)
    return root / "cuda"


LOAD = ("from bpmagic.backends.cupy_backend import load_cublas, CUBLAS_FUNCTIONS\n"
        "from cuda.pathfinder import load_nvidia_dynamic_lib\n"
        "lib = load_cublas()\n"
        "print(load_nvidia_dynamic_lib('cublas').abs_path, all(hasattr(lib, n) for n in CUBLAS_FUNCTIONS))")


def test_cublas_is_found_in_a_system_cuda(tmp_path):
    """This environment has no NVIDIA wheels: cuBLAS comes from CUDA_PATH (a toolkit's lib64), as on a machine
    with a system CUDA; without one the error says what to install."""
    cuda = _system_cuda(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_PATH", "CUDA_HOME", "LD_LIBRARY_PATH")}
    done = subprocess.run([sys.executable, "-c", LOAD], env=dict(env, CUDA_PATH=str(cuda)), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(cuda / "lib64" / "libcublas.so.13"), "True"]
    missing = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "could not load libcublas" in missing.stderr
    assert "pip install 'bpmagic[gpu]'" in missing.stderr


def prototype_check(functions=CUBLAS_FUNCTIONS, constants=CUBLAS_CONSTANTS) -> str:
    """C that compiles (with -Werror) only if each function has exactly the declared prototype, each parameter's C
    type is as large as the ctypes type it is passed as, and each constant has the declared value."""
    lines = ["#include <cublas_v2.h>", "#include <stddef.h>"]
    for name, params in functions.items():
        lines.append(f"cublasStatus_t (*check_{name})({', '.join(c for c, _ in params)}) = {name};")
        lines += [f'_Static_assert(sizeof({c}) == {ctypes.sizeof(t)}, "{name}: {c} is passed as {t.__name__}");'
                  for c, t in params]
    lines.append('_Static_assert(sizeof(cublasStatus_t) == sizeof(int), "the status is read as an int");')
    lines += [f'_Static_assert({name} == {value}, "{name} is {value}");' for name, value in constants.items()]
    return "\n".join(lines) + "\n"


def compile_c(source: str, include: list, path: Path) -> subprocess.CompletedProcess:
    path.write_text(source)
    return subprocess.run(["gcc", "-fsyntax-only", "-std=c11", "-Wall", "-Werror",
                           *(f"-I{d}" for d in include if d), str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("major", MAJORS)
def test_prototypes_and_constants_match_cublas_v2_h(major, found, tmp_path):
    include = found[major]["include"]
    done = compile_c(prototype_check(), include, tmp_path / "check.c")
    assert done.returncode == 0, f"bpmagic's cuBLAS prototypes disagree with CUDA {major}'s cublas_v2.h:\n" \
                                 f"{done.stderr}"
    # the check can fail: one parameter's type wrong, one constant's value wrong
    gemm = list(CUBLAS_FUNCTIONS["cublasGemmEx"])
    gemm[6] = ("void *", ctypes.c_void_p)  # alpha is `const void *`
    wrong = compile_c(prototype_check({"cublasGemmEx": gemm}, {}), include, tmp_path / "wrong.c")
    assert wrong.returncode != 0 and "incompatible" in wrong.stderr, wrong.stderr
    value = compile_c(prototype_check({}, {"CUBLAS_COMPUTE_32F_FAST_TF32": 74}), include, tmp_path / "value.c")
    assert value.returncode != 0 and "CUBLAS_COMPUTE_32F_FAST_TF32 is 74" in value.stderr, value.stderr


def test_gemm_arguments_compute_a_row_major_product_as_cublas_defines_it():
    """The column-major cublasGemmEx call for out = a @ b, transposed views included (they flip an op flag instead
    of being copied), computed as cuBLAS defines it on the operands' memory (tests/support/cupy_host.py)."""
    import numpy as np

    from bpmagic.backends.cupy_backend import gemm_arguments
    from cupy_host import HostGemm

    rng = np.random.default_rng(0)
    for (m, k, n) in [(3, 4, 5), (1, 4, 1), (6, 1, 2)]:
        for a_t in (False, True):
            for b_t in (False, True):
                a = rng.standard_normal((k, m)).T if a_t else rng.standard_normal((m, k))
                b = rng.standard_normal((n, k)).T if b_t else rng.standard_normal((k, n))
                out = np.empty((m, n))
                HostGemm("fp32")(a, b, out)
                np.testing.assert_allclose(out, a @ b, rtol=1e-12)
                opb, opa = gemm_arguments(a, b, out)[:2]
                # a transposed view (not also C-contiguous) is passed as it is, with its op flag flipped
                assert opa == CUBLAS_CONSTANTS["CUBLAS_OP_T" if a_t and m > 1 and k > 1 else "CUBLAS_OP_N"]
                assert opb == CUBLAS_CONSTANTS["CUBLAS_OP_T" if b_t and n > 1 and k > 1 else "CUBLAS_OP_N"]
