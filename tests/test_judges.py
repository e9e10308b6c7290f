import math
import warnings

import pytest
import torch
from conftest import PROMPTS, make_model, make_tokenizer

from srgrpo import judges
from srgrpo.judges import (
    IPO_TEMPLATE,
    SECTION_QUESTIONS,
    build_input,
    candidate_ids,
    ipo_scores,
    pairwise_preferences,
    pairwise_verdicts,
    pointwise_scores,
)

RESPONSES = [
    "The capital of France is Paris.",
    "Over a common denominator: 1/3 + 1/4 = 4/12 + 3/12 = 7/12.",
    "Cold rain on red leaves,\nthe garden bows its wet head,\nsummer slips away.",
    "",  # empty responses are still judged
]
OTHER = [
    "Paris.",
    "7/12",
    "Summer slips away.",
    "def add(a, b):\n    return a + b\n",
]


def judge_tokenizer(chat_template="default"):
    """The conftest BPE tokenizer plus single tokens for "Yes" and "No" (its corpus has neither)."""
    tok = make_tokenizer() if chat_template == "default" else make_tokenizer(chat_template)
    tok.add_tokens(["Yes", "No"])
    return tok


@pytest.fixture(scope="module")
def jtok():
    return judge_tokenizer()


@pytest.fixture(scope="module")
def jmodel(jtok):
    return make_model(len(jtok), seed=1)


def manual_label_logprobs(model, ids, groups):
    """log P(label) from the full model's logits at the last position (the naive route)."""
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.device)).logits[0, -1].double()
    logp = logits.log_softmax(-1)
    return torch.stack([logp[g].logsumexp(-1) for g in groups])


def ipo_input(tok, prompt, response, section="other", max_length=2048):
    build = lambda rs: IPO_TEMPLATE.format(prompt=judges.render_prompt(prompt), response=rs[0],
                                           question=SECTION_QUESTIONS[section])
    return build_input(tok, build, [response], max_length)


def test_section_questions_cover_rewardbench():
    from srgrpo.rewardbench.v1 import OTHER_SECTION, SECTIONS  # the one registry of section names

    assert set(SECTION_QUESTIONS) == {*SECTIONS, OTHER_SECTION}
    assert set(SECTION_QUESTIONS) == {"Chat", "Chat Hard", "Safety", "Reasoning", "other"}
    assert all(q.endswith("?") for q in SECTION_QUESTIONS.values())


def test_candidate_ids(jtok, tokenizer):
    assert candidate_ids(jtok, "Yes") == [jtok.convert_tokens_to_ids("Yes")]
    assert candidate_ids(tokenizer, "1") == sorted({tokenizer.encode(v, add_special_tokens=False)[0] for v in ("1", " 1")})
    with pytest.raises(ValueError, match=f"'Yes'.*{type(tokenizer).__name__}"):
        candidate_ids(tokenizer, "Yes")


def test_label_without_single_token_raises(tiny_model, tokenizer):
    # The plain conftest tokenizer spells "Yes" with two tokens in every variant.
    with pytest.raises(ValueError, match="'Yes'"):
        ipo_scores(tiny_model, tokenizer, PROMPTS[:1], RESPONSES[:1])


def test_ipo_matches_full_model_logits(jmodel, jtok):
    sections = ["Chat", "Reasoning", "Chat Hard", "Safety"]
    scores = ipo_scores(jmodel, jtok, PROMPTS, RESPONSES, sections, batch_size=3)
    groups = [candidate_ids(jtok, "Yes"), candidate_ids(jtok, "No")]
    for p, r, s, score in zip(PROMPTS, RESPONSES, sections, scores):
        x = ipo_input(jtok, p, r, s)
        assert x.problem is None and not x.truncated
        assert SECTION_QUESTIONS[s] in x.instruction and x.input_ids[-1] != jtok.pad_token_id
        expected = manual_label_logprobs(jmodel, x.input_ids, groups).softmax(-1)[0].item()
        assert 0.0 <= score <= 1.0
        assert score == pytest.approx(expected, abs=1e-5)


def test_sections_default_to_other_and_unknown_raises(jmodel, jtok):
    default = ipo_scores(jmodel, jtok, PROMPTS[:2], RESPONSES[:2])
    explicit = ipo_scores(jmodel, jtok, PROMPTS[:2], RESPONSES[:2], ["other", None])
    assert default == pytest.approx(explicit, abs=1e-6)
    with pytest.raises(ValueError, match="unknown section"):
        ipo_scores(jmodel, jtok, PROMPTS[:1], RESPONSES[:1], ["alpacaeval-easy"])
    with pytest.raises(TypeError, match="pair 0"):
        ipo_scores(jmodel, jtok, PROMPTS[:1], [None])


def test_chat_prompt_rendered_as_role_lines(jtok):
    x = ipo_input(jtok, PROMPTS[2], RESPONSES[2])
    assert "system: You are a poet.\nuser: A haiku, please." in x.instruction
    text = jtok.decode(x.input_ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")


def test_batch_invariance(jmodel, jtok):
    alone = ipo_scores(jmodel, jtok, PROMPTS[1:2], RESPONSES[1:2], batch_size=1)
    batched = ipo_scores(jmodel, jtok, PROMPTS, RESPONSES, batch_size=4)
    assert batched[1] == pytest.approx(alone[0], abs=1e-5)
    pw_alone = pointwise_scores(jmodel, jtok, PROMPTS[3:], RESPONSES[3:], batch_size=1)
    pw_batched = pointwise_scores(jmodel, jtok, PROMPTS, RESPONSES, batch_size=4)
    assert pw_batched[3] == pytest.approx(pw_alone[0], abs=1e-5)


def test_lm_head_sees_last_positions_only(jmodel, jtok):
    shapes = []
    handle = jmodel.get_output_embeddings().register_forward_hook(lambda m, inp, out: shapes.append(tuple(inp[0].shape)))
    try:
        ipo_scores(jmodel, jtok, PROMPTS, RESPONSES, batch_size=3)
    finally:
        handle.remove()
    assert sorted(shapes) == [(1, 64), (3, 64)]  # (B, d): one row per item, never (B, T, d)


def test_pointwise_expected_score_matches_manual(jmodel, jtok):
    scores = pointwise_scores(jmodel, jtok, PROMPTS, RESPONSES, batch_size=2)
    groups = [candidate_ids(jtok, str(k)) for k in range(1, 6)]
    for p, r, score in zip(PROMPTS, RESPONSES, scores):
        build = lambda rs, p=p: judges.POINTWISE_TEMPLATE.format(prompt=judges.render_prompt(p), response=rs[0])
        x = build_input(jtok, build, [r], 2048)
        probs = manual_label_logprobs(jmodel, x.input_ids, groups).softmax(-1)
        expected = (probs * torch.arange(1, 6, dtype=probs.dtype)).sum().item()
        assert 1.0 <= score <= 5.0
        assert score == pytest.approx(expected, abs=1e-5)


def test_pairwise_preference_matches_manual(jmodel, jtok):
    prefs = pairwise_preferences(jmodel, jtok, PROMPTS, RESPONSES, OTHER, batch_size=3)
    groups = [candidate_ids(jtok, "A"), candidate_ids(jtok, "B")]
    for p, a, b, pref in zip(PROMPTS, RESPONSES, OTHER, prefs):
        build = lambda rs, p=p: judges.PAIRWISE_TEMPLATE.format(
            prompt=judges.render_prompt(p), response_a=rs[0], response_b=rs[1])
        x = build_input(jtok, build, [a, b], 2048)
        if a:
            assert x.instruction.index(a) < x.instruction.index(b)
        else:  # an empty response has no position of its own: the other one is still in the prompt
            assert b in x.instruction
        expected = manual_label_logprobs(jmodel, x.input_ids, groups).softmax(-1)[0].item()
        assert 0.0 <= pref <= 1.0
        assert pref == pytest.approx(expected, abs=1e-5)


def test_pairwise_verdict_logic(monkeypatch):
    # P(A) for (prompt, A, B); chosen responses are "c<i>", rejected "r<i>".
    table = {
        ("c0", "r0"): 0.9, ("r0", "c0"): 0.2,   # chosen wins both orders -> +1
        ("c1", "r1"): 0.3, ("r1", "c1"): 0.8,   # rejected wins both -> -1
        ("c2", "r2"): 0.7, ("r2", "c2"): 0.6,   # always prefers A: position bias -> 0
        ("c3", "r3"): 0.5, ("r3", "c3"): 0.1,   # exact 0.5 is no win -> 0
        ("c4", "r4"): 0.6, ("r4", "c4"): 0.5,   # exact 0.5 the other way -> 0
        ("c5", "r5"): math.nan, ("r5", "c5"): 0.1,  # unjudged order -> 0
    }
    calls = []

    def fake(model, tokenizer, prompts, a, b, **kw):
        calls.append(kw)
        return [table[(x, y)] for x, y in zip(a, b)]

    monkeypatch.setattr(judges, "pairwise_preferences", fake)
    n = 6
    verdicts = pairwise_verdicts(None, None, ["p"] * n, [f"c{i}" for i in range(n)], [f"r{i}" for i in range(n)],
                                 batch_size=2)
    assert verdicts == [1, -1, 0, 0, 0, 0]
    assert calls == [{"batch_size": 2}]


def manual_pointwise(model, tok, prompt, response):
    """The expected 1-5 rating from the full model's logits (the naive route)."""
    build = lambda rs: judges.POINTWISE_TEMPLATE.format(prompt=judges.render_prompt(prompt), response=rs[0])
    probs = manual_label_logprobs(model, build_input(tok, build, [response], 2048).input_ids,
                                  [candidate_ids(tok, str(k)) for k in range(1, 6)]).softmax(-1)
    return (probs * torch.arange(1, 6, dtype=probs.dtype)).sum().item()


def manual_pairwise(model, tok, prompt, a, b):
    """P(A) from the full model's logits (the naive route)."""
    build = lambda rs: judges.PAIRWISE_TEMPLATE.format(prompt=judges.render_prompt(prompt), response_a=rs[0],
                                                        response_b=rs[1])
    return manual_label_logprobs(model, build_input(tok, build, [a, b], 2048).input_ids,
                                 [candidate_ids(tok, "A"), candidate_ids(tok, "B")]).softmax(-1)[0].item()


def test_pairwise_verdicts_real_model(jmodel, jtok):
    """The verdicts against P(A) of both orders from the naive route: +1 when the first response
    wins as A (P > 0.5) and as B (P < 0.5), -1 the other way round, 0 otherwise."""
    verdicts = pairwise_verdicts(jmodel, jtok, PROMPTS, RESPONSES, OTHER, batch_size=4)
    for p, a, b, verdict in zip(PROMPTS, RESPONSES, OTHER, verdicts):
        first, second = manual_pairwise(jmodel, jtok, p, a, b), manual_pairwise(jmodel, jtok, p, b, a)
        assert abs(first - 0.5) > 1e-4 and abs(second - 0.5) > 1e-4  # no verdict rests on float noise
        assert verdict == (1 if first > 0.5 and second < 0.5 else -1 if first < 0.5 and second > 0.5 else 0)


def test_truncation_cuts_response_keeps_question(jmodel, jtok):
    long_response = "The capital of France is Paris. " * 60
    full = ipo_input(jtok, PROMPTS[0], long_response)
    short = ipo_input(jtok, PROMPTS[0], "")
    max_length = (len(full.input_ids) + len(short.input_ids)) // 2
    x = ipo_input(jtok, PROMPTS[0], long_response, max_length=max_length)
    assert x.truncated and x.problem is None
    assert max_length - 10 < len(x.input_ids) <= max_length  # the cut is tight
    text = jtok.decode(x.input_ids)
    shown = text.split("[Assistant]\n", 1)[1].split("\n[End of the assistant's response]", 1)[0]
    assert shown.endswith("...") and long_response.startswith(shown[:-3]) and len(shown) < len(long_response)
    assert text.endswith(SECTION_QUESTIONS["other"] + " Answer with a single word: Yes or No.<|im_end|>\n"
                         "<|im_start|>assistant\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = ipo_scores(jmodel, jtok, PROMPTS[:1], [long_response], max_length=max_length)[0]
    assert 0.0 <= score <= 1.0
    groups = [candidate_ids(jtok, "Yes"), candidate_ids(jtok, "No")]
    assert score == pytest.approx(manual_label_logprobs(jmodel, x.input_ids, groups).softmax(-1)[0].item(), abs=1e-5)


def test_pairwise_truncation_cuts_only_the_long_response(jtok):
    build = lambda rs: judges.PAIRWISE_TEMPLATE.format(prompt="Q?", response_a=rs[0], response_b=rs[1])
    long_a, short_b = "Hello! How can I help you today? " * 40, "Paris."
    n_full = len(build_input(jtok, build, [long_a, short_b], 4096).input_ids)
    x = build_input(jtok, build, [long_a, short_b], n_full - 50)
    assert x.truncated and len(x.input_ids) <= n_full - 50
    assert "...\n### End of response A" in x.instruction
    assert "### Response B:\nParis.\n" in x.instruction


def test_too_long_item_is_nan_with_warning(jmodel, jtok):
    short = ipo_input(jtok, PROMPTS[0], "")
    with pytest.warns(UserWarning, match=r"item 1\b"):
        scores = ipo_scores(jmodel, jtok, [PROMPTS[0], "Paris " * 200], ["Paris.", "Yes."],
                            max_length=len(short.input_ids) + 10)
    assert math.isnan(scores[1])
    fits = ipo_input(jtok, PROMPTS[0], "Paris.", max_length=len(short.input_ids) + 10)
    assert not fits.truncated  # the first item is judged whole, its neighbour's failure aside
    groups = [candidate_ids(jtok, "Yes"), candidate_ids(jtok, "No")]
    expected = manual_label_logprobs(jmodel, fits.input_ids, groups).softmax(-1)[0].item()
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    with pytest.warns(UserWarning, match=r"item 0\b"):
        pref = pairwise_verdicts(jmodel, jtok, ["Paris " * 200], ["a"], ["b"], max_length=len(short.input_ids))
    assert pref == [0]


def test_without_chat_template():
    tok = judge_tokenizer(chat_template=None)
    model = make_model(len(tok), seed=2)
    x = ipo_input(tok, PROMPTS[2], RESPONSES[2])
    text = tok.decode(x.input_ids)
    assert text.endswith("Yes or No.\n\nAnswer:") and "<|im_start|>" not in text
    scores = ipo_scores(model, tok, PROMPTS, RESPONSES)
    groups = [candidate_ids(tok, "Yes"), candidate_ids(tok, "No")]
    for p, r, score in zip(PROMPTS, RESPONSES, scores):
        ids = ipo_input(tok, p, r).input_ids
        assert score == pytest.approx(manual_label_logprobs(model, ids, groups).softmax(-1)[0].item(), abs=1e-5)
    for p, r, score in zip(PROMPTS, RESPONSES, pointwise_scores(model, tok, PROMPTS, RESPONSES)):
        assert score == pytest.approx(manual_pointwise(model, tok, p, r), abs=1e-5)
    for p, a, b, pref in zip(PROMPTS, RESPONSES, OTHER, pairwise_preferences(model, tok, PROMPTS, RESPONSES, OTHER)):
        assert pref == pytest.approx(manual_pairwise(model, tok, p, a, b), abs=1e-5)


def test_progress_bar(jmodel, jtok, capsys):
    ipo_scores(jmodel, jtok, PROMPTS, RESPONSES, progress=True)
    assert "ipo_scores" in capsys.readouterr().err


def test_length_mismatch(jmodel, jtok):
    with pytest.raises(ValueError, match="responses"):
        ipo_scores(jmodel, jtok, PROMPTS, RESPONSES[:2])
    with pytest.raises(ValueError, match="responses_b"):
        pairwise_preferences(jmodel, jtok, PROMPTS, RESPONSES, OTHER[:1])
