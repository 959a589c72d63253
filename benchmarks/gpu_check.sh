#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run: the `gpu` tests, the GPU benchmark (fp32 and half, fast
# mode included) and the fast-mode benchmark in half precision. Logs go to $OUT (or benchmarks/out/).
# Usage, from the repository root on a CUDA machine:  bash benchmarks/gpu_check.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
PY="${1:-${PYTHON:-venv/bin/python}}"
[[ -x "${PY}" ]] || PY=python3
LOGS="${OUT:-benchmarks/out}"
mkdir -p "${LOGS}"
export PYTHONUNBUFFERED=1
"${PY}" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 2)" || {
    echo "No CUDA GPU is visible to ${PY}; run this on a GPU machine." >&2
    exit 2
}
status=0
"${PY}" -m pytest -m gpu -q -p no:cacheprovider tests 2>&1 | tee "${LOGS}/gpu_tests.log" || status=1
"${PY}" -m benchmarks.bench_gpu 2>&1 | tee "${LOGS}/bench_gpu.jsonl" || status=1
"${PY}" -m benchmarks.bench_fast --device cuda --half 2>&1 | tee "${LOGS}/bench_fast_cuda.txt" || status=1
exit "${status}"
