"""The CuPy backend: arrays on an NVIDIA GPU. The only module in bpmagic that imports cupy."""
from __future__ import annotations

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


# cuBLAS constants (cublas_api.h, library_types.h)
_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_CUDA_R_32F, _CUDA_R_64F = 0, 1
_COMPUTE = {("float32", "fp32"): 68, ("float32", "tf32"): 77, ("float32", "bf16"): 75,  # CUBLAS_COMPUTE_32F[...]
            ("float64", "fp32"): 70, ("float64", "tf32"): 70, ("float64", "bf16"): 70}  # CUBLAS_COMPUTE_64F
_GEMM_DEFAULT = -1


def _load_cublas():
    import ctypes
    import glob
    import os

    names = ["libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"]
    try:  # the nvidia-cublas wheels that cupy-cudaXXx pulls in
        import nvidia.cublas as pkg

        names = sorted(glob.glob(os.path.join(list(pkg.__path__)[0], "lib", "libcublas.so*")), reverse=True) + names
    except ImportError:
        pass
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise RuntimeError("bpmagic could not load libcublas for its capturable matmul")


class _Gemm:
    """C = A @ B for 2-d arrays through cublasGemmEx on CuPy's own handle.

    CuPy refuses its cuBLAS wrappers during stream capture (cupy issue 6290: the check is in its setStream
    wrapper). cuBLAS itself can be captured if the handle's stream and workspace are set before capture begins,
    so we call cublasGemmEx through ctypes with host scalars: the same kernels CuPy would launch, now capturable.
    Row-major C = A B is computed as column-major Cᵀ = Bᵀ Aᵀ; a transposed view (F-contiguous) flips its op flag
    instead of being copied.
    """

    def __init__(self, cupy, precision):
        import ctypes

        self.cupy, self.ctypes, self.precision = cupy, ctypes, precision
        self.lib = _load_cublas()
        self.handle = cupy.cuda.device.get_cublas_handle()
        # a workspace of our own: cuBLAS must not allocate during capture
        self.workspace = cupy.empty(32 << 20, dtype=cupy.uint8)
        self.lib.cublasSetWorkspace_v2(ctypes.c_void_p(self.handle), ctypes.c_void_p(self.workspace.data.ptr),
                                       ctypes.c_size_t(self.workspace.nbytes))
        self.stream = None

    def use_stream(self, stream):
        self.stream = stream
        self.lib.cublasSetStream_v2(self.ctypes.c_void_p(self.handle), self.ctypes.c_void_p(stream.ptr))

    def _operand(self, x):
        """(pointer, op, leading dimension) of `x` seen column-major."""
        if x.flags.c_contiguous:
            return x.data.ptr, _CUBLAS_OP_N, max(1, x.shape[1])
        if x.flags.f_contiguous:
            return x.data.ptr, _CUBLAS_OP_T, max(1, x.shape[0])
        x = self.cupy.ascontiguousarray(x)
        self._keep.append(x)
        return x.data.ptr, _CUBLAS_OP_N, max(1, x.shape[1])

    def __call__(self, a, b, out):
        ct = self.ctypes
        if a.ndim != 2 or b.ndim != 2 or not out.flags.c_contiguous or a.dtype != out.dtype or b.dtype != out.dtype:
            return self.cupy.matmul(a, b, out=out)
        self._keep = []
        current = self.cupy.cuda.get_current_stream()
        if self.stream is None or current.ptr != self.stream.ptr:  # never during capture: bound beforehand
            self.use_stream(current)
        m, k = a.shape
        n = b.shape[1]
        pa, opa, lda = self._operand(a)
        pb, opb, ldb = self._operand(b)
        dtype = str(out.dtype)
        scalar = ct.c_float if dtype == "float32" else ct.c_double
        one, zero = scalar(1.0), scalar(0.0)
        rtype = _CUDA_R_32F if dtype == "float32" else _CUDA_R_64F
        status = self.lib.cublasGemmEx(
            ct.c_void_p(self.handle), opb, opa, n, m, k, ct.byref(one), ct.c_void_p(pb), rtype, ldb,
            ct.c_void_p(pa), rtype, lda, ct.byref(zero), ct.c_void_p(out.data.ptr), rtype, n,
            _COMPUTE[(dtype, self.precision)], _GEMM_DEFAULT)
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
