"""StableRankReward: the frozen base under a disabled adapter, exact token ids, options, None."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import references
from conftest import make_model

from srgrpo.training.sr_reward import StableRankReward

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Add 1/3 and 1/4."}],
    [{"role": "user", "content": "Add 1/3 and 1/4."}],
]
TEXTS = [
    "The capital of France is Paris.",
    "Hello! How can I help you today?",
    "Add the numerators over a common denominator: 1/3 + 1/4 = 7/12.",
    "def add(a, b):\n    return a + b\n",
]


def completion_ids(tokenizer, texts):
    """What a sampler returns: the completion's tokens followed by the end-of-turn token."""
    return [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]


def reference_rewards(model, tokenizer, prompts, ids, layer="final_norm", max_length=None):
    """SR of each completion's tokens (its end-of-turn token left out) after the chat-templated
    prompt, from transformers' forward and float64 SVD (tests/references.py); `max_length` keeps
    the first tokens (a right cut), NaN where no completion token is left."""
    out = []
    for prompt, completion in zip(prompts, ids):
        prompt_ids = references.chat_prompt_ids(tokenizer, prompt)
        sequence = (prompt_ids + completion[:-1])[:max_length]
        out.append(references.span_stable_rank(model, sequence, len(prompt_ids), len(sequence), layer)
                   if len(sequence) > len(prompt_ids) else math.nan)
    return out


def lora_policy(base, seed=1):
    """A PEFT policy whose adapter changes the outputs (random, not zero-initialised, B matrices)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    return get_peft_model(base, config)


@pytest.fixture
def base_and_policy(tokenizer):
    base = make_model(len(tokenizer), seed=3)
    fresh = copy.deepcopy(base)  # an independent copy of the base weights, never wrapped
    return fresh, lora_policy(base)


def test_reward_under_disabled_adapter_equals_fresh_base(tokenizer, base_and_policy):
    fresh, policy = base_and_policy
    reward = StableRankReward(policy, tokenizer)
    ids = completion_ids(tokenizer, TEXTS)
    got = reward(PROMPTS, TEXTS, completion_ids=ids)
    expected = reference_rewards(fresh, tokenizer, PROMPTS, ids)
    assert got == pytest.approx(expected, rel=1e-5)
    # The adapter does change the model, so equality above is not trivial.
    with_adapter = reference_rewards(policy, tokenizer, PROMPTS, ids)
    assert not with_adapter == pytest.approx(expected, rel=1e-3)


def test_reward_does_not_move_when_lora_weights_train(tokenizer, base_and_policy):
    _, policy = base_and_policy
    reward = StableRankReward(policy, tokenizer)
    ids = completion_ids(tokenizer, TEXTS)
    before = reward(PROMPTS, TEXTS, completion_ids=ids)
    policy_before = reference_rewards(policy, tokenizer, PROMPTS, ids)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param))
    assert reference_rewards(policy, tokenizer, PROMPTS, ids) != pytest.approx(policy_before, rel=1e-3)
    assert reward(PROMPTS, TEXTS, completion_ids=ids) == pytest.approx(before, rel=1e-6)


def test_reward_restores_training_mode_and_builds_no_graph(tokenizer, base_and_policy):
    _, policy = base_and_policy
    policy.train()
    reward = StableRankReward(policy, tokenizer)
    values = reward(PROMPTS, TEXTS, completion_ids=completion_ids(tokenizer, TEXTS))
    assert policy.training
    # Scored by the base: the adapter is disabled, and dropout (training mode) is off for the reward.
    with policy.disable_adapter():
        policy.eval()
        expected = reference_rewards(policy, tokenizer, PROMPTS, completion_ids(tokenizer, TEXTS))
        policy.train()
    assert values == pytest.approx(expected, rel=1e-5)
    # The adapter is switched back on afterwards: the policy's own outputs are unchanged by the call.
    ids = torch.tensor([completion_ids(tokenizer, TEXTS[:1])[0]], device=policy.device)
    policy.eval()
    with torch.no_grad():
        a = policy(input_ids=ids).logits
        reward(PROMPTS[:1], TEXTS[:1], completion_ids=ids.tolist())
        b = policy(input_ids=ids).logits
    assert torch.equal(a, b)


def test_reward_scores_the_given_ids_not_a_retokenisation(tokenizer, tiny_model):
    """Token ids that the tokenizer would never produce from the decoded text still get scored as
    given: the reward reads completion_ids, not the text."""
    reward = StableRankReward(tiny_model, tokenizer)
    normal = completion_ids(tokenizer, TEXTS[:1])[0]
    # Spell the same text byte-token by byte-token: a different id sequence for the same string.
    byte_symbols = [ch for token in tokenizer.convert_ids_to_tokens(normal[:-1]) for ch in token]
    spelled = tokenizer.convert_tokens_to_ids(byte_symbols) + [tokenizer.eos_token_id]
    assert tokenizer.decode(spelled, skip_special_tokens=True) == tokenizer.decode(normal, skip_special_tokens=True)
    assert spelled != normal
    by_ids = reward(PROMPTS[:2], TEXTS[:1] * 2, completion_ids=[normal, spelled])
    assert by_ids[0] != pytest.approx(by_ids[1], rel=1e-3)
    # Without completion_ids (a caller outside TRL), the text is tokenised: the first value again.
    assert reward(PROMPTS[:1], TEXTS[:1])[0] == pytest.approx(by_ids[0], rel=1e-6)


def test_prompt_ids_match_trl_templating(tokenizer, tiny_model):
    reward = StableRankReward(tiny_model, tokenizer)
    expected = tokenizer.apply_chat_template(PROMPTS[:1], add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"][0]
    assert reward.prompt_token_ids(PROMPTS[0]) == list(expected)
    assert reward.prompt_token_ids("plain text prompt") == tokenizer(text="plain text prompt")["input_ids"]


def direct_sr(model, tokenizer, ids, start, end):
    """SR of rows [start, end) of the hidden states of `ids`: transformers' forward, float64 SVD."""
    return references.span_stable_rank(model, ids, start, end)


@pytest.mark.parametrize("options", [{"layer": "last_block"}, {"layer": 1}, {"max_length": 24}])
def test_reward_honours_scoring_options(tokenizer, tiny_model, options):
    """Each option gives the reference's value with the same option (layer, right cut) over the same ids."""
    reward = StableRankReward(tiny_model, tokenizer, **options)
    ids = completion_ids(tokenizer, TEXTS)
    got = reward(PROMPTS, TEXTS, completion_ids=ids)
    default = StableRankReward(tiny_model, tokenizer)(PROMPTS, TEXTS, completion_ids=ids)
    assert got != pytest.approx(default, rel=1e-4)
    expected = reference_rewards(tiny_model, tokenizer, PROMPTS, ids, **options)
    as_nan = [math.nan if v is None else v for v in got]  # the reward says None where the scorer says NaN
    assert as_nan == pytest.approx(expected, rel=1e-5, nan_ok=True)


def test_reward_span_full_and_left_window_cover_the_policys_ids(tokenizer, tiny_model):
    """span=full scores prompt + completion as sampled (the text scorer would add the template's
    closing tokens); a left-side cut keeps the last max_length of those ids."""
    ids = completion_ids(tokenizer, TEXTS)
    full = StableRankReward(tiny_model, tokenizer, span="full")(PROMPTS, TEXTS, completion_ids=ids)
    left = StableRankReward(tiny_model, tokenizer, max_length=20, truncation_side="left")(
        PROMPTS, TEXTS, completion_ids=ids)
    for prompt, completion, f, l in zip(PROMPTS, ids, full, left):
        sequence = StableRankReward(tiny_model, tokenizer).prompt_token_ids(prompt) + completion[:-1]
        assert f == pytest.approx(direct_sr(tiny_model, tokenizer, sequence, 0, len(sequence)), rel=1e-5)
        window = sequence[-20:]
        n_response = min(len(completion) - 1, 20)
        assert l == pytest.approx(direct_sr(tiny_model, tokenizer, window, 20 - n_response, 20), rel=1e-5)


def test_unscorable_completions_get_none(tokenizer, tiny_model):
    window = len(StableRankReward(tiny_model, tokenizer).prompt_token_ids(PROMPTS[0])) + 3
    reward = StableRankReward(tiny_model, tokenizer, max_length=window)
    long_prompt = [{"role": "user", "content": "The capital of France is Paris. " * 10}]
    eos = tokenizer.eos_token_id
    values = reward(
        [PROMPTS[0], PROMPTS[0], PROMPTS[0], long_prompt, PROMPTS[0]],
        ["", "", "", "Paris.", "Paris."],
        completion_ids=[[], [eos], [tokenizer.pad_token_id, eos], tokenizer("Paris.")["input_ids"] + [eos],
                        tokenizer("Paris.")["input_ids"] + [eos]],
    )
    assert values[:4] == [None, None, None, None]  # empty, only EOS, only specials, outside the window
    paris = tokenizer("Paris.")["input_ids"]
    prompt_ids = references.chat_prompt_ids(tokenizer, PROMPTS[0])
    kept = (prompt_ids + paris)[:window]  # a right cut keeps the prompt and the first 3 response tokens
    assert values[4] == pytest.approx(direct_sr(tiny_model, tokenizer, kept, len(prompt_ids), len(kept)), rel=1e-5)


def test_non_finite_hidden_states_give_none(tokenizer):
    model = make_model(len(tokenizer))
    with torch.no_grad():
        model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids("P")] = float("nan")
    reward = StableRankReward(model, tokenizer)
    values = reward(PROMPTS[:2], ["P", TEXTS[1]], completion_ids=[[tokenizer.convert_tokens_to_ids("P")],
                                                                   completion_ids(tokenizer, TEXTS[1:2])[0]])
    assert values[0] is None
    assert values[1] == pytest.approx(reference_rewards(model, tokenizer, PROMPTS[1:2],
                                                        completion_ids(tokenizer, TEXTS[1:2]))[0], rel=1e-5)


def test_reward_is_logged_under_its_name_and_reports_watch_metrics(tokenizer, tiny_model):
    from trl.trainer.utils import get_callable_name

    reward = StableRankReward(tiny_model, tokenizer)
    reward.group_size = 2  # what bind() takes from the trainer's num_generations
    assert get_callable_name(reward) == "stable_rank"
    logged = {}
    ids = completion_ids(tokenizer, TEXTS)
    reward(PROMPTS, TEXTS, completion_ids=ids, log_metric=logged.__setitem__)
    assert set(logged) >= {"stable_rank/group_std", "stable_rank/zero_spread_frac", "completions/repetition",
                           "completions/group_diversity"}
    # groups of two: the sample standard deviation of a pair is |a - b| / sqrt(2); the mean over groups
    a, b, c, d = reference_rewards(tiny_model, tokenizer, PROMPTS, ids)
    expected_std = (abs(a - b) + abs(c - d)) / 2 / math.sqrt(2)
    assert logged["stable_rank/zero_spread_frac"] == 0.0
    assert logged["stable_rank/group_std"] == pytest.approx(expected_std, rel=1e-4)


def fake_trainer(model, tokenizer):
    return SimpleNamespace(model=model, processing_class=tokenizer, num_generations=4,
                           chat_template=None, chat_template_kwargs={})


def test_bind_takes_the_trainers_peft_policy(tokenizer, base_and_policy):
    fresh, policy = base_and_policy
    reward = StableRankReward().bind(fake_trainer(policy, tokenizer))
    assert reward.group_size == 4 and reward.tokenizer is tokenizer
    ids = completion_ids(tokenizer, TEXTS)
    assert reward(PROMPTS, TEXTS, completion_ids=ids) == pytest.approx(reference_rewards(fresh, tokenizer, PROMPTS, ids),
                                                                       rel=1e-5)


def test_full_fine_tuning_needs_a_separate_frozen_model(tokenizer, tiny_model):
    policy = make_model(len(tokenizer), seed=5)
    with pytest.raises(ValueError, match="frozen"):
        StableRankReward().bind(fake_trainer(policy, tokenizer))
    with pytest.raises(ValueError, match="separate frozen copy"):
        StableRankReward(policy, tokenizer).bind(fake_trainer(policy, tokenizer))
    bound = StableRankReward(tiny_model, tokenizer).bind(fake_trainer(policy, tokenizer))
    ids = completion_ids(tokenizer, TEXTS)
    assert bound(PROMPTS, TEXTS, completion_ids=ids) == pytest.approx(reference_rewards(tiny_model, tokenizer, PROMPTS, ids),
                                                                      rel=1e-5)


def test_unbound_reward_says_what_to_do():
    with pytest.raises(RuntimeError, match="bind"):
        StableRankReward()(PROMPTS, TEXTS)
    with pytest.raises(ValueError, match="unknown feature"):
        StableRankReward(feature="nope")


def test_top_level_export():
    import srgrpo

    assert srgrpo.StableRankReward is StableRankReward

