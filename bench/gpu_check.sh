#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU, where CuPy, PyTorch and nvcc are preinstalled and there is NO
# internet:  bash bench/gpu_check.sh   (from anywhere; set OUT=/some/dir to keep logs and gpu_bench.json there)
#
#   1. puts this checkout on PYTHONPATH (no pip install: nothing can be downloaded there)
#   2. prints nvidia-smi, nvcc and the Python / NumPy / CuPy / PyTorch versions
#   3. runs the GPU part of the test suite:  python -m pytest tests -m gpu -ra -q
#      (missing pytest / hypothesis / jax are reported and worked around, never fatal)
#   3b. runs tests/cuda/test_cuda_compile.py (every fused kernel compiled by NVRTC) with this machine's CuPy, time allowing
#   4. runs the GPU benchmark:  python bench/gpu.py [--json $OUT/gpu_bench.json]  (bpmagic graph replay and
#      eager vs PyTorch eager and CUDA-graph replay at xor, digits, mnist, wide; the GEMM floor at wide)
#   5. stays under 5 minutes overall (each step runs under `timeout` with what is left of the budget)
#
# Without a GPU it says "GPU checks skipped: no GPU" and exits 0 at once.
# Exit status: 0 when every check that ran passed (or there is no GPU), 1 otherwise.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOTAL_S=${GPU_CHECK_TOTAL_S:-290}   # overall budget in seconds (kept under 5 minutes)
START=$SECONDS
left() { echo $(( TOTAL_S - (SECONDS - START) )); }
say() { echo "==> $*"; }

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-$(command -v python || command -v python3 || true)}
if [ -z "$PY" ]; then
    echo "GPU checks skipped: no python on PATH" >&2
    exit 1
fi
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; fi

# -- is there a GPU? -------------------------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1; then
    say "no nvidia-smi on PATH"
    echo "GPU checks skipped: no GPU"
    exit 0
fi
if ! timeout 30 nvidia-smi -L >/dev/null 2>&1; then
    say "nvidia-smi is installed but finds no usable GPU:"
    timeout 30 nvidia-smi -L 2>&1 | head -5
    echo "GPU checks skipped: no GPU"
    exit 0
fi

# -- 2. what is here ---------------------------------------------------------------------------------------------------
say "nvidia-smi"
timeout 30 nvidia-smi
say "nvcc"
if command -v nvcc >/dev/null 2>&1; then nvcc --version | tail -2; else echo "nvcc: not on PATH"; fi
say "python and libraries ($PY)"
timeout 120 "$PY" - <<'EOF'
import importlib, platform, sys
print(f"python {platform.python_version()} ({sys.executable})")
for mod in ("numpy", "cupy", "torch", "pytest", "hypothesis", "jax", "bpmagic"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod:10s} {getattr(m, '__version__', '?'):12s} {getattr(m, '__file__', '')}")
    except Exception as e:
        print(f"{mod:10s} MISSING      ({type(e).__name__}: {e})")
try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"cupy sees {n} GPU(s): {props['name'].decode() if isinstance(props['name'], bytes) else props['name']}, "
          f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, driver {cupy.cuda.runtime.driverGetVersion()}")
    print("cupy smoke test: sum(arange(10)) =", int(cupy.arange(10).sum()))
except Exception as e:
    print(f"cupy cannot use the GPU: {type(e).__name__}: {e}")
try:
    import torch
    print(f"torch cuda available: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda})" if torch.cuda.is_available() else ""))
except Exception:
    pass
EOF

if ! timeout 60 "$PY" -c 'import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() < 1)' >/dev/null 2>&1; then
    echo "FAIL: there is a GPU but CuPy cannot use it (see above); the GPU tests and the GPU benchmark need CuPy." >&2
    exit 1
fi

status=0
summary=()

# -- 3. the GPU tests --------------------------------------------------------------------------------------------------
if ! "$PY" -c 'import pytest' >/dev/null 2>&1; then
    say "pytest is not installed here: skipping the test suite (the benchmark still runs)"
    summary+=("tests: SKIPPED (pytest missing)")
else
    missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("hypothesis", "jax") if importlib.util.find_spec(m) is None))
EOF
)
    if [ -n "$missing" ]; then
        say "missing here: $missing; test modules that import them fail to collect, the rest still run"
    fi
    t=$(( $(left) - 150 )); [ "$t" -gt 150 ] && t=150          # keep >= 150 s for the benchmark
    if [ "$t" -lt 30 ]; then t=30; fi
    say "pytest tests -m gpu -ra -q   (timeout ${t}s)"
    log=${OUT:+$OUT/pytest_gpu.log}
    # --continue-on-collection-errors: a module that needs a missing package must not stop the GPU tests
    timeout --kill-after=10 "$t" "$PY" -m pytest tests -m gpu -ra -q -p no:cacheprovider \
        --continue-on-collection-errors 2>&1 | tee "${log:-/dev/null}"
    rc=${PIPESTATUS[0]}
    case "$rc" in
        0) summary+=("tests: PASSED") ;;
        5) summary+=("tests: none selected (no test is marked gpu)") ;;
        124|137) summary+=("tests: TIMED OUT after ${t}s"); status=1 ;;
        *) summary+=("tests: FAILED (pytest exit $rc)"); status=1 ;;
    esac
fi

# -- 3b. the NVRTC check of every fused kernel, with this machine's CuPy (no environment to install here) -------------
major=$(timeout 60 "$PY" -c 'import cupy; print(cupy.cuda.runtime.runtimeGetVersion() // 1000)' 2>/dev/null || true)
need='import importlib.util as u; print(" ".join(m for m in ("pytest", "hypothesis", "jax", "IPython") if not u.find_spec(m)))'
missing=$("$PY" -c "$need" 2>/dev/null)
t=$(( $(left) - 150 )); [ "$t" -gt 120 ] && t=120
if [ -n "$missing" ] || [ -z "$major" ]; then
    summary+=("cuda compile: SKIPPED (missing: ${missing:-the CUDA version of CuPy})")
elif [ "$t" -lt 60 ]; then
    summary+=("cuda compile: SKIPPED (out of time)")
else
    say "pytest tests/cuda/test_cuda_compile.py with CUDA $major   (timeout ${t}s)"
    log=${OUT:+$OUT/pytest_cuda_compile.log}
    BPMAGIC_CUDA_MAJORS=$major "BPMAGIC_CUDA${major}_PYTHON=$PY" timeout --kill-after=10 "$t" \
        "$PY" -m pytest tests/cuda/test_cuda_compile.py -ra -q -p no:cacheprovider 2>&1 | tee "${log:-/dev/null}"
    rc=${PIPESTATUS[0]}
    case "$rc" in
        0) summary+=("cuda compile: PASSED") ;;
        124|137) summary+=("cuda compile: TIMED OUT after ${t}s"); status=1 ;;
        *) summary+=("cuda compile: FAILED (pytest exit $rc)"); status=1 ;;
    esac
fi

# -- 4. the benchmark on the GPU ---------------------------------------------------------------------------------------
t=$(( $(left) - 5 ))
if [ "$t" -lt 30 ]; then
    say "not enough time left for the benchmark (${t}s)"
    summary+=("benchmark: SKIPPED (out of time)"); status=1
else
    # 4 sizes × 4 implementations × --seconds of timing, plus compiling: halve it when time is short
    seconds=4; [ "$t" -lt 170 ] && seconds=2
    args=(bench/gpu.py --seconds "$seconds")
    [ -n "${OUT:-}" ] && args+=(--json "$OUT/gpu_bench.json")
    say "python ${args[*]}   (timeout ${t}s)"
    log=${OUT:+$OUT/gpu_bench.txt}
    timeout --kill-after=10 "$t" "$PY" "${args[@]}" 2>&1 | tee "${log:-/dev/null}"
    rc=${PIPESTATUS[0]}
    case "$rc" in
        0) summary+=("benchmark: OK${OUT:+ ($OUT/gpu_bench.json)}") ;;
        124|137) summary+=("benchmark: TIMED OUT after ${t}s"); status=1 ;;
        *) summary+=("benchmark: FAILED (exit $rc)"); status=1 ;;
    esac
fi

say "summary ($(( SECONDS - START ))s)"
printf '  %s\n' "${summary[@]}"
exit "$status"
