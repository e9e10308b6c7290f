"""Free scoring during generation equals a fresh forward pass over prompt + response."""

import math
from collections import Counter

import pytest
import torch

import references
from srgrpo.generation import (SAMPLE_FEATURES, HFGenerator, Sampling, cut_at_stop, left_pad, prompt_token_ids,
                               reforward_features)
from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Add 1/3 and 1/4 please, and show the common denominator."}],
    [{"role": "user", "content": "Hello!"}],
]


def _fresh_stable_rank(model, prompt_ids, response_ids, layer="final_norm"):
    """SR of the response tokens from transformers' own unbatched forward and float64 SVD."""
    ids = prompt_ids + response_ids
    return references.span_stable_rank(model, ids, len(prompt_ids), len(ids), layer)


@pytest.mark.parametrize("layer", ["final_norm", "last_block", 1])
def test_free_scoring_matches_a_fresh_forward_pass(tiny_model, tokenizer, layer):
    generator = HFGenerator(tiny_model, tokenizer, ScoringOptions(layer=layer), batch_size=4)
    out = generator.generate(PROMPTS, n=3, sampling=Sampling(max_new_tokens=12), seed=1)
    assert [len(q) for q in out] == [3, 3, 3]
    flat = [(prompt_token_ids(tokenizer, m), s) for m, q in zip(PROMPTS, out) for s in q]
    reference = reforward_features(StableRankScorer(tiny_model, tokenizer, layer=layer),
                                   [p for p, _ in flat], [s.token_ids for _, s in flat])
    scored = 0
    for (prompt_ids, sample), ref in zip(flat, reference):
        if not sample.token_ids:
            assert math.isnan(sample.features["stable_rank"])
            continue
        scored += 1
        for name, value in sample.features.items():
            assert value == pytest.approx(ref[name], rel=1e-4, abs=1e-5), name
        by_hand = _fresh_stable_rank(tiny_model, prompt_ids, sample.token_ids, layer)
        assert sample.features["stable_rank"] == pytest.approx(by_hand, rel=1e-4)
    assert scored >= 6
    # The batch mixes prompt lengths (left padding) and responses that stop early or run to the cap.
    assert len({len(p) for p, _ in flat}) == 3


def test_free_scoring_honours_the_window_and_full_span(tiny_model, tokenizer):
    options = ScoringOptions(span="full", max_length=30)
    generator = HFGenerator(tiny_model, tokenizer, options, batch_size=8)
    out = generator.generate(PROMPTS, n=2, sampling=Sampling(max_new_tokens=20), seed=3)
    flat = [(prompt_token_ids(tokenizer, m), s) for m, q in zip(PROMPTS, out) for s in q]
    reference = reforward_features(StableRankScorer(tiny_model, tokenizer, options),
                                   [p for p, _ in flat], [s.token_ids for _, s in flat])
    assert any(len(p) + len(s.token_ids) > 30 for p, s in flat)  # some rows are cut by the window
    for (_, sample), ref in zip(flat, reference):
        assert set(sample.features) == set(SAMPLE_FEATURES)
        for name in SAMPLE_FEATURES:  # every feature, the prompt-reading ones too
            assert sample.features[name] == pytest.approx(ref[name], rel=1e-4, abs=1e-6, nan_ok=True), name


def test_left_truncation_scores_the_last_tokens_of_the_window(tiny_model, tokenizer):
    """A left cut drops the prompt's start, which the generator's own states cannot do without (its
    positions count from the uncut start): the candidates are scored as a fresh sequence holding the
    last 24 ids, the reference here being transformers' forward over exactly that window."""
    options = ScoringOptions(max_length=24, truncation_side="left")
    out = HFGenerator(tiny_model, tokenizer, options, batch_size=8).generate(
        PROMPTS, n=2, sampling=Sampling(max_new_tokens=16), seed=5)
    flat = [(prompt_token_ids(tokenizer, m), s) for m, q in zip(PROMPTS, out) for s in q]
    cut = 0
    for prompt_ids, sample in flat:
        ids = prompt_ids + sample.token_ids
        if not sample.token_ids:
            assert math.isnan(sample.features["stable_rank"])
            continue
        window = ids[-24:]
        cut += len(ids) > 24
        expected = references.span_stable_rank(tiny_model, window, len(window) - min(len(sample.token_ids), 24),
                                               len(window))
        assert sample.features["stable_rank"] == pytest.approx(expected, rel=1e-4)
    assert cut >= 3  # the window really cuts samples (their prompts alone hold more than a few tokens)


def test_sampling_is_seeded_and_greedy_is_deterministic(tiny_model, tokenizer):
    generator = HFGenerator(tiny_model, tokenizer, batch_size=4)
    a = generator.generate(PROMPTS, n=2, sampling=Sampling(max_new_tokens=8), seed=7)
    b = generator.generate(PROMPTS, n=2, sampling=Sampling(max_new_tokens=8), seed=7)
    assert [[s.token_ids for s in q] for q in a] == [[s.token_ids for s in q] for q in b]
    greedy = generator.generate(PROMPTS, n=5, sampling=Sampling(max_new_tokens=8, greedy=True), seed=0)
    assert [len(q) for q in greedy] == [1, 1, 1]
    # Greedy in a batch equals greedy alone: left padding does not change the answer.
    alone = generator.generate(PROMPTS[1:2], n=1, sampling=Sampling(max_new_tokens=8, greedy=True), seed=0)
    assert alone[0][0].token_ids == greedy[1][0].token_ids


def test_reforward_route_and_bad_settings(tiny_model, tokenizer):
    free = HFGenerator(tiny_model, tokenizer, batch_size=4).generate(PROMPTS, 2, Sampling(max_new_tokens=8), seed=2)
    again = HFGenerator(tiny_model, tokenizer, batch_size=4, scoring="reforward").generate(
        PROMPTS, 2, Sampling(max_new_tokens=8), seed=2)
    for q_free, q_again in zip(free, again):
        for s, t in zip(q_free, q_again):
            assert s.token_ids == t.token_ids
            assert s.features["stable_rank"] == pytest.approx(t.features["stable_rank"], rel=1e-4, nan_ok=True)
    bare = HFGenerator(tiny_model, tokenizer, batch_size=4, scoring="none").generate(
        PROMPTS, 2, Sampling(max_new_tokens=8), seed=2)
    assert [[s.token_ids for s in q] for q in bare] == [[s.token_ids for s in q] for q in free]
    assert all(s.features == {} for q in bare for s in q)
    with pytest.raises(ValueError, match="scoring"):
        HFGenerator(tiny_model, tokenizer, scoring="psychic")
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        Sampling(max_new_tokens=0)


def test_left_pad_ends_every_prompt_at_the_last_column_and_masks_the_padding():
    ids, attention = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_cut_at_stop_keeps_the_ids_before_the_first_stop_and_says_whether_it_found_one():
    assert cut_at_stop([4, 9, 2, 9], {9, 2}) == ([4], True)
    assert cut_at_stop([4, 5], {9}) == ([4, 5], False)
    assert cut_at_stop([9], {9}) == ([], True)


def _generate_reference(model, generator, prompt_ids, max_new_tokens, **decoding):
    """transformers' own `generate` over the same left-padded batch, cut at the generator's stop ids."""
    ids, attention = left_pad(prompt_ids, generator.pad_id)
    out = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                         pad_token_id=generator.pad_id, eos_token_id=sorted(generator.stop_ids), **decoding)
    return [cut_at_stop(generated, generator.stop_ids)[0] for generated in out[:, ids.shape[1]:].tolist()]


def test_rows_that_stop_leave_the_batch_and_free_scores_stay_with_their_rows(tiny_model, tokenizer):
    """A stop id that the samples emit now and then makes rows stop at different steps, so rows and
    their cache entries leave the batch mid-run; free scoring must still equal a fresh forward pass
    for every row (a cache or state misaligned by the pruning would not)."""
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=12)
    generator = HFGenerator(tiny_model, tokenizer, batch_size=8)
    first = [s for q in generator.generate(PROMPTS, n=3, sampling=sampling, seed=11) for s in q]
    generator.stop_ids = {Counter(t for s in first for t in s.token_ids).most_common(1)[0][0]}
    out = [s for q in generator.generate(PROMPTS, n=3, sampling=sampling, seed=11) for s in q]
    assert any(s.finished for s in out) and not all(s.finished for s in out)
    assert len({len(s.token_ids) for s in out if s.finished}) > 1  # they stopped at different steps
    prompt_ids = [prompt_token_ids(tokenizer, m) for m in PROMPTS for _ in range(3)]
    fresh = reforward_features(StableRankScorer(tiny_model, tokenizer), prompt_ids, [s.token_ids for s in out])
    for sample, ref in zip(out, fresh):
        assert all(t not in generator.stop_ids for t in sample.token_ids)
        for name in SAMPLE_FEATURES:
            assert sample.features[name] == pytest.approx(ref[name], rel=1e-4, abs=1e-6, nan_ok=True), name


def test_sampling_draws_what_generate_draws_until_a_row_stops(tiny_model, tokenizer):
    """Same seed, warpers and batch: every draw equals `generate`'s up to and including the first
    step at which a row stops (after that the batches differ in size, so the random streams part)."""
    sampling = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=12)
    generator = HFGenerator(tiny_model, tokenizer, batch_size=8, scoring="none")
    out = [s for q in generator.generate(PROMPTS, n=2, sampling=sampling, seed=7) for s in q]
    prompt_ids = [prompt_token_ids(tokenizer, m) for m in PROMPTS for _ in range(2)]
    torch.manual_seed(7 * 1_000_003)  # the generator's seed for its first batch
    reference = _generate_reference(tiny_model, generator, prompt_ids, 12, do_sample=True, temperature=0.7,
                                    top_p=0.9, top_k=0)
    first_stop = min((len(s.token_ids) for s in out if s.finished), default=sampling.max_new_tokens)
    assert first_stop >= 2  # the comparison covers several draws
    for sample, ref in zip(out, reference):
        assert sample.token_ids[:first_stop + 1] == ref[:first_stop + 1]
