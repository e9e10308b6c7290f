#!/usr/bin/env bash
# Installs everything (scripts/install.sh: the locked versions of constraints.txt unless
# SRGRPO_UNLOCKED=1, then the `docs` extra), builds the documentation with `mkdocs build --strict`
# (a broken link, a missing page or an unreadable module fails here), then runs the test suite.
# Extra arguments go to pytest (e.g. --runslow for the slow tests as well). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --frameworks  # also .venv-frameworks, where the OpenRLHF and verl tests run
venv="${SRGRPO_VENV:-.venv}"
lock=()
[ "${SRGRPO_UNLOCKED:-0}" = 1 ] || [ ! -f constraints.txt ] || lock=(-c constraints.txt)
"$venv/bin/python" -m pip --disable-pip-version-check -q install "torch==2.13.0" -e ".[docs]" "${lock[@]}"
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict -d "$site"  # not --quiet: it hides the warnings strict counts
# OpenRLHF's and verl's tests run in their own venv (their declared dependencies conflict with
# srgrpo's: scripts/install.sh says why), the rest in srgrpo's; extra arguments go to both runs.
frameworks_tests=(tests/test_frameworks_openrlhf.py tests/test_frameworks_verl.py)
"$venv/bin/python" -m pytest "$@" "${frameworks_tests[@]/#/--ignore=}"
"${SRGRPO_FRAMEWORKS_VENV:-.venv-frameworks}/bin/python" -m pytest "$@" "${frameworks_tests[@]}"
