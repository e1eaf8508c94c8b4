"""The CuPy backend: arrays on an NVIDIA GPU. The only module in bpmagic that imports cupy."""
from __future__ import annotations

import ctypes

from .base import Backend

_HOW_TO_FIX = (
    "Install the GPU extra on a machine with an NVIDIA GPU and CUDA 12 or 13 drivers "
    "(`pip install 'bpmagic[gpu]'`), or use backend='numpy' (or 'auto', which falls back to NumPy)."
)


class CupyBackend(Backend):
    name = "cupy"
    install_hint = _HOW_TO_FIX

    @classmethod
    def installed(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("cupy") is not None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import cupy
        except ModuleNotFoundError:
            return "CuPy is not installed"
        except Exception as e:  # a CUDA library that fails to load
            return f"CuPy is not importable ({type(e).__name__}: {e})"
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "CuPy sees no GPU"
        except Exception as e:
            return f"CuPy cannot reach a GPU ({type(e).__name__}: {e})"
        return None

    def __init__(self):
        import cupy

        self.xp = cupy
        self._gemm = {}  # precision -> _Gemm, made on first use

    def to_numpy(self, x):
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    # -- compiled steps: fused kernels, a capturable matmul, CUDA graphs --------------------------------------------
    def elementwise_kernel(self, in_params, out_params, body, name, preamble):
        """One generated CUDA kernel for a fused run of elementwise equations (compiled once, cached by CuPy)."""
        return self.xp.ElementwiseKernel(in_params, out_params, body, name, preamble=preamble)

    def matmul_kernel(self, precision="fp32"):
        """A 2-d matmul `mm(a, b, out)` that calls cuBLAS directly, so it can be captured in a CUDA graph, with
        fp32, tf32 or bf16 math (fp32 accumulation in every case)."""
        if precision not in self._gemm:
            self._gemm[precision] = _Gemm(self.xp, precision)
        return self._gemm[precision]

    def graph_replay(self, parts, static_inputs):
        """Replay `parts` (functions of the static inputs) as CUDA graphs; see _GraphReplay."""
        replay = _GraphReplay(self.xp, parts, static_inputs)
        for gemm in self._gemm.values():
            gemm.use_stream(replay.stream)  # before capture begins: setting it during capture is refused
        return replay


# -- cuBLAS, called through ctypes ---------------------------------------------------------------------------------
# The C names and values of the constants the matmul passes (cublas_api.h, library_types.h), and the prototype of
# every function it calls, each parameter as (its C type, the ctypes type it is passed as). Both are checked against
# the real cublas_v2.h of CUDA 12 and 13 (tests/cuda/test_cublas_binding.py compiles them with the headers).
CUBLAS_CONSTANTS = {"CUBLAS_OP_N": 0, "CUBLAS_OP_T": 1, "CUDA_R_32F": 0, "CUDA_R_64F": 1, "CUBLAS_GEMM_DEFAULT": -1,
                    "CUBLAS_COMPUTE_32F": 68, "CUBLAS_COMPUTE_32F_FAST_TF32": 77, "CUBLAS_COMPUTE_32F_FAST_16BF": 75,
                    "CUBLAS_COMPUTE_64F": 70}
_P, _I = ctypes.c_void_p, ctypes.c_int
CUBLAS_FUNCTIONS = {  # name -> parameters; each returns a cublasStatus_t (an int)
    "cublasSetWorkspace_v2": [("cublasHandle_t", _P), ("void *", _P), ("size_t", ctypes.c_size_t)],
    "cublasSetStream_v2": [("cublasHandle_t", _P), ("cudaStream_t", _P)],
    "cublasGemmEx": [("cublasHandle_t", _P), ("cublasOperation_t", _I), ("cublasOperation_t", _I),
                     ("int", _I), ("int", _I), ("int", _I), ("const void *", _P),
                     ("const void *", _P), ("cudaDataType", _I), ("int", _I),
                     ("const void *", _P), ("cudaDataType", _I), ("int", _I),
                     ("const void *", _P), ("void *", _P), ("cudaDataType", _I), ("int", _I),
                     ("cublasComputeType_t", _I), ("cublasGemmAlgo_t", _I)],
}
_COMPUTE = {("float32", "fp32"): "CUBLAS_COMPUTE_32F", ("float32", "tf32"): "CUBLAS_COMPUTE_32F_FAST_TF32",
            ("float32", "bf16"): "CUBLAS_COMPUTE_32F_FAST_16BF", ("float64", "fp32"): "CUBLAS_COMPUTE_64F",
            ("float64", "tf32"): "CUBLAS_COMPUTE_64F", ("float64", "bf16"): "CUBLAS_COMPUTE_64F"}


def load_cublas():
    """libcublas, found by cuda-pathfinder as CuPy finds it (NVIDIA's wheels for CUDA 12 or 13, whose layouts differ,
    conda, or a system CUDA on the loader's path or under CUDA_PATH / CUDA_HOME), its functions given their
    prototypes."""
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        lib = ctypes.CDLL(load_nvidia_dynamic_lib("cublas").abs_path)
    except Exception as e:  # not installed, not found, or found but not loadable
        raise RuntimeError(
            f"bpmagic could not load libcublas for its capturable matmul ({type(e).__name__}: {e}). Install the "
            "cuBLAS of your CUDA: `pip install 'bpmagic[gpu]'` brings nvidia-cublas-cu12 for CUDA 12, "
            "`pip install 'bpmagic[gpu-cuda13]'` nvidia-cublas for CUDA 13; or set CUDA_PATH to a CUDA toolkit "
            "that has it.") from None
    for name, params in CUBLAS_FUNCTIONS.items():
        function = getattr(lib, name)
        function.argtypes = [ctype for _, ctype in params]
        function.restype = ctypes.c_int
    return lib


def gemm_arguments(a, b, out):
    """The arguments after the handle of the cublasGemmEx call computing out = a @ b for 2-d row-major arrays,
    (opB, opA, n, m, k, B, ldb, A, lda, ldc) with B and A the operands themselves: cuBLAS is column-major, so it
    computes outᵀ = bᵀ aᵀ; a transposed view (F-contiguous) flips its op flag instead of being copied."""
    m, k = a.shape
    n = b.shape[1]

    def operand(x):
        if x.flags.c_contiguous:
            return CUBLAS_CONSTANTS["CUBLAS_OP_N"], max(1, x.shape[1])
        return CUBLAS_CONSTANTS["CUBLAS_OP_T"], max(1, x.shape[0])  # F-contiguous: callers copy any other layout

    opa, lda = operand(a)
    opb, ldb = operand(b)
    return opb, opa, n, m, k, b, ldb, a, lda, max(1, n)


class _Gemm:
    """C = A @ B for 2-d arrays through cublasGemmEx on CuPy's own handle.

    CuPy refuses its cuBLAS wrappers during stream capture (cupy issue 6290: the check is in its setStream
    wrapper). cuBLAS itself can be captured if the handle's stream and workspace are set before capture begins,
    so we call cublasGemmEx through ctypes with host scalars: the same kernels CuPy would launch, now capturable.
    """

    def __init__(self, cupy, precision):
        self.cupy, self.precision = cupy, precision
        self.lib = load_cublas()
        self.handle = cupy.cuda.device.get_cublas_handle()
        # a workspace of our own: cuBLAS must not allocate during capture
        self.workspace = cupy.empty(32 << 20, dtype=cupy.uint8)
        self._check("cublasSetWorkspace_v2", self.lib.cublasSetWorkspace_v2(
            self.handle, self.workspace.data.ptr, self.workspace.nbytes))
        self.stream = None

    @staticmethod
    def _check(name, status):
        if status != 0:
            raise RuntimeError(f"{name} failed with cuBLAS status {status}")

    def use_stream(self, stream):
        self.stream = stream
        self._check("cublasSetStream_v2", self.lib.cublasSetStream_v2(self.handle, stream.ptr))

    def __call__(self, a, b, out):
        if a.ndim != 2 or b.ndim != 2 or not out.flags.c_contiguous or a.dtype != out.dtype or b.dtype != out.dtype:
            return self.cupy.matmul(a, b, out=out)
        # an operand that is neither C- nor F-contiguous is copied (kept alive until the call returns)
        a, b = (x if x.flags.c_contiguous or x.flags.f_contiguous else self.cupy.ascontiguousarray(x) for x in (a, b))
        current = self.cupy.cuda.get_current_stream()
        if self.stream is None or current.ptr != self.stream.ptr:  # never during capture: bound beforehand
            self.use_stream(current)
        opb, opa, n, m, k, b, ldb, a, lda, ldc = gemm_arguments(a, b, out)
        dtype = str(out.dtype)
        scalar = ctypes.c_float if dtype == "float32" else ctypes.c_double
        one, zero = scalar(1.0), scalar(0.0)
        rtype = CUBLAS_CONSTANTS["CUDA_R_32F" if dtype == "float32" else "CUDA_R_64F"]
        status = self.lib.cublasGemmEx(
            self.handle, opb, opa, n, m, k, ctypes.addressof(one), b.data.ptr, rtype, ldb,
            a.data.ptr, rtype, lda, ctypes.addressof(zero), out.data.ptr, rtype, ldc,
            CUBLAS_CONSTANTS[_COMPUTE[(dtype, self.precision)]], CUBLAS_CONSTANTS["CUBLAS_GEMM_DEFAULT"])
        if status != 0:
            raise RuntimeError(f"cublasGemmEx failed with status {status} for {a.shape} @ {b.shape}")
        return out


class _GraphReplay:
    """A compiled step as CUDA graphs: `parts` are functions of the same static input arrays; the first call
    captures each on a private stream, later calls copy the new inputs into the static arrays and relaunch.

    Between parts the host may look at results (the finiteness guard reads the loss and gradient sums, one
    synchronisation per step, which reading the loss needs anyway), so each part is its own graph.
    """

    def __init__(self, cupy, parts, static_inputs):
        self.cupy = cupy
        self.parts = parts
        self.static = static_inputs
        self.graphs = [None] * len(parts)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        # allocations inside captured CuPy calls must come from the stream-ordered pool
        cupy.cuda.set_allocator(cupy.cuda.MemoryAsyncPool().malloc)

    def load(self, inputs):
        """Copy this step's inputs (batch, hyperparameters) into the static arrays the graphs read."""
        with self.stream:
            for dst, src in zip(self.static, inputs):
                if dst is not src:
                    self.cupy.copyto(dst, src)

    def launch(self, i):
        graph = self.graphs[i]
        if graph is None:
            with self.stream:
                self.stream.begin_capture()
                try:
                    result = self.parts[i](*self.static)
                finally:
                    graph = self.graphs[i] = self.stream.end_capture()
            self.result = result
        graph.launch(self.stream)
        return self.result if i == len(self.parts) - 1 else None

    def synchronize(self):
        self.stream.synchronize()
