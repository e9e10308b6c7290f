#!/usr/bin/env bash
# Installs everything (scripts/install.sh: the locked versions of constraints.txt unless
# SRGRPO_UNLOCKED=1), then runs the test suite. Extra arguments go to pytest
# (e.g. --runslow for the slow tests as well). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
