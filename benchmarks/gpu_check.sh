#!/usr/bin/env bash
# The GPU checks of the forward engine in one run, for a CUDA machine (CI has none): the test suite on
# cuda, then bench_scoring and bench_bon on Qwen2.5-1.5B's architecture with random weights, bf16.
#
#   SRGRPO_SHARED_DATA=/path/to/shared/data bash benchmarks/gpu_check.sh [OUTPUT_DIR]
#
# Needs srgrpo's dependencies and the embedded model package (its tokenizer is used) installed in the
# running Python, and the shared data (bench_scoring reads rewardbench_offline.jsonl). Logs and JSON
# figures go to OUTPUT_DIR (default: $OUT, else benchmarks/results/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-benchmarks/results/gpu}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
    | tee "$out/device.txt" || exit 1
python -m pytest --device cuda -q -p no:cacheprovider 2>&1 | tee "$out/pytest_cuda.log"
python benchmarks/bench_scoring.py --config-model qwen2.5-1.5b-config --n-pairs 400 --batch-sizes 8,32 \
    --output "$out/bench_scoring.json" 2>&1 | tee "$out/bench_scoring.log"
python benchmarks/bench_bon.py --model qwen2.5-1.5b-config --questions 16 --n 8 --max-new-tokens 256 \
    --output "$out/bench_bon.json" 2>&1 | tee "$out/bench_bon.log"
