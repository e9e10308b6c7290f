"""What the GPU check takes along to a machine with a CUDA PyTorch and nothing else: the packages it
installs there, and the 1.5B benchmark model built from a carried tokenizer."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmark scripts import their shared module as `common`

import common  # noqa: E402
import gpu_carry  # noqa: E402


def test_the_carried_packages_are_what_srgrpo_and_its_tests_import_at_the_versions_installed_here():
    closure = gpu_carry.dependency_closure()
    assert {"trl", "transformers", "peft", "math-verify", "fastapi", "datasets"} <= set(closure)
    assert "pytest" in closure  # the dev extra: the suite runs there
    assert "srgrpo" not in closure and "mkdocs" not in closure  # itself (built from the checkout); the docs extra
    assert all(closure[name] == metadata.version(name) for name in closure)
    # Transitive needs come along too: huggingface-hub's HTTP client, math-verify's LaTeX parser.
    assert {"httpx2", "latex2sympy2-extended", "antlr4-python3-runtime"} <= set(closure)


def test_the_benchmark_model_takes_a_saved_tokenizer_and_fewer_layers(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    model, loaded = common.load_bench_model(common.QWEN25_15B_NAME, dtype="float32", device="cpu",
                                            tokenizer=str(tmp_path), layers=1)
    assert len(loaded) == len(tokenizer) == model.config.vocab_size
    assert model.config.num_hidden_layers == len(model.model.layers) == 1
    assert model.config.hidden_size == common.QWEN25_15B["hidden_size"]
    with pytest.raises(SystemExit, match="--tokenizer and --layers go with"):
        common.load_bench_model("some/model", tokenizer=str(tmp_path))


@pytest.mark.slow
@pytest.mark.embedded
def test_the_gpu_check_runs_end_to_end_on_the_cpu_in_a_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "passed" in (tmp_path / "pytest_cpu.log").read_text()
    assert json.loads((tmp_path / "bench_scoring.json").read_text())
    assert json.loads((tmp_path / "bench_bon.json").read_text())
