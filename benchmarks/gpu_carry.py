"""Pack what `benchmarks/gpu_check.sh` needs on a GPU machine that has a CUDA PyTorch but no package
index and no model hub, into one folder that travels with the checkout (default `.gpu/`, ignored by git):

    wheels/     srgrpo and every package it needs (test extra included) at the versions installed here
                (constraints.txt's), built for the GPU machine's Python, except torch and the compiled
                numerical packages any CUDA PyTorch image ships (EXPECTED_THERE)
    tokenizer/  the embedded model's tokenizer (the 1.5B benchmark model has random weights and
                this vocabulary; the embedded model's own package is too large to carry)
    data/       the shared-data files the checks read (the RewardBench pairs, MATH-500)

    .venv/bin/python benchmarks/gpu_carry.py [--out .gpu] [--python-version 3.12]

Run it where the package index is reachable, with srgrpo installed (`scripts/install.sh`). It prints
the folder's size: with the checkout it must stay under what the GPU machine accepts (64 MiB here).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
# A CUDA PyTorch image has these (or they are too large to carry): torch must stay the image's own
# CUDA build, and the rest are compiled packages whose installed version does not change what srgrpo
# computes. Everything else srgrpo imports travels, at the version CI runs.
EXPECTED_THERE = {
    "torch", "triton", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "contourpy", "kiwisolver",
    "fonttools", "pillow", "cycler", "pyparsing", "python-dateutil", "six", "sympy", "mpmath", "networkx",
    "aiohttp", "aiohappyeyeballs", "aiosignal", "multidict", "yarl", "frozenlist", "propcache", "attrs",
    "psutil", "pyyaml", "markupsafe", "jinja2", "setuptools", "pytest", "iniconfig", "pluggy", "pygments",
    "tzdata",
}
DATA_FILES = ["preference/rewardbench_offline.jsonl", "eval/math500_test.jsonl"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(root: str = "srgrpo", extras: frozenset = frozenset({"dev"})) -> dict[str, str]:
    """{name: installed version} of every distribution `root` (with `extras`) needs, here."""
    found: dict[str, set] = {}
    todo = [(root, set(extras))]
    while todo:
        name, wanted = todo.pop()
        key = normalise(name)
        if key in found and wanted <= found[key]:
            continue
        found[key] = found.get(key, set()) | wanted
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker and not any(requirement.marker.evaluate({"extra": extra})
                                              for extra in (wanted or {""})):
                continue
            todo.append((requirement.name, set(requirement.extras)))
    found.pop(normalise(root))
    return {name: metadata.version(name) for name in sorted(found)}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"], check=True)


def fetch_wheels(pins: list[str], wheels: Path, python_version: str) -> None:
    """Binary wheels for the GPU machine's Python, in one download; a package published only as a
    source archive is built here into a wheel, which must come out pure Python to fit that machine."""
    pip("download", "--no-deps", "--prefer-binary", "--python-version", python_version, "--implementation", "cp",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "-d", str(wheels), *pins)
    for source in [*wheels.glob("*.tar.gz"), *wheels.glob("*.zip")]:
        pip("wheel", "--no-deps", "-w", str(wheels), str(source))
        source.unlink()
    impure = [w.name for w in wheels.glob("*.whl") if w.name.endswith("-linux_x86_64.whl")]
    if impure:
        raise SystemExit(f"built here for this machine's Python, not the GPU machine's: {', '.join(impure)}")


def save_tokenizer(folder: Path) -> None:
    from srgrpo.models import load_model

    _, tokenizer = load_model(None, dtype="float32", device="cpu")
    tokenizer.save_pretrained(folder)


def copy_data(folder: Path) -> None:
    shared = Path(os.environ.get("SRGRPO_SHARED_DATA", REPO.parent / "shared" / "data"))
    for name in DATA_FILES:
        if not (shared / name).is_file():
            raise SystemExit(f"{shared / name} not found: set SRGRPO_SHARED_DATA to the shared data folder")
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared / name, folder / name)


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default %(default)s)")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    wheels = args.out / "wheels"
    wheels.mkdir(parents=True)
    pins = [f"{name}=={version}" for name, version in dependency_closure().items() if name not in EXPECTED_THERE]
    print(f"{len(pins)} packages for Python {args.python_version} -> {wheels}")
    fetch_wheels(pins, wheels, args.python_version)
    with tempfile.TemporaryDirectory() as build:
        pip("wheel", "--no-deps", "-w", build, str(REPO))  # srgrpo itself, from this checkout
        for built in Path(build).glob("srgrpo-*.whl"):
            shutil.move(str(built), wheels / built.name)
    save_tokenizer(args.out / "tokenizer")
    copy_data(args.out / "data")
    print(f"{args.out}: {size_mib(args.out):.1f} MiB "
          f"(wheels {size_mib(wheels):.1f}, tokenizer {size_mib(args.out / 'tokenizer'):.1f}, "
          f"data {size_mib(args.out / 'data'):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
