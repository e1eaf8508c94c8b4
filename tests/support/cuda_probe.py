"""CUDA checks that need no GPU, run with the Python of a CUDA environment (tests/support/cuda_envs.py builds them):

    python cuda_probe.py compile KERNELS.json RESULT.json   # fused kernels through CuPy's NVRTC path, per arch
    python cuda_probe.py cublas RESULT.json                  # bpmagic's cuBLAS binding: the library, its symbols
    python cuda_probe.py step RESULT.json                    # the CuPy step on host arrays, with real CuPy kernels

Compiling: a kernel is the real cupy.ElementwiseKernel that bpmagic's CuPy backend makes; its full source comes from
CuPy's own generator for the argument layout a call has (`_get_elementwise_kernel_code` with `_ArgInfo`s, as
ElementwiseKernel.__call__ does), and is compiled by CuPy's `compile_with_cache` with CuPy's own options and
headers, for each arch in ARCHS. Two things of that path ask the device, and are told instead: the arch (CuPy's
`_get_arch_for_options_for_nvrtc` looks up the current device; given the arch, it decides as CuPy does), and loading
the compiled cubin into a module (kept instead). CUPY_CACHE_IN_MEMORY=1: every kernel really compiles, never read
from a disk cache. These are CuPy's private functions, so tests/support/cuda_envs.py pins CuPy's version.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["CUPY_CACHE_IN_MEMORY"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

ARCHS = ("80", "90")  # A100, H100 / H200
ARG_KIND_NDARRAY, ARG_KIND_INDEXER = 1, 2  # cupy/_core/_kernel.pxd: enum _ArgKind


def nvrtc_without_device():
    """CuPy's compiler, told the arch instead of asking the device, keeping the cubin instead of loading it."""
    from types import SimpleNamespace

    from cupy.cuda import compiler, function

    def arch_options(arch=None):  # _get_arch_for_options_for_nvrtc without its per-device memo (which asks)
        if not compiler._use_ptx and int(arch) <= int(compiler._get_max_compute_capability()):
            return f"-arch=sm_{arch}", "cubin"
        return f"-arch=compute_{arch}", "ptx"

    class Cubin(function.Module):
        def load(self, cubin):
            self.cubin = cubin

    compiler._get_arch_for_options_for_nvrtc = arch_options
    compiler.function = SimpleNamespace(Module=Cubin, LinkState=function.LinkState)


def compile_variant(kernel, variant, arch) -> bytes:
    """The cubin of `kernel` (a cupy.ElementwiseKernel) for one call layout (dtypes, ndim, C-contiguity per
    argument) and arch; raises CuPy's CompileException with NVRTC's log."""
    import cupy
    from cupy._core import _carray, _kernel, core

    dtypes, ndim, contiguous = variant
    dtypes = [np.dtype(d) for d in dtypes]
    _, _, type_map = kernel._decide_params_type(tuple(dtypes[:kernel.nin]), tuple(dtypes[kernel.nin:]))
    infos = tuple(_kernel._ArgInfo(ARG_KIND_NDARRAY, cupy.ndarray, d, ndim, c, True)
                  for d, c in zip(dtypes, contiguous))
    infos += (_kernel._ArgInfo(ARG_KIND_INDEXER, _carray.Indexer, None, ndim, True, True),)
    kwargs = dict(kernel.kwargs)
    options = kwargs.pop("options", ())
    code = _kernel._get_elementwise_kernel_code(infos, type_map, kernel.params, kernel.operation, kernel.name,
                                                kernel.preamble, **kwargs)
    return core.compile_with_cache(code, options, arch=arch).cubin


def versions() -> dict:
    import cupy
    from cupy.cuda import compiler, runtime

    return {"cupy": cupy.__version__, "nvrtc": list(compiler._get_nvrtc_version()),
            "cuda_major": runtime.runtimeGetVersion() // 1000, "archs": list(ARCHS)}


class Compiler:
    """Compiles kernel variants for every arch, collecting one result per compile."""

    def __init__(self):
        nvrtc_without_device()
        self.results = []

    def __call__(self, kernel, variant, name, ops):
        from cupy.cuda.compiler import CompileException

        for arch in ARCHS:
            result = {"name": name, "ops": ops, "variant": [list(variant[0]), variant[1], list(variant[2])],
                      "arch": arch, "ok": True}
            try:
                result["cubin_bytes"] = len(compile_variant(kernel, variant, arch))
            except CompileException as e:
                result.update(ok=False, error=str(e))
            self.results.append(result)


def compile_kernels(specs: list) -> dict:
    from bpmagic.backends.cupy_backend import CupyBackend

    backend, compile_all = CupyBackend(), Compiler()
    for spec in specs:
        kernel = backend.elementwise_kernel(spec["in_params"], spec["out_params"], spec["body"], spec["name"],
                                            spec["preamble"])
        for dtypes, ndim, contiguous in spec["variants"]:
            compile_all(kernel, (tuple(dtypes), ndim, tuple(contiguous)), spec["name"], spec.get("ops", ""))
    return {"versions": versions(), "results": compile_all.results}


def cublas() -> dict:
    """bpmagic's cuBLAS: where it was found, that every function the matmul calls resolves, and the header
    directories its prototypes are checked against."""
    import ctypes

    from cuda.pathfinder import find_nvidia_header_directory, load_nvidia_dynamic_lib

    from bpmagic.backends.cupy_backend import CUBLAS_FUNCTIONS, load_cublas

    lib = load_cublas()
    found = load_nvidia_dynamic_lib("cublas")
    return {"versions": versions(), "path": found.abs_path, "found_via": found.found_via,
            "functions": {name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value is not None
                          for name in CUBLAS_FUNCTIONS},
            "argtypes": {name: [t.__name__ for t in getattr(lib, name).argtypes] for name in CUBLAS_FUNCTIONS},
            "include": [find_nvidia_header_directory(name) for name in ("cublas", "cudart", "cccl")]
            + [str(h.parents[1]) for h in Path(found.abs_path).parents[2].glob("*/include/crt/host_defines.h")]}


def step() -> dict:
    """The CuPy backend as Python can run it here: which backend bpmagic picks, and compiled steps on host arrays
    whose fused kernels are the real CuPy kernel objects, each call's variant compiled with NVRTC."""
    import bpmagic as bp
    from bpmagic.backends import get_backend
    from bpmagic.backends.cupy_backend import CupyBackend
    from bpmagic.errors import BackendError
    from cupy_host import HostCupy
    from cuda_models import STEP_MODELS

    facts = {"versions": versions(), "unavailable_reason": CupyBackend.unavailable_reason(),
             "auto": get_backend("auto").name}
    try:
        get_backend("cupy")
    except BackendError as e:
        facts["cupy_error"] = str(e)
    compile_all = Compiler()
    facts["models"] = {}
    for name, make in STEP_MODELS.items():
        loss_fn, params, batch, optimizer = make()
        host = HostCupy(make_kernel=CupyBackend().elementwise_kernel,
                        on_variant=lambda k, v: compile_all(k.device_kernel, v, k.name, k.ops))
        steps = {}
        for label, backend in (("numpy", "numpy"), ("cupy", host)):
            steps[label] = bp.compile_step(loss_fn, {k: v.copy() for k, v in params.items()}, *batch,
                                           optimizer=optimizer(), backend=backend, stats=True)
        losses = {label: [s(*batch) for _ in range(4)] for label, s in steps.items()}
        facts["models"][name] = {
            "losses": losses, "source": steps["cupy"].source, "kernels": len(host.kernels),
            "device_kernels": sorted({type(k.device_kernel).__module__ + "." + type(k.device_kernel).__name__
                                      for k in host.kernels}),
            "launches": sum(r.launches for r in host.replays), "gemm_calls": sum(g.calls for g in host.gemms.values()),
            "max_param_difference": max(float(np.max(np.abs(steps["cupy"].params[k] - steps["numpy"].params[k])))
                                        for k in params)}
    facts["results"] = compile_all.results
    return facts


if __name__ == "__main__":
    mode, *paths = sys.argv[1:]
    if mode == "compile":
        out = compile_kernels(json.loads(Path(paths[0]).read_text()))
    elif mode == "cublas":
        out = cublas()
    else:
        out = step()
    Path(paths[-1]).write_text(json.dumps(out))
