"""What every benchmark script shares: where the shared evaluation data lives."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The data folder beside the checkout, or wherever SRGRPO_SHARED_DATA points.
SHARED_DATA = Path(os.environ.get("SRGRPO_SHARED_DATA", REPO.parent / "shared" / "data"))
REWARDBENCH_OFFLINE = SHARED_DATA / "preference" / "rewardbench_offline.jsonl"

# Qwen2.5-1.5B-Instruct's architecture (from its published config.json), for GPU timing with random
# weights: the hub is out of reach here, and time and memory do not depend on the weights. The
# vocabulary is the embedded tokenizer's, so generated ids decode.
QWEN25_15B_NAME = "qwen2.5-1.5b-config"
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True)


def load_bench_model(name: str | None, dtype: str = "auto", device: str = "auto", tokenizer: str | None = None,
                     layers: int | None = None):
    """(model, tokenizer): `srgrpo.load_model(name)`, or for QWEN25_15B_NAME that architecture with
    random weights built directly on the device (a 1.5B model takes minutes to initialise on a CPU),
    cut to its first `layers` layers if given (a quick dry run), and the tokenizer saved in the
    folder `tokenizer` (default: the embedded model's)."""
    import torch

    from srgrpo.models import load_model, resolve_device, resolve_dtype

    if name != QWEN25_15B_NAME:
        if tokenizer is not None or layers is not None:
            raise SystemExit(f"--tokenizer and --layers go with --model {QWEN25_15B_NAME} only")
        return load_model(name, dtype=dtype, device=device)
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    if tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    else:
        _, tokenizer = load_model(None, dtype="float32", device="cpu")  # only its tokenizer is kept
    target = resolve_device(device)
    shape = {**QWEN25_15B, "num_hidden_layers": layers or QWEN25_15B["num_hidden_layers"]}
    config = Qwen2Config(vocab_size=len(tokenizer), **shape)
    torch.manual_seed(0)
    with torch.device(target):
        model = AutoModelForCausalLM.from_config(config, dtype=resolve_dtype(dtype, target))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer


def add_model_arguments(parser) -> None:
    """--model, --dtype, --device, --tokenizer, --layers: what `load_bench_model` takes, one
    definition for every benchmark."""
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct; "
                        f"{QWEN25_15B_NAME}: Qwen2.5-1.5B's architecture with random weights (GPU timing)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokenizer", default=None, help=f"with --model {QWEN25_15B_NAME}: a saved tokenizer's "
                        "folder (default: the embedded model's tokenizer)")
    parser.add_argument("--layers", type=int, default=None, help=f"with --model {QWEN25_15B_NAME}: only the "
                        "first N layers (a quick dry run of a benchmark on a CPU)")
