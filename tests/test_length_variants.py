"""The length-robust stable rank a feature uses (issue 13: `metrics.prompt_projected_stable_rank`,
the feature `stable_rank_prompt_adjusted`, `srgrpo.length_robust`): float64 SVD references, padding
and batch invariance, NaN cases, and the property it exists for. The variants the study weighed and
did not register are tested with the study (tests/test_study_length.py)."""

from __future__ import annotations

import math

import pytest
import torch

import numpy as np
import references
from conftest import pad_batch
from references import stable_rank as sr_ref

from srgrpo import metrics


@pytest.mark.parametrize("k", [0, 1, 3])
def test_prompt_projected_matches_reference(mats, k):
    g = torch.Generator().manual_seed(3)
    for m in mats:
        p = torch.randn(7, m.shape[1], generator=g, dtype=torch.float64)
        _, _, vh = torch.linalg.svd(p, full_matrices=False)
        v = vh[:k].T
        ref = sr_ref(m.double() - (m.double() @ v) @ v.T)
        got = float(metrics.prompt_projected_stable_rank(m, None, p, None, dtype=torch.float64, k=k))
        assert got == pytest.approx(ref, rel=1e-7)
        got = float(metrics.prompt_projected_stable_rank(m, None, p, None, dtype=torch.float64, k=k, length_exponent=0.3))
        assert got == pytest.approx(ref / m.shape[0] ** 0.3, rel=1e-7)


def test_prompt_shorter_than_k_removes_only_its_rows(mats):
    m = mats[2]
    p = torch.randn(2, m.shape[1], dtype=torch.float64)
    _, _, vh = torch.linalg.svd(p, full_matrices=False)
    ref = sr_ref(m.double() - (m.double() @ vh.T) @ vh)
    got = float(metrics.prompt_projected_stable_rank(m, None, p, None, dtype=torch.float64, k=8))
    assert got == pytest.approx(ref, rel=1e-7)


def _prompt_variant(prompts, prompt_mask):
    return lambda h, m: metrics.prompt_projected_stable_rank(h, m, prompts, prompt_mask, torch.float64, k=2,
                                                             length_exponent=0.2)


def test_padded_batch_equals_one_by_one(mats):
    prompts = [torch.randn(t, 16, dtype=torch.float64) for t in (3, 9, 1, 5)]
    pb, pm = pad_batch([p.float() for p in prompts], front=2)
    hb, hm = pad_batch(mats, front=3)
    batch = _prompt_variant(pb, pm)(hb, hm)
    assert batch.shape == (len(mats),)
    for i, m in enumerate(mats):
        single = metrics.prompt_projected_stable_rank(m, None, prompts[i].float(), None, torch.float64, k=2,
                                                      length_exponent=0.2)
        assert float(batch[i]) == pytest.approx(float(single), rel=1e-7, nan_ok=True)


def test_nan_cases(mats):
    good = mats[1]
    zero = torch.zeros_like(good)
    bad = good.clone()
    bad[2, 3] = float("nan")
    hb, hm = pad_batch([good, zero, bad])
    none_real = hm.clone()
    none_real[0] = False
    prompts, pmask = pad_batch([torch.randn(4, 16)] * 3)
    fn = _prompt_variant(prompts, pmask)
    out = fn(hb, hm)
    assert torch.isfinite(out[0])
    assert torch.isnan(out[1]) and torch.isnan(out[2])
    assert torch.isnan(fn(hb, none_real)[0])
    # an unscorable prompt removes nothing: plain SR
    nan_prompt = torch.full((1, 4, 16), float("nan"))
    got = metrics.prompt_projected_stable_rank(good.unsqueeze(0), None, nan_prompt, None, torch.float64, k=2)
    assert float(got[0]) == pytest.approx(sr_ref(good), rel=1e-9)
    # a response inside the prompt's span projects to zero: NaN, not a crash
    inside = metrics.prompt_projected_stable_rank(good[:3], None, good[:3], None, torch.float64, k=3)
    assert torch.isnan(inside)


def test_prompt_projection_removes_the_shared_direction():
    """A response made of one direction the prompt also carries plus small noise has SR ~1; with that
    direction projected out, what is left is the noise's (much higher) SR."""
    g = torch.Generator().manual_seed(4)
    d = 32
    u = torch.randn(d, generator=g, dtype=torch.float64)
    prompt = 10 * u + 0.01 * torch.randn(6, d, generator=g, dtype=torch.float64)
    resp = 10 * u + torch.randn(40, d, generator=g, dtype=torch.float64)
    plain = float(metrics.stable_rank(resp, dtype=torch.float64))
    projected = float(metrics.prompt_projected_stable_rank(resp, None, prompt, None, torch.float64, k=1))
    assert plain < 1.5 < 5 < projected


def test_bad_arguments():
    h = torch.randn(4, 8)
    with pytest.raises(ValueError):
        metrics.prompt_projected_stable_rank(h, None, torch.randn(3, 9), None, k=1)
    with pytest.raises(ValueError):
        metrics.prompt_projected_stable_rank(h, None, torch.randn(3, 8), None, k=-1)


# ---------------------------------------------------------------------------------------------
# srgrpo.length_robust: the registered variants on a tiny model

PAIRS = [("What is 2+2?", "It is 4, because two and two make four."),
         ("Say hello.", "Hello! How can I help you today? I am happy to help."),
         ("Write code.", "def add(a, b):\n    return a + b\n"),
         ("Why?", "ok")]


def _direct(model, tokenizer, exponent):
    """The feature computed one pair at a time straight from the model's hidden states."""
    from srgrpo.features import PROMPT_DIRECTIONS
    from srgrpo.scoring import StableRankScorer

    scorer = StableRankScorer(model, tokenizer, min_span_tokens=0)
    out = []
    for e in scorer.encode(*zip(*PAIRS)):
        ids = torch.tensor([e.input_ids], device=model.device)
        with torch.no_grad():
            hs = model.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
        h, p = hs[e.start:e.end], hs[1:e.response_start]
        out.append(float(metrics.prompt_projected_stable_rank(h[None], None, p[None], None, torch.float32,
                                                              k=PROMPT_DIRECTIONS, length_exponent=exponent)[0]))
    return out


def test_prompt_adjusted_feature_matches_one_by_one_in_the_scorer_and_free_scoring(tiny_model, tokenizer):
    from srgrpo.scoring import StableRankScorer

    # min_span_tokens=0: the feature on the response's own rows (the short-span rule is tested in test_short_span.py)
    scorer = StableRankScorer(tiny_model, tokenizer, batch_size=3, length_exponent=0.2, min_span_tokens=0)
    items = sorted(scorer.iter_features(*zip(*PAIRS), ["stable_rank_prompt_adjusted", "stable_rank"]),
                   key=lambda item: item.index)
    got = [item.values["stable_rank_prompt_adjusted"] for item in items]
    assert got == pytest.approx(_direct(tiny_model, tokenizer, 0.2), rel=1e-4)
    assert all(math.isfinite(v) for v in got)
    # The exponent divides by T^beta: beta = 0 gives the undivided value.
    plain = StableRankScorer(tiny_model, tokenizer, batch_size=3, length_exponent=0.0, min_span_tokens=0)
    undivided = sorted(plain.iter_features(*zip(*PAIRS), ["stable_rank_prompt_adjusted"]), key=lambda i: i.index)
    for item, base in zip(items, undivided):
        assert item.values["stable_rank_prompt_adjusted"] == pytest.approx(
            base.values["stable_rank_prompt_adjusted"] / item.response_tokens ** 0.2, rel=1e-5)


def test_prompt_adjusted_feature_unscorable_pairs_are_nan(tiny_model, tokenizer):
    from srgrpo.features import PROMPT_DIRECTIONS
    from srgrpo.options import ScoringOptions
    from srgrpo.scoring import StableRankScorer

    scorer = StableRankScorer(tiny_model, tokenizer)
    items = sorted(scorer.iter_features(["Hi", "Hi"], ["   ", "Hello there"], ["stable_rank_prompt_adjusted"]),
                   key=lambda i: i.index)
    assert math.isnan(items[0].values["stable_rank_prompt_adjusted"])
    # the scorable pair at the defaults: a short response, so its span is extended backwards (short-span rule)
    ids, start, end = references.pair_ids(tokenizer, "Hi", "Hello there")
    h = references.hidden_states(tiny_model, ids)
    span_start, span_end = references.short_span(start, end)
    expected = references.prompt_projected(h[span_start:span_end], h[1:start], PROMPT_DIRECTIONS,
                                           ScoringOptions().length_exponent)
    assert items[1].values["stable_rank_prompt_adjusted"] == pytest.approx(expected, rel=1e-4)


def test_fit_growth_exponent_recovers_a_power_law():
    from srgrpo.length_robust import fit_growth_exponent

    data = {n: [3.0 * n**0.25 * f for f in (0.9, 1.0, 1.1)] for n in (4, 16, 64, 256)}
    assert fit_growth_exponent(data) == pytest.approx(0.25, abs=1e-3)
    with pytest.raises(ValueError):
        fit_growth_exponent({8: [1.0]})


def test_fit_length_exponent_gives_a_finite_exponent(tiny_model, tokenizer):
    from srgrpo import length_robust
    from srgrpo.options import ScoringOptions
    from srgrpo.scoring import StableRankScorer

    scorer = StableRankScorer(tiny_model, tokenizer)
    text = "one two three four five six seven eight nine ten eleven twelve " * 3
    responses = [text[: 30 + 10 * i] for i in range(6)]
    beta = length_robust.fit_length_exponent(scorer, ["Count."] * 6, responses, prefix_lengths=(2, 4, 8, 16))
    # By hand: the feature (no division) on each response's first n rows, then the least-squares slope
    # of the mean log value against log n over the lengths that at least 5 responses reach.
    from srgrpo.features import PROMPT_DIRECTIONS

    per_length = {n: [] for n in (2, 4, 8, 16)}
    for response in responses:
        ids, start, end = references.pair_ids(tokenizer, "Count.", response)
        h = references.hidden_states(tiny_model, ids)
        for n in per_length:
            if n <= end - start:
                per_length[n].append(references.prompt_projected(h[start:start + n], h[1:start], PROMPT_DIRECTIONS))
    kept = [n for n, values in per_length.items() if len(values) >= 5]
    assert len(kept) >= 2
    slope = np.polyfit(np.log(kept), [np.mean(np.log(per_length[n])) for n in kept], 1)[0]
    assert beta == pytest.approx(slope, rel=1e-3)
    assert ScoringOptions().length_exponent == 0.147  # the embedded model's, from studies/length/study.py
