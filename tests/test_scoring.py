import math

import pytest
import torch
import references
from conftest import PROMPTS, make_tokenizer

from srgrpo.metrics import stable_rank
from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer
from srgrpo.text import FALLBACK_TEMPLATE, encode_pair, render_pair

RESPONSES = [
    "The capital of France is Paris.",
    " Over a common denominator: 1/3 + 1/4 = 4/12 + 3/12 = 7/12.",
    "Cold rain on red leaves,\nthe garden bows its wet head,\nsummer slips away.",
    "def add(a, b):\n    return a + b\n",
]


def reference_sr(model, tokenizer, prompt, response, layer=-1, span="response"):
    """SR from the full model's output_hidden_states and float64 SVD, on the scorer's own tokens."""
    e = encode_pair(tokenizer, prompt, response, ScoringOptions(span=span))
    with torch.no_grad():
        out = model(torch.tensor([e.input_ids], device=model.device), output_hidden_states=True)
    h = out.hidden_states[layer][0, e.start : e.end].double()
    s = torch.linalg.svdvals(h)
    return (s.square().sum() / s[0].square()).item()


def test_response_span_is_exactly_the_response_tokens(tokenizer):
    for prompt, response in zip(PROMPTS, RESPONSES):
        e = encode_pair(tokenizer, prompt, response, ScoringOptions(min_span_tokens=0))  # the rule off: see test_short_span.py
        text, char_start, _, _ = render_pair(tokenizer, prompt, response)
        assert tokenizer.decode(e.input_ids[e.start : e.end]) == response
        assert tokenizer.decode(e.input_ids[: e.start]) == text[:char_start]
        # Right after the response comes the template's end-of-turn token.
        assert e.input_ids[e.end] == tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert e.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_string_prompt_is_a_user_message(tokenizer):
    a = encode_pair(tokenizer, "Hi", "Hello there.", ScoringOptions())
    b = encode_pair(tokenizer, [{"role": "user", "content": "Hi"}], "Hello there.", ScoringOptions())
    assert (a.input_ids, a.start, a.end) == (b.input_ids, b.start, b.end)


def test_fallback_template_without_chat_template():
    tok = make_tokenizer(chat_template=None)
    text, start, end, templated = render_pair(tok, "What is 2+2?", " 4")
    assert not templated
    assert text == FALLBACK_TEMPLATE.format(prompt="What is 2+2?", response=" 4") == "What is 2+2?\n\nAnswer: 4"
    assert text[start:end] == " 4"
    e = encode_pair(tok, "What is 2+2?", " 4", ScoringOptions(min_span_tokens=0))
    assert tok.decode(e.input_ids[e.start : e.end]) == " 4"
    # Message lists are joined by blank lines.
    text, *_ = render_pair(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "Yo")
    assert text == "Be brief.\n\nHi\n\nAnswer:Yo"


def test_full_span_covers_the_whole_templated_sequence(tokenizer):
    e = encode_pair(tokenizer, PROMPTS[0], RESPONSES[0], ScoringOptions(span="full"))
    assert (e.start, e.end) == (0, len(e.input_ids))


def test_scores_match_full_model_hidden_states_and_svd(tiny_model, tokenizer):
    scorer = StableRankScorer(tiny_model, tokenizer)
    got = scorer.score(PROMPTS, RESPONSES)
    for value, p, r in zip(got, PROMPTS, RESPONSES):
        assert value == pytest.approx(reference_sr(tiny_model, tokenizer, p, r), rel=1e-4)
    full = StableRankScorer(tiny_model, tokenizer, span="full").score(PROMPTS, RESPONSES)
    for value, p, r in zip(full, PROMPTS, RESPONSES):
        assert value == pytest.approx(reference_sr(tiny_model, tokenizer, p, r, span="full"), rel=1e-4)
    assert full != got


@pytest.mark.parametrize("layer, index", [(0, 0), (1, 1), (2, -1), (-1, -1), ("final_norm", -1), (-3, 0)])
def test_layer_selection_matches_hidden_states_tuple(tiny_model, tokenizer, layer, index):
    got = StableRankScorer(tiny_model, tokenizer, layer=layer).score(PROMPTS[:2], RESPONSES[:2])
    for value, p, r in zip(got, PROMPTS, RESPONSES):
        assert value == pytest.approx(reference_sr(tiny_model, tokenizer, p, r, layer=index), rel=1e-4)


def test_last_block_is_the_raw_block_output_before_the_norm(tiny_model, tokenizer):
    e = encode_pair(tokenizer, PROMPTS[0], RESPONSES[0], ScoringOptions())
    captured = {}
    handle = tiny_model.model.layers[-1].register_forward_hook(lambda m, i, o: captured.update(h=o))
    with torch.no_grad():
        out = tiny_model(torch.tensor([e.input_ids], device=tiny_model.device), output_hidden_states=True)
    handle.remove()
    raw = captured["h"][0, e.start : e.end]
    # The final-norm route equals norm(raw); the last_block route equals raw itself.
    torch.testing.assert_close(tiny_model.model.norm(raw), out.hidden_states[-1][0, e.start : e.end])
    got = StableRankScorer(tiny_model, tokenizer, layer="last_block").score(PROMPTS[:1], RESPONSES[:1])[0]
    assert got == pytest.approx(stable_rank(raw, dtype=torch.float64).item(), rel=1e-4)
    assert got != pytest.approx(StableRankScorer(tiny_model, tokenizer).score(PROMPTS[:1], RESPONSES[:1])[0], rel=1e-3)


def test_no_lm_head_and_no_layers_after_the_chosen_one(tiny_model, tokenizer):
    def forbid(*_):
        raise AssertionError("this module must not run")

    handles = [tiny_model.lm_head.register_forward_hook(forbid)]
    try:
        assert all(math.isfinite(v) for v in StableRankScorer(tiny_model, tokenizer).score(PROMPTS, RESPONSES))
        handles.append(tiny_model.model.layers[1].register_forward_hook(forbid))
        handles.append(tiny_model.model.norm.register_forward_hook(forbid))
        assert math.isfinite(StableRankScorer(tiny_model, tokenizer, layer=1).score(PROMPTS[:1], RESPONSES[:1])[0])
    finally:
        for h in handles:
            h.remove()


def test_batch_invariance(tiny_model, tokenizer):
    """A pair's score does not depend on what else is in its batch (padding, batch size)."""
    alone = [StableRankScorer(tiny_model, tokenizer, batch_size=1).score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)]
    long_prompt, long_response = "Tell me everything. " * 20, "Here is a long answer about Paris. " * 15
    for batch_size in (2, 3, 8):
        scorer = StableRankScorer(tiny_model, tokenizer, batch_size=batch_size)
        mixed = scorer.score(PROMPTS + [long_prompt], RESPONSES + [long_response])
        for a, b in zip(alone, mixed):
            assert b == pytest.approx(a, rel=1e-4)


def test_batches_group_similar_lengths(tiny_model, tokenizer):
    scorer = StableRankScorer(tiny_model, tokenizer, batch_size=2)
    responses = ["short", "x " * 100, "y", "z " * 90]
    encoded = scorer.encode(["q"] * 4, responses)
    assert scorer.engine.plan(encoded) == [[1, 3], [0, 2]]


def test_truncation_right_and_left(tiny_model, tokenizer):
    response = "The capital of France is Paris. " * 40
    right = encode_pair(tokenizer, "Q?", response, ScoringOptions(max_length=64))
    assert right.truncated and len(right.input_ids) == 64 and right.end == 64 and right.start < 64
    left = encode_pair(tokenizer, "Q?", response, ScoringOptions(max_length=64, truncation_side="left"))
    full = encode_pair(tokenizer, "Q?", response, ScoringOptions(max_length=10_000))
    assert left.truncated and left.input_ids == full.input_ids[-64:]
    assert left.start == 0 and left.input_ids[left.end] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Scoring a truncated pair equals scoring its kept tokens.
    scores = StableRankScorer(tiny_model, tokenizer, max_length=64).iter_scores(["Q?"], [response])
    result = next(scores)
    assert result.truncated and result.n_tokens == right.end - right.start
    assert result.value == pytest.approx(references.span_stable_rank(tiny_model, right.input_ids, right.start,
                                                                     right.end), rel=1e-5)
    left_value = StableRankScorer(tiny_model, tokenizer, max_length=64, truncation_side="left").score(["Q?"], [response])
    assert left_value[0] == pytest.approx(references.span_stable_rank(tiny_model, left.input_ids, left.start,
                                                                      left.end), rel=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_long_texts_are_cut_to_the_window_before_tokenising_without_changing_the_window(tokenizer, side, monkeypatch):
    """A text longer than the window can reach is cut to that reach before it is tokenised (a 4 MiB
    text took 627 MiB and 5 s whole, see response_token_spans): the encoded window, span and flags
    are those of the whole text, for long prompts, long responses, runs of spaces and wide characters."""
    import random

    import srgrpo.text as text

    rng = random.Random(0)
    words = "the capital of France is Paris , 3.14 \\boxed{42} \u6f22\u5b57 \U0001F600 \n\n ====".split(" ")
    cases = []
    for _ in range(12):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 600)))
        response = " ".join(rng.choice(words) for _ in range(rng.randint(0, 900)))
        if rng.random() < 0.3:
            response += " " * rng.randint(1, 3000) + "end"
        cases.append((prompt, response))
    options = ScoringOptions(max_length=64, truncation_side=side)
    reach = (64 + text.REACH_MARGIN_TOKENS) * text.chars_per_token(tokenizer)
    cut = text.encode_pairs(tokenizer, [p for p, _ in cases], [r for _, r in cases], options)
    monkeypatch.setattr(text, "REACH_MARGIN_TOKENS", 10**9)  # no cut: each text tokenised whole
    whole = text.encode_pairs(tokenizer, [p for p, _ in cases], [r for _, r in cases], options)
    assert cut == whole
    assert sum(len(render_pair(tokenizer, p, r)[0]) > reach for p, r in cases) >= 6  # most were cut


def test_a_tokenizer_that_drops_characters_is_tokenised_whole_when_the_cut_would_not_fill_the_window():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()  # whitespace makes no token at all
    tok = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]")
    response = "b " * 100 + " " * 20_000 + "a"  # the last reach of characters holds one token
    encoded = encode_pair(tok, "a", response, ScoringOptions(max_length=16, truncation_side="left"))
    assert encoded.truncated and encoded.input_ids == [1] * 15 + [0]


def test_prompt_longer_than_the_window_gives_nan_with_a_warning(tiny_model, tokenizer):
    scorer = StableRankScorer(tiny_model, tokenizer, max_length=32)
    with pytest.warns(UserWarning, match="no response token inside the 32-token window"):
        values = scorer.score(["long prompt " * 50, "Hi"], ["Paris.", "Hello!"])
    assert math.isnan(values[0])
    assert values[1] == pytest.approx(reference_sr(tiny_model, tokenizer, "Hi", "Hello!"), rel=1e-5)
    # Cutting on the left keeps the response: the last 32 tokens, the response's among them.
    left = StableRankScorer(tiny_model, tokenizer, max_length=32, truncation_side="left")
    full = encode_pair(tokenizer, "long prompt " * 50, "Paris.", ScoringOptions(max_length=10_000))
    window, shift = full.input_ids[-32:], len(full.input_ids) - 32
    expected = references.span_stable_rank(tiny_model, window, full.start - shift, full.end - shift)
    assert left.score(["long prompt " * 50], ["Paris."])[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "response, reason",
    [("", "empty"), ("   \n\t", "empty"), ("<|im_end|>", "only of special tokens"), ("<|im_end|><|im_start|>", "only of special tokens")],
)
def test_unscorable_responses_give_nan_with_a_warning(tiny_model, tokenizer, response, reason):
    scorer = StableRankScorer(tiny_model, tokenizer)
    with pytest.warns(UserWarning, match=reason):
        values = scorer.score(["Hi", "Hi"], [response, "Hello!"])
    assert math.isnan(values[0]) and math.isfinite(values[1])


def test_non_string_fields_raise_naming_the_pair(tiny_model, tokenizer):
    scorer = StableRankScorer(tiny_model, tokenizer)
    with pytest.raises(TypeError, match="pair 1: response must be a string"):
        scorer.score(["a", "b"], ["ok", 3])
    with pytest.raises(TypeError, match="pair 0: prompt must be"):
        scorer.score([None], ["ok"])
    with pytest.raises(TypeError, match="pair 0: prompt must be"):
        scorer.score([[{"role": "user"}]], ["ok"])
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer.score(["a", "b"], ["ok"])


@pytest.mark.parametrize("bad", ["nan", "zero"])
def test_nan_or_zero_hidden_states_give_nan_for_that_pair_only(tiny_model, tokenizer, bad):
    scorer = StableRankScorer(tiny_model, tokenizer, batch_size=8)
    clean = scorer.score(PROMPTS, RESPONSES)

    def corrupt(_module, _inputs, output):  # the longest pair sits first in the batch
        output = output.clone()
        output[0] = float("nan") if bad == "nan" else 0.0
        return output

    handle = tiny_model.model.norm.register_forward_hook(corrupt)
    try:
        longest = max(range(4), key=lambda i: len(scorer.encode([PROMPTS[i]], [RESPONSES[i]])[0].input_ids))
        with pytest.warns(UserWarning, match="NaN or inf" if bad == "nan" else "all zero"):
            values = scorer.score(PROMPTS, RESPONSES)
    finally:
        handle.remove()
    for i, (v, c) in enumerate(zip(values, clean)):
        assert math.isnan(v) if i == longest else v == pytest.approx(c, rel=1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"span": "tokens"}, "span must be"),
        ({"layer": "middle"}, "layer must be"),
        ({"max_length": 0}, "max_length"),
        ({"batch_size": -1}, "batch_size"),
        ({"truncation_side": "top"}, "truncation_side"),
        ({"compute_dtype": "float16"}, "compute_dtype"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        ScoringOptions(**options)


def test_layer_out_of_range_and_numeric_strings(tiny_model, tokenizer):
    with pytest.raises(ValueError, match="out of range"):
        StableRankScorer(tiny_model, tokenizer, layer=3)
    assert ScoringOptions(layer="-2").layer == -2


def test_iter_scores_reports_tokens_and_progress(tiny_model, tokenizer, capsys):
    results = list(StableRankScorer(tiny_model, tokenizer).iter_scores(PROMPTS, RESPONSES, progress=True))
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    for r in results:
        e = encode_pair(tokenizer, PROMPTS[r.index], RESPONSES[r.index], ScoringOptions())
        assert r.n_tokens == e.end - e.start and not r.truncated and r.warning is None
    assert "scoring" in capsys.readouterr().err


def test_logit_features_match_the_full_model_logits(tiny_model, tokenizer):
    from srgrpo.features import names_from

    LOGIT_FEATURES = names_from("logits")

    items = sorted(StableRankScorer(tiny_model, tokenizer, span="full").iter_features(PROMPTS, RESPONSES, LOGIT_FEATURES),
                   key=lambda r: r.index)
    for item, p, r in zip(items, PROMPTS, RESPONSES):
        e = encode_pair(tokenizer, p, r, ScoringOptions())
        with torch.no_grad():
            logits = tiny_model(torch.tensor([e.input_ids], device=tiny_model.device)).logits[0].double()
        # logits at t predict token t+1: the response tokens [start, end) come from [start-1, end-1)
        # (the response's own tokens, whatever span the hidden-state features score)
        z = logits[e.response_start - 1 : e.response_end - 1]
        logp = z.log_softmax(-1)
        targets = torch.tensor(e.input_ids[e.response_start : e.response_end], device=logp.device)
        assert item.values["mean_logprob"] == pytest.approx(logp.gather(1, targets[:, None]).mean().item(), rel=1e-4)
        kl_uniform = (-math.log(z.shape[-1]) - logp.mean(-1)).mean().item()
        assert item.values["self_certainty"] == pytest.approx(kl_uniform, rel=1e-4)
        assert item.values["mean_entropy"] == pytest.approx(-(logp.exp() * logp).sum(-1).mean().item(), rel=1e-4)
        assert item.response_tokens == e.response_end - e.response_start


def test_features_and_layer_sweep_share_one_forward_per_batch(tiny_model, tokenizer):
    from srgrpo.metrics import effective_rank

    scorer = StableRankScorer(tiny_model, tokenizer, batch_size=2)
    calls = []
    handle = tiny_model.model.embed_tokens.register_forward_hook(lambda *a: calls.append(1))
    try:
        items = list(scorer.iter_features(PROMPTS, RESPONSES, ("stable_rank", "effective_rank", "mean_logprob"),
                                          sweep_layers=[0, 1, 2]))
    finally:
        handle.remove()
    assert len(calls) == 2  # 4 pairs, batch size 2
    items.sort(key=lambda r: r.index)
    for layer in (0, 1, 2):
        per_layer = StableRankScorer(tiny_model, tokenizer, layer=layer).score(PROMPTS, RESPONSES)
        for item, value in zip(items, per_layer):
            assert item.layer_values[layer] == pytest.approx(value, rel=1e-5)
    assert [i.values["stable_rank"] for i in items] == pytest.approx([i.layer_values[2] for i in items], rel=1e-6)
    for item, p, r in zip(items, PROMPTS, RESPONSES):
        e = encode_pair(tokenizer, p, r, ScoringOptions())
        with torch.no_grad():
            h = tiny_model(torch.tensor([e.input_ids], device=tiny_model.device), output_hidden_states=True).hidden_states[-1][0, e.start : e.end]
        assert item.values["effective_rank"] == pytest.approx(effective_rank(h).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown feature"):
        list(scorer.iter_features(PROMPTS, RESPONSES, ("vibes",)))
