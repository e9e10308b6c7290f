#!/usr/bin/env bash
# Refreshes constraints.txt, the lock that scripts/install.sh (and so scripts/test.sh and CI) installs
# by default: every distribution of the venv the suite passed in, at its exact version. Run it after
# a green `bash scripts/test.sh`, from the checkout, and commit the file:
#
#     bash scripts/lock.sh                        # the venv: $SRGRPO_VENV, else ./.venv
#
# Left out: srgrpo itself (installed from the checkout), pip/setuptools/wheel (the installer's own),
# anything installed from a folder or a VCS checkout (no index holds that version), and torch's
# platform specifics (nvidia-*, triton: a GPU machine's torch brings its own). Local build labels are
# dropped (torch==2.13.0+cpu -> torch==2.13.0), so the lock serves CPU and GPU machines alike.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SRGRPO_VENV:-.venv}"
python="$venv/bin/python"
[ -x "$python" ] || { echo "no venv at $venv: run scripts/install.sh first, or set SRGRPO_VENV" >&2; exit 1; }
"$python" - > constraints.txt.tmp <<'PY'
import importlib.metadata as md
import json
import re
import sys

SKIP = {"srgrpo", "pip", "setuptools", "wheel"}
PLATFORM = re.compile(r"^(nvidia-.*|triton|pytorch-triton.*|cuda-.*)$")
pins, left_out = {}, []
for dist in md.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    if name in SKIP or PLATFORM.match(name):
        continue
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        if "vcs_info" in info or info.get("dir_info") is not None:
            left_out.append(f"{name} ({info.get('url')})")
            continue
    pins[name] = dist.version.split("+", 1)[0]
torch = pins.get("torch")
if torch != "2.13.0":
    sys.exit(f"lock.sh: the venv has torch {torch}, srgrpo is tested with 2.13.0 (scripts/install.sh)")
print("# The versions the test suite passed with: scripts/install.sh installs exactly these (pip -c).")
print("# Refresh: bash scripts/lock.sh (after a green scripts/test.sh). Newest releases instead: SRGRPO_UNLOCKED=1.")
for name in sorted(pins):
    print(f"{name}=={pins[name]}")
for line in left_out:
    print(f"lock.sh: left out {line}: not from an index", file=sys.stderr)
PY
mv constraints.txt.tmp constraints.txt
echo "wrote constraints.txt ($(grep -c '==' constraints.txt) pins) from $venv" >&2
