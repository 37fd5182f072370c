#!/usr/bin/env bash
# The GPU check, one command, at most 8 minutes by its own timeouts (4 + 2 + 2):
#  1. python -m dta_lib.bench --device cuda: the LIF race on [16, 6, 128, 32, 32] (the release's loop, the loop under
#     torch.compile, the library's kernel; fp32 and bf16) with spike mismatches, peak memory and bandwidth; writes
#     reports/bench/bench_gpu_check.json and .png.
#  2. one smoke training run on the GPU in each autocast precision (bf16, fp16) through the CLI, channels_last:
#     the CUDA training path end to end, into the run folder reports/bench/gpu_train_<precision>/ (run.json names
#     the LIF backend that ran).
#  3. the CUDA tests of the LIF kernels, Triton vs the loop in fp32, bf16, fp16 (reports/bench/gpu_tests.xml).
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
timeout 240 "$PY" -m dta_lib.bench --device cuda --lif-T 6 --tag gpu_check --out reports/bench || status=1
for precision in bf16 fp16; do
    rm -rf "reports/bench/gpu_train_$precision"
    timeout 60 "$PY" -m dta_lib train --dataset synthetic --preset smoke --device cuda --precision "$precision" \
        --channels-last --workers 0 --out "reports/bench/gpu_train_$precision" || status=1
done
timeout 120 "$PY" -m pytest tests/test_snn_kernels.py -q -p no:cacheprovider -k "cuda or triton" \
    --junitxml=reports/bench/gpu_tests.xml || status=1
echo "gpu_check: done (status $status); results in reports/bench/" >&2
exit $status
