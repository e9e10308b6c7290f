"""Shared fixtures: a tiny Llama built from a config and a BPE tokenizer trained on the spot, so the
fast tests need no download and no embedded model; plus the markers: `slow` (skipped unless
--runslow) and `embedded` (needs the embedded model; `pytest -m "not embedded"` leaves those out, so
`pytest -m "not embedded"` without --runslow is the fast unit suite). Both are declared in pyproject.toml.

The device-sensitive tests run on `SRGRPO_TEST_DEVICE` (default cpu), or on `pytest --device cuda`:
the tiny model fixtures live there, and tests build their tensors on the model's device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The capital of France is Paris. The capital of Australia is Canberra.",
    "Add the numerators over a common denominator: 1/3 + 1/4 = 7/12.",
    "def add(a, b):\n    return a + b\n",
    "Cold rain on red leaves, the garden bows its wet head, summer slips away.",
    "Hello! How can I help you today? I am a helpful assistant.",
] * 20


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")
    parser.addoption("--device", default=None,
                     help="device of the models under test: cpu (default) or cuda; sets SRGRPO_TEST_DEVICE")


def pytest_configure(config):
    if config.getoption("--device"):
        os.environ["SRGRPO_TEST_DEVICE"] = config.getoption("--device")  # subprocesses see it too


def models_device():
    """The device the tests put models on (not named test_*: pytest would collect it)."""
    import torch

    return torch.device(os.environ.get("SRGRPO_TEST_DEVICE", "cpu"))


def shared_data_dir() -> Path:
    """The shared data (preference sets, evaluation sets): $SRGRPO_SHARED_DATA, else the `shared/data`
    folder beside the repository."""
    return Path(os.environ.get("SRGRPO_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def help_text(capsys, argv: list[str]) -> str:
    """What `srgrpo ARGV` (a --help request) prints, after checking that it exits 0."""
    from srgrpo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def fail_on_batch(monkeypatch, n: int) -> None:
    """Make the forward engine raise a simulated out-of-memory error on its n-th batch: a crash in
    the middle of a run."""
    from srgrpo.engine import ForwardEngine

    run, calls = ForwardEngine.run, []

    def dies_on_nth_batch(self, *args):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("out of memory (simulated)")
        return run(self, *args)

    monkeypatch.setattr(ForwardEngine, "run", dies_on_nth_batch)


# The prompts the scoring and judge tests pair with their responses: plain text, and a chat with a
# system message.
PROMPTS = [
    "What is the capital of France?",
    "Add 1/3 and 1/4.",
    [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "A haiku, please."}],
    "Write a Python function that adds two numbers.",
]


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_tokenizer(chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = chat_template
    return fast


def make_model(vocab_size: int, num_layers: int = 2, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval().to(models_device())


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def device():
    return models_device()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    return make_model(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tokenizer):
    """The tiny model and tokenizer saved as a normal folder, for load_model and the CLI."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(path)  # load_model(path) puts it back on the default device ("auto")
    tokenizer.save_pretrained(path)
    return path


# ------------------------------------------------------------------ serving and framework tests
# Prompt/response pairs the reward server and framework tests send; a module sets `PAIRS` to all of
# them or to the first four (SERVING_PAIRS[:4]), and `expected` scores that module's `PAIRS`.
SERVING_PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Add 1/3 and 1/4.", "Add the numerators over a common denominator: 1/3 + 1/4 = 7/12."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Write code.", "def add(a, b):\n    return a + b\n"),
    ("Write a haiku.", "Cold rain on red leaves, the garden bows its wet head, summer slips away."),
    ("Who are you?", "I am a helpful assistant."),
]


@pytest.fixture(scope="module")
def server(tiny_model, tokenizer):
    """`srgrpo serve` at its defaults on the tiny model, on a free loopback port."""
    from srgrpo.scoring import StableRankScorer
    from srgrpo.serving.server import RewardServer, ServeConfig

    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def expected(request, tiny_model, tokenizer):
    """Stable rank of the requesting module's `PAIRS` by the independent route (tests/references.py:
    transformers' forward, float64 SVD): what the server must answer."""
    import references

    return references.pair_stable_ranks(tiny_model, tokenizer, request.module.PAIRS)


# ------------------------------------------------------------------ stable-rank variants on matrices
def pad_batch(mats, front: int = 0):
    """Right-pad matrices to a batch (optionally also with `front` masked junk rows first):
    (batch, mask), the junk where masked large, so that it must not matter."""
    import torch

    width = max(m.shape[0] for m in mats) + front
    d = mats[0].shape[1]
    batch = torch.randn(len(mats), width, d) * 100
    mask = torch.zeros(len(mats), width, dtype=torch.bool)
    for i, m in enumerate(mats):
        batch[i, front : front + m.shape[0]] = m
        mask[i, front : front + m.shape[0]] = True
    return batch, mask


@pytest.fixture
def mats():
    """Four hidden-state-like matrices of 1-40 rows (a shared offset makes sigma_1 dominant, as in
    real hidden states)."""
    import torch

    g = torch.Generator().manual_seed(0)
    shapes = [(5, 16), (23, 16), (40, 16), (1, 16)]
    return [torch.randn(t, d, generator=g) + 2.0 * torch.randn(1, d, generator=g) for t, d in shapes]
