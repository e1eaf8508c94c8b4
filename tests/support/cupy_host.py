"""The CuPy backend's compiled step on host arrays: what Python can run of it without a GPU.

`HostCupy` is a backend with the CuPy backend's compiled-step interface (fused kernels, the capturable matmul,
CUDA-graph replay), so the executor plans and generates exactly the step it generates for CuPy: fused groups, the
split at the guard into two graphs, the locals the second graph takes again. The arrays are NumPy's, and what only a
device can do is done on the host:

- a fused kernel (`HostKernel`) keeps the parameters, body, name and preamble the CuPy backend gives
  cupy.ElementwiseKernel, records how each call's arguments reach the kernel (after CuPy's broadcasting and
  dimension merging: which compiled variant CuPy would launch), and computes its body with NumPy
  (compile/fusion.numpy_kernel); in a CUDA environment it also holds the real CuPy kernel object
  (tests/support/cuda_probe.py compiles each variant with NVRTC);
- the matmul calls the CuPy backend's own `gemm_arguments` (the column-major cublasGemmEx call for a row-major
  product) and computes that call as cuBLAS defines it, on the operands' memory;
- a CUDA graph's replay runs its part directly (`EagerReplay`), from the same static input arrays.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from bpmagic.backends.cupy_backend import CUBLAS_CONSTANTS, gemm_arguments
from bpmagic.backends.numpy_backend import NumpyBackend
from bpmagic.compile.fusion import numpy_kernel


def reduced_layout(arrays, shape):
    """(ndim, C-contiguity of each argument) of the kernel CuPy launches for `arrays` (broadcast to `shape`): CuPy
    merges the dimensions that every argument walks contiguously. As `_reduce_dims` in CuPy 14.2's
    cupy/_core/_kernel.pyx (ElementwiseKernel.__call__ with reduce_dims=True, more than one argument)."""
    contiguous = [bool(a.flags.c_contiguous) for a in arrays]
    ndim = len(shape)
    if ndim <= 1:
        return ndim, contiguous
    strided = [a for a, c in zip(arrays, contiguous) if not c]
    if not strided:
        return 1, contiguous  # all C-contiguous: one flat dimension
    if ndim == 2:
        return ndim, contiguous
    axes, last = [], -1
    extent = list(shape)
    for ax in range(ndim):
        if extent[ax] == 1:
            continue
        if last >= 0:
            if any(a.strides[ax] * extent[ax] != a.strides[last] for a in strided):
                axes.append(last)
            else:
                extent[ax] *= extent[last]
        last = ax
    if last >= 0:
        axes.append(last)
    return len(axes), contiguous  # the merged views keep their arrays' C-contiguity flags


class HostKernel:
    """One fused kernel as the CuPy backend makes it, computed with NumPy. `variants`: every (dtypes, ndim,
    C-contiguity) CuPy would compile for the calls so far, in the order first seen."""

    def __init__(self, in_params, out_params, body, name, preamble, device_kernel=None):
        self.in_params, self.out_params, self.body, self.name, self.preamble = (in_params, out_params, body, name,
                                                                                 preamble)
        self.device_kernel = device_kernel  # the real cupy.ElementwiseKernel, where CuPy is installed
        self.n_in = len([p for p in in_params.split(",") if p.strip()])
        self.compute = numpy_kernel(in_params, out_params, body)
        self.variants = {}  # variant -> None (an ordered set)
        self.on_variant = None  # called with each new variant (tests/support/cuda_probe.py compiles it)

    @property
    def ops(self) -> str:
        return self.name.removeprefix("bp_fused_").replace("_", ", ")

    def __call__(self, *arrays):
        arrays = [np.asarray(a) for a in arrays]
        shape = arrays[self.n_in].shape
        seen = [np.broadcast_to(a, shape) for a in arrays[:self.n_in]] + arrays[self.n_in:]
        ndim, contiguous = reduced_layout(seen, shape)
        variant = (tuple(str(a.dtype) for a in arrays), ndim, tuple(contiguous))
        if variant not in self.variants:
            self.variants[variant] = None
            if self.on_variant is not None:
                self.on_variant(self, variant)
        return self.compute(*arrays)

    def spec(self) -> dict:
        """What tests/support/cuda_probe.py compiles: the kernel and its variants, as JSON."""
        return {"in_params": self.in_params, "out_params": self.out_params, "body": self.body, "name": self.name,
                "preamble": self.preamble, "variants": [list(v) for v in self.variants]}


class EagerReplay:
    """Runs each part directly where CUDA would replay a captured graph: the same static input arrays."""

    def __init__(self, parts, static):
        self.parts, self.static, self.launches = parts, static, 0

    def load(self, inputs):
        for dst, src in zip(self.static, inputs):
            if dst is not src:
                np.copyto(dst, src)

    def launch(self, i):
        self.launches += 1
        result = self.parts[i](*self.static)
        return result if i == len(self.parts) - 1 else None

    def synchronize(self):
        pass


def _memory(x):
    """The array's memory in address order, as a flat writable view (x is C- or F-contiguous)."""
    return (x if x.flags.c_contiguous else x.T).reshape(-1)


def _column_major(memory, rows, cols, ld):
    return as_strided(memory, (rows, cols), (memory.itemsize, ld * memory.itemsize), writeable=True)


def cublas_gemm(opa, opb, m, n, k, a, lda, b, ldb, c, ldc):
    """C = op(A) op(B) as cublasGemmEx defines it: column-major matrices in the operands' memory, with their
    leading dimensions; C is m × n, op(A) m × k, op(B) k × n."""
    def op(x, flag, rows, cols, ld):
        if flag == CUBLAS_CONSTANTS["CUBLAS_OP_N"]:
            return _column_major(_memory(x), rows, cols, ld)
        return _column_major(_memory(x), cols, rows, ld).T

    _column_major(_memory(c), m, n, ldc)[...] = op(a, opa, m, k, lda) @ op(b, opb, k, n, ldb)


class HostGemm:
    """The CuPy backend's matmul (`_Gemm`): its call arguments from `gemm_arguments`, computed as cuBLAS does."""

    def __init__(self, precision):
        self.precision, self.calls = precision, 0

    def __call__(self, a, b, out):
        if a.ndim != 2 or b.ndim != 2 or not out.flags.c_contiguous or a.dtype != out.dtype or b.dtype != out.dtype:
            return np.matmul(a, b, out=out)
        a, b = (x if x.flags.c_contiguous or x.flags.f_contiguous else np.ascontiguousarray(x) for x in (a, b))
        opb, opa, n, m, k, b, ldb, a, lda, ldc = gemm_arguments(a, b, out)
        cublas_gemm(opb, opa, n, m, k, b, ldb, a, lda, out, ldc)
        self.calls += 1
        return out


class HostCupy(NumpyBackend):
    """A backend that compiles the step as the CuPy backend does, on host arrays (see the module's docstring).
    make_kernel: the real CuPy backend's elementwise_kernel, where CuPy is installed."""

    name = "cupy-on-host"

    def __init__(self, make_kernel=None, on_variant=None):
        self.make_kernel, self.on_variant = make_kernel, on_variant
        self.kernels = []
        self.gemms = {}
        self.replays = []

    def elementwise_kernel(self, in_params, out_params, body, name, preamble):
        device = self.make_kernel(in_params, out_params, body, name, preamble) if self.make_kernel else None
        kernel = HostKernel(in_params, out_params, body, name, preamble, device)
        kernel.on_variant = self.on_variant
        self.kernels.append(kernel)
        return kernel

    def matmul_kernel(self, precision="fp32"):
        return self.gemms.setdefault(precision, HostGemm(precision))

    def graph_replay(self, parts, static_inputs):
        replay = EagerReplay(parts, static_inputs)
        self.replays.append(replay)
        return replay
