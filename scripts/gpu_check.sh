#!/usr/bin/env bash
# One CUDA GPU, under 8 minutes: (1) the CUDA tests (Triton LIF vs the loop, model on GPU),
# (2) `python -m dta_lib.bench` on CUDA (AMP bf16 + channels_last for this library, the release as
# released), (3) one short training epoch with bf16 + channels_last. Everything lands in reports/bench/.
# Usage: scripts/gpu_check.sh            (PY=python to use another interpreter; DATASET=synthetic to
#                                          train without the offline Fashion-MNIST files)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=reports/bench
mkdir -p "$OUT"
status=0

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU visible to torch; nothing to do" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu_info.csv" 2>/dev/null || true

echo "== 1/3 CUDA tests (<= 3 min)"
timeout 180 "$PY" -m pytest tests/test_snn_kernels.py -q -p no:cacheprovider -k "cuda or triton" \
    --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log" || status=1

echo "== 2/3 benchmark, fp32 and AMP bf16, channels_last (<= 3 min)"
timeout 180 "$PY" -m dta_lib.bench --device cuda --precision fp32 bf16 --repeats 10 --tag cuda \
    2>&1 | tee "$OUT/gpu_bench.log" || status=1

echo "== 2b/3 LIF on a large input (bandwidth; <= 1 min)"
timeout 60 "$PY" -m dta_lib.bench --device cuda --precision fp32 bf16 --repeats 20 --tag cuda_lif_large \
    --skip-train --lif-T 6 --lif-shape 64 128 64 64 2>&1 | tee "$OUT/gpu_bench_lif_large.log" || status=1

echo "== 3/3 one short training epoch, bf16 + channels_last (<= 2 min)"
DATASET=${DATASET:-fashion-mnist}
if [ "$DATASET" = fashion-mnist ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    DATASET=synthetic  # the offline Fashion-MNIST package is not installed on this machine
fi
rm -rf "$OUT/gpu_train_smoke.tmp"
timeout 120 "$PY" -m dta_lib train --dataset "$DATASET" --preset smoke --epochs 1 --device cuda \
    --precision bf16 --channels-last --no-progress --out "$OUT/gpu_train_smoke.tmp" \
    2>&1 | tee "$OUT/gpu_train.log" || status=1
if [ -d "$OUT/gpu_train_smoke.tmp" ]; then
    rm -f "$OUT/gpu_train_smoke.tmp"/*.pt  # checkpoints are not results
    rm -rf "$OUT/gpu_train_smoke" && mv "$OUT/gpu_train_smoke.tmp" "$OUT/gpu_train_smoke"
fi

echo "gpu_check: done (status $status); results in $OUT/"
exit $status
