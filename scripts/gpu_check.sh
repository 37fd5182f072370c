#!/usr/bin/env bash
# The GPU check, one command, at most 8 minutes by its own timeouts (6 + 2):
#  1. python -m dta_lib.bench --gpu: the LIF race with bandwidth, the full-width ms_resnet18 + DTA training step
#     (batch 64, 32x32, T=6, bf16 and fp16 AMP, channels_last, cudnn.benchmark, eager and compiled) against the
#     release's computation with peak memory; the backend of each row. Writes reports/bench/gpu_check.json (after
#     every section) and .png.
#  2. the CUDA tests of the LIF kernels, Triton vs the loop in fp32, bf16, fp16 (reports/bench/gpu_tests.xml).
# Without a CUDA GPU: one line on stderr, exit 2.  PY=python to use another interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch; nothing measured" >&2
    exit 2
fi
mkdir -p reports/bench
status=0
timeout 360 "$PY" -m dta_lib.bench --gpu --out reports/bench || status=1
timeout 120 "$PY" -m pytest tests/test_snn_kernels.py -q -p no:cacheprovider -k "cuda or triton" \
    --junitxml=reports/bench/gpu_tests.xml || status=1
echo "gpu_check: done (status $status); results in reports/bench/gpu_check.json" >&2
exit $status
