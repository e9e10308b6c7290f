"""The short-span rule (ScoringOptions.min_span_tokens) and the defined SR of a single token."""

import math

import pytest
import torch

from srgrpo import metrics
from srgrpo.generation import HFGenerator, Sampling, prompt_token_ids, reforward_features
from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer
from srgrpo.text import encode_ids, short_span_start


def test_one_row_has_sr_exactly_one_in_every_dtype_and_batch():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        h = torch.randn(3, 5, 16) * 100
        mask = torch.zeros(3, 5, dtype=torch.bool)
        mask[0, 2] = True  # one real row, not the first
        mask[1, :1] = True
        mask[2, :4] = True
        sr = metrics.stable_rank(h, mask, dtype)
        assert sr[0].item() == 1.0 and sr[1].item() == 1.0  # exactly, not 1 +- rounding
        assert sr[2].item() > 1.0
        assert metrics.stable_rank(h[0, 2:3], None, dtype).item() == 1.0
        assert metrics.stable_rank(h[0, 2:3], None, dtype, normalize_rows=True).item() == 1.0
        assert math.isnan(metrics.stable_rank(h[0, 2:3], None, dtype, center=True).item())  # centred: nothing left


@pytest.mark.parametrize("start, end, n, expected", [
    (10, 12, 0, 10),  # off
    (10, 12, 5, 7),  # 2 tokens -> 5 tokens ending with the response
    (10, 20, 5, 10),  # long enough already
    (3, 4, 8, 1),  # never reaches position 0
    (0, 1, 8, 0),  # a response at position 0 keeps its span
])
def test_short_span_start(start, end, n, expected):
    assert short_span_start(start, end, n) == expected


def test_the_rule_extends_only_short_responses(tiny_model, tokenizer):
    options = ScoringOptions(min_span_tokens=6)
    prompt = tokenizer("Tell me about Paris, please.")["input_ids"]
    short = encode_ids(tokenizer, prompt, [5], options)
    assert (short.start, short.end, short.context_tokens) == (len(prompt) - 5, len(prompt) + 1, 5)
    assert (short.response_start, short.response_end) == (len(prompt), len(prompt) + 1)
    long = encode_ids(tokenizer, prompt, list(range(5, 15)), options)
    assert long.context_tokens == 0 and long.start == len(prompt)
    full = encode_ids(tokenizer, prompt, [5], ScoringOptions(span="full", min_span_tokens=6))
    assert full.context_tokens == 0 and full.start == 0  # span=full is already the whole sequence
    # The scored value is SR of exactly those rows of a fresh forward pass.
    scorer = StableRankScorer(tiny_model, tokenizer, options)
    item = next(scorer.iter_encoded_features([short]))
    ids = torch.tensor([short.input_ids], device=scorer.device)
    states = scorer.hidden_states(ids, torch.ones_like(ids))[0, short.start:short.end]
    assert item.values["stable_rank"] == pytest.approx(metrics.stable_rank(states).item(), rel=1e-5)
    assert item.context_tokens == 5 and item.n_tokens == 6 and item.response_tokens == 1
    # Off, the same 1-token response scores exactly 1.
    off_options = ScoringOptions(min_span_tokens=0)
    off = next(StableRankScorer(tiny_model, tokenizer, off_options).iter_encoded_features(
        [encode_ids(tokenizer, prompt, [5], off_options)]))
    assert off.values["stable_rank"] == 1.0


def test_free_scoring_applies_the_rule_like_a_fresh_forward(tiny_model, tokenizer):
    options = ScoringOptions(min_span_tokens=12)
    generator = HFGenerator(tiny_model, tokenizer, options, batch_size=2)
    prompts = [[{"role": "user", "content": "Say a word."}], [{"role": "user", "content": "Name a city."}]]
    samples = generator.generate(prompts, 2, Sampling(max_new_tokens=3), seed=0)
    flat = [s for group in samples for s in group]
    ids = [prompt_token_ids(tokenizer, m) for m in prompts for _ in range(2)]
    reference = reforward_features(StableRankScorer(tiny_model, tokenizer, options), ids, [s.token_ids for s in flat])
    for sample, ref in zip(flat, reference):
        if not sample.token_ids:
            continue
        assert sample.context_tokens == 12 - len(sample.token_ids)
        assert sample.features["stable_rank"] == pytest.approx(ref["stable_rank"], rel=1e-4)


def test_the_server_worker_applies_the_rule_and_says_so(tiny_model, tokenizer):
    from srgrpo.serving.worker import BatchingWorker, Job

    scorer = StableRankScorer(tiny_model, tokenizer, ScoringOptions(min_span_tokens=8))
    worker = BatchingWorker(scorer, batch_wait_s=0)
    job = Job(["the", "The capital of France is Paris, a city on the Seine river in the north."],
              ["Name a thing.", "Name a city."], responses_only=True)
    encoded = [worker.encode(job, i)[0] for i in range(2)]
    assert encoded[0].context_tokens == 7 and encoded[1].context_tokens == 0
    worker.submit(job)
    worker.start()
    worker.close()
    assert "short response: scored with the 7 token(s) before it" in job.warnings[0] and job.warnings[1] is None
    expected = {i.index: i.values["stable_rank"] for i in scorer.iter_encoded_features(encoded)}
    assert job.values == pytest.approx([expected[0], expected[1]], rel=1e-5)
    assert job.values[0] > 1.0
