"""Training rewards by name (ipo, self_reward, accuracy, a trained reward model, several at once),
who scores them (frozen / online / ema), the hacking measures and the collapse step."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import make_model, make_tokenizer

from srgrpo.cli import main
from srgrpo.training.config import make_run, parse_train_args
from srgrpo.training.hacking import (
    CollapseRule,
    PromptNgrams,
    collapse_step,
    completion_metrics,
    continues_after_answer,
    is_refusal,
    within_group_length_corr,
)
from srgrpo.training.watch import read_metrics

QUESTIONS = ["What is 2 plus 3?", "Add 1/3 and 1/4.", "Write a haiku about rain.", "Say hello."]
ANSWERS = ["#### 5", "#### 7/12", "", "no number here"]

TINY = {
    "num_generations": 2, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
    "learning_rate": 1e-2, "max_completion_length": 8, "save_steps": 1, "gradient_checkpointing": False,
    "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj", "gate_proj"], "max_steps": 2, "reward_batch_size": 4,
    "warmup_steps": 0.0, "shuffle_dataset": False,
}


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in zip(QUESTIONS, ANSWERS)))
    return path


def _config(tmp_path, **extra):
    path = tmp_path / "grpo.json"
    path.write_text(json.dumps({**TINY, **extra}))
    return path


# ---------------------------------------------------------------------------------------- names and checks
def test_rewards_weights_and_scorers_parse_as_trl_users_expect():
    run = parse_train_args(["--dataset", "d.jsonl", "--output_dir", "o", "--rewards", "stable_rank,accuracy",
                            "--reward_weights", "1.0,0.5", "--multi_objective_aggregation", "normalize_then_sum"])
    assert run.reward.reward_names() == ["stable_rank", "accuracy"]
    assert run.grpo.reward_weights == [1.0, 0.5] and run.grpo.multi_objective_aggregation == "normalize_then_sum"
    assert run.reward.reward_scorers() == ["frozen", None]  # accuracy reads no model
    run = parse_train_args(["--dataset", "d.jsonl", "--output_dir", "o", "--rewards", "stable_rank,self_reward"])
    assert run.reward.reward_scorers() == ["frozen", "online"]  # the paper's Self-Reward is the policy's own
    run = parse_train_args(["--dataset", "d.jsonl", "--output_dir", "o", "--rewards", "ipo,mean_logprob",
                            "--reward_scorer", "ema,online", "--reward_weights=2,1"])
    assert run.reward.reward_scorers() == ["ema", "online"] and run.grpo.reward_weights == [2.0, 1.0]


@pytest.mark.parametrize("extra, message", [
    (["--rewards", "stable_rank,perplexity"], "unknown reward 'perplexity' in --rewards; known: stable_rank"),
    (["--rewards", "stable_rank,accuracy", "--reward_weights", "1.0"],
     "--reward-weights has 1 value(s) for 2 reward(s) (stable_rank, accuracy): give one weight per reward"),
    (["--reward_scorer", "ema", "--use_peft", "false"], "--reward-scorer ema keeps the EMA as a second LoRA adapter, "
                                                        "so it needs LoRA: set --use-peft true"),
    (["--rewards", "reward_model"], "--rewards reward_model needs --reward-model ID_OR_FOLDER"),
    (["--reward_model", "some/model"], "add reward_model to --rewards"),
    (["--reward_scorer", "teacher"], "unknown reward scorer 'teacher' in --reward-scorer; known: frozen, online, ema"),
    (["--rewards", "ipo,accuracy", "--reward_scorer", "frozen,online,ema"], "give one value for all, or one per reward"),
    (["--reward_ema_decay", "1.0"], "--reward-ema-decay must be in [0, 1)"),
])
def test_bad_combinations_fail_before_the_model_loads(extra, message, prompts_file, tmp_path, capsys, monkeypatch):
    import srgrpo.models

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded despite bad input")

    monkeypatch.setattr(srgrpo.models, "load_model", no_model)
    code = main(["train", "--dataset", str(prompts_file), "--output-dir", str(tmp_path / "run"),
                 "--config", str(_config(tmp_path)), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_accuracy_needs_an_answer_column(tmp_path, capsys):
    data = tmp_path / "plain.jsonl"
    data.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))
    code = main(["train", "--dataset", str(data), "--output-dir", str(tmp_path / "run"), "--config",
                 str(_config(tmp_path)), "--rewards", "accuracy", "--model", str(tmp_path / "never-loaded")])
    assert code == 2
    assert "accuracy reward needs a gold answer column" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- the rewards themselves
def test_accuracy_reward_grades_like_trl_against_the_answer_column():
    from srgrpo.training.reward_registry import AccuracyReward, gold_answer

    reward = AccuracyReward(make_tokenizer())
    completions = [[{"role": "assistant", "content": c}] for c in
                   ["So the total is \\boxed{72}.", "I get \\boxed{70}.", "\\boxed{\\frac{7}{12}}", "anything"]]
    golds = ["She sold 48 + 24 = 72.\n#### 72", "#### 72", "#### 7/12", ""]
    assert [gold_answer(g) for g in golds] == ["72", "72", "7/12", ""]
    values = reward(prompts=["q"] * 4, completions=completions, solution=golds)
    assert values == [1.0, 0.0, 1.0, None]  # unparseable gold: None, as TRL's accuracy_reward


def test_random_reward_is_a_seeded_uniform_control():
    import hashlib
    from types import SimpleNamespace

    from srgrpo.training.reward_registry import REWARDS, RandomReward

    assert REWARDS["random"].uses_model is False
    completions = [[{"role": "assistant", "content": c}] for c in ["a", "a", "b", "c"]]
    state = SimpleNamespace(global_step=3)
    values = RandomReward(seed=7, name="random")(prompts=["q"] * 4, completions=completions, completion_ids=[[1]] * 4,
                                                 prompt_ids=[[2]] * 4, trainer_state=state)
    # By hand: the first 8 bytes of sha256("seed|step|index|text"), over 2**64.
    expected = [int.from_bytes(hashlib.sha256(f"7|3|{i}|{t}".encode()).digest()[:8], "big") / 2**64
                for i, t in enumerate("aabc")]
    assert values == expected and len(set(values)) == 4 and all(0 <= v < 1 for v in values)
    again = RandomReward(seed=7)(prompts=["q"] * 4, completions=completions, completion_ids=[[1]] * 4,
                                 prompt_ids=[[2]] * 4, trainer_state=state)
    assert again == values  # a resumed run draws the same numbers
    other = RandomReward(seed=8)(prompts=["q"] * 4, completions=completions, completion_ids=[[1]] * 4,
                                 prompt_ids=[[2]] * 4, trainer_state=state)
    assert other != values
    many = RandomReward(seed=0)(prompts=["q"] * 2000, completions=[str(i) for i in range(2000)],
                                completion_ids=[[1]] * 2000, prompt_ids=[[2]] * 2000, trainer_state=state)
    assert abs(sum(many) / 2000 - 0.5) < 0.03 and abs(sum(v < 0.25 for v in many) / 2000 - 0.25) < 0.04


def test_judge_rewards_equal_the_judges_under_each_scorer():
    from peft import LoraConfig, get_peft_model

    from srgrpo.judges import ipo_scores, pointwise_scores
    from srgrpo.training.reward_registry import JudgeReward

    tokenizer = make_tokenizer()
    tokenizer.add_tokens(["Yes", "No"])  # the conftest corpus has neither as one token
    policy = get_peft_model(make_model(len(tokenizer), seed=3),
                            LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:2]]
    texts = ["It is five.", "7/12"]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    for kind, judge in (("ipo", ipo_scores), ("self_reward", pointwise_scores)):
        frozen = JudgeReward(kind, policy, tokenizer)  # a given model is scored as the frozen base
        online = JudgeReward(kind, tokenizer=tokenizer, scorer="online")
        online.trainer = type("T", (), {"model": policy})()  # what bind takes: the trainer's model
        with policy.disable_adapter():
            expected_frozen = judge(policy.eval(), tokenizer, prompts, texts)
        expected_online = judge(policy.eval(), tokenizer, prompts, texts)
        assert frozen(prompts, completions) == pytest.approx(expected_frozen, abs=1e-6)
        assert online(prompts, completions) == pytest.approx(expected_online, abs=1e-6)
        assert expected_frozen != pytest.approx(expected_online, abs=1e-6)  # the adapter matters
        assert all((0 <= v <= 1) if kind == "ipo" else (1 <= v <= 5) for v in expected_online)


# ---------------------------------------------------------------------------------------- EMA
def test_ema_adapter_moves_toward_the_policy_at_the_configured_rate(tokenizer):
    from peft import LoraConfig, get_peft_model

    from srgrpo.training.ema import add_ema_adapter, ema_pairs, update_ema

    policy = get_peft_model(make_model(len(tokenizer)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    add_ema_adapter(policy)
    pairs = ema_pairs(policy)
    assert pairs and all(torch.equal(e, p) for e, p in pairs)  # starts as a copy
    assert all(p.requires_grad and not e.requires_grad for e, p in pairs)  # only the trained adapter trains
    assert policy.active_adapter == "default"
    start = [e.detach().clone() for e, _ in pairs]
    targets = []
    with torch.no_grad():
        for _, p in pairs:
            p.add_(torch.randn_like(p))
            targets.append(p.detach().clone())
    decay = 0.9
    for n in range(1, 4):  # the policy stands still: the EMA closes (1 - decay) of the gap per step
        update_ema(policy, decay)
        for (e, _), e0, t in zip(pairs, start, targets):
            torch.testing.assert_close(e, t + decay**n * (e0 - t))


def test_ema_adapter_is_saved_with_the_policy_and_restored_on_resume(tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    from srgrpo.training.ema import add_ema_adapter, ema_pairs, load_ema, update_ema

    policy = get_peft_model(make_model(len(tokenizer)), LoraConfig(r=4, target_modules=["q_proj"]))
    add_ema_adapter(policy)
    with torch.no_grad():
        for _, p in ema_pairs(policy):
            p.add_(1.0)
    update_ema(policy, 0.5)
    saved = [e.detach().clone() for e, _ in ema_pairs(policy)]
    policy.save_pretrained(tmp_path / "checkpoint-3")  # what TRL's checkpoint does: every adapter
    assert (tmp_path / "checkpoint-3" / "ema" / "adapter_model.safetensors").is_file()
    with torch.no_grad():
        for e, _ in ema_pairs(policy):
            e.zero_()
    assert load_ema(policy, tmp_path / "checkpoint-3")
    for (e, _), s in zip(ema_pairs(policy), saved):
        torch.testing.assert_close(e, s)


def test_ema_scorer_trains_with_a_second_adapter_and_frozen_scores_do_not_move(tokenizer, prompts_file, tmp_path):
    """A real 2-step GRPO run with stable rank scored by the EMA: after every optimizer step the EMA
    adapter equals decay * its previous value + (1 - decay) * the policy's (recomputed here from the
    policy's adapter recorded after each step); the frozen score of fixed completions is unchanged
    by training, the online one moves."""
    from transformers import TrainerCallback

    from srgrpo.training.ema import ema_pairs
    from srgrpo.training.sr_reward import StableRankReward
    from srgrpo.training.trainer import build_trainer, load_prompt_dataset

    decay = 0.5
    run = make_run(dataset=str(prompts_file), output_dir=str(tmp_path / "run"), reward_scorer="ema",
                   reward_ema_decay=decay, **TINY)
    trainer, reward = build_trainer(run, make_model(len(tokenizer), seed=7), make_tokenizer(),
                                    load_prompt_dataset(str(prompts_file)))
    assert reward.scorer_mode == "ema" and reward.__name__ == "stable_rank@ema"
    policy = trainer.accelerator.unwrap_model(trainer.model)
    trained = sorted(n for n, p in policy.named_parameters() if p.requires_grad)
    assert trained and all(".default." in n for n in trained)
    recorded = []

    class Record(TrainerCallback):  # runs after the EMA callback (added later), so it sees the updated EMA
        def on_step_end(self, args, state, control, **kwargs):
            recorded.append([(e.detach().clone(), p.detach().clone()) for e, p in ema_pairs(policy)])

    trainer.add_callback(Record())
    probe = StableRankReward(policy, tokenizer)  # frozen: the base under the adapter
    ids = [tokenizer(q)["input_ids"] for q in QUESTIONS]
    completion = [tokenizer(" a fixed answer of some words")["input_ids"]] * len(QUESTIONS)
    online = StableRankReward(tokenizer=tokenizer, scorer="online")
    online.trainer = trainer
    frozen_before, online_before = probe.score_ids(ids, completion), online.score_ids(ids, completion)
    ema0 = [e.detach().clone() for e, _ in ema_pairs(policy)]
    trainer.train()

    assert len(recorded) == 2
    previous = ema0
    for step in recorded:
        for (ema, param), prev in zip(step, previous):
            torch.testing.assert_close(ema, decay * prev + (1 - decay) * param)
        previous = [e for e, _ in step]
    assert not all(torch.equal(a, b) for a, b in zip(ema0, previous))  # the EMA moved
    assert probe.score_ids(ids, completion) == frozen_before  # exactly: the base weights never train
    assert online.score_ids(ids, completion) != pytest.approx(online_before, abs=1e-7)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl") if (tmp_path / "run" / "metrics.jsonl").exists() else []
    assert rows == []  # build_trainer alone writes no metrics (train() adds the watch)


# ---------------------------------------------------------------------------------------- srgrpo train, several rewards
def test_train_with_several_rewards_logs_each_and_records_the_choice(tiny_model_dir, prompts_file, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--config", str(_config(tmp_path)), "--rewards", "stable_rank,self_reward,accuracy",
                 "--reward_scorer", "online,frozen,frozen", "--reward_weights", "1.0,0.5,2.0",
                 "--save_completions", "true"])
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for name in ("stable_rank@online", "self_reward@frozen"):
            assert math.isfinite(row[f"rewards/{name}/mean"]), name
        assert 0 <= row["hacking/prompt_echo"] <= 1 and 0 <= row["hacking/refusal"] <= 1
        assert "self_reward@frozen/group_std" in row
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rewards"] == [
        {"name": "stable_rank", "logged_as": "stable_rank@online", "scorer": "online", "weight": 1.0},
        {"name": "self_reward", "logged_as": "self_reward@frozen", "scorer": "frozen", "weight": 0.5},
        {"name": "accuracy", "logged_as": "accuracy", "scorer": None, "weight": 2.0}]
    assert "collapse" in summary and summary["collapse_rule"]["window"] == 10
    lines = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 4 and {r["step"] for r in lines} == {1, 2}
    assert set(lines[0]["rewards"]) == {"stable_rank@online", "self_reward@frozen", "accuracy"}


def test_train_with_the_random_control_alone(tiny_model_dir, prompts_file, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--config", str(_config(tmp_path)), "--rewards", "random", "--seed", "3"])
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0 < r["rewards/random/mean"] < 1 and r["rewards/random/std"] > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rewards"] == [{"name": "random", "logged_as": "random", "scorer": None, "weight": 1.0}]


def tiny_reward_model(tokenizer, folder):
    """A seeded one-layer LlamaForSequenceClassification (one label) saved with `tokenizer`."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_trained_reward_model_goes_through_trls_own_path(tokenizer, prompts_file, tmp_path):
    """A tiny LlamaForSequenceClassification saved with its tokenizer, named by folder: TRL loads and
    runs it; the logged reward equals the classifier's logits on TRL's texts."""
    folder = tiny_reward_model(tokenizer, tmp_path / "tiny-rm")
    model_dir = tmp_path / "policy"
    make_model(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--model", str(model_dir),
                 "--config", str(_config(tmp_path)), "--rewards", "reward_model,stable_rank",
                 "--reward_model", str(folder)])
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert len(rows) == 2 and all(math.isfinite(r["rewards/tiny-rm/mean"]) for r in rows)
    assert all(r["rewards/tiny-rm/mean"] != 0.0 for r in rows)
    assert json.loads((out / "summary.json").read_text())["rewards"][0]["logged_as"] == str(folder)


# ---------------------------------------------------------------------------------------- hacking measures
def test_refusal_and_continuation_detectors():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("As an AI, I cannot provide instructions.")
    assert not is_refusal("To kill a Python process, run `kill -9 PID` or use `pkill`.")
    assert not is_refusal("x" * 250 + " I'm sorry")  # only the opening counts
    assert continues_after_answer("2 + 3 = 5, so \\boxed{5}. Now \\boxed{7}")
    assert continues_after_answer("The answer is 5.\nQuestion 2: What is 3 + 4?")
    assert continues_after_answer("\\boxed{5}\nWhat is the sum of 8 and 9? It is 17.")
    assert not continues_after_answer("We add: \\boxed{\\frac{1}{2}}. Done.")
    assert not continues_after_answer("No answer marker here? None.")


def test_echo_overlap_and_length_correlation_by_hand():
    prompt = [1, 2, 3, 4, 5, 6]
    other = [10, 11, 12, 13, 14]
    grams = PromptNgrams([prompt, other])
    completion = [1, 2, 3, 4, 5, 10, 11, 12, 13, 99]  # 7 4-grams: 2 from its prompt, 1 from the other prompt
    stats = completion_metrics(["no answer"], [completion], [prompt], grams)
    assert stats["hacking/prompt_echo"] == pytest.approx(2 / 7)
    assert stats["hacking/dataset_overlap"] == pytest.approx(1 / 7)
    assert stats["hacking/refusal"] == 0.0 and stats["hacking/continues_after_answer"] == 0.0
    # groups of 3: perfectly length-driven (+1), perfectly anti (-1), and one constant group (left out)
    rewards = [1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 5.0, 5.0, 5.0]
    lengths = [10, 20, 30, 10, 20, 30, 1, 2, 3]
    assert within_group_length_corr(rewards, lengths, 3) == pytest.approx(0.0)
    assert within_group_length_corr(rewards[:3] + [None, 1.0, 2.0], lengths[:6], 3) == pytest.approx(1.0)  # None left out
    assert within_group_length_corr([1.0, 2.0, 4.0], [1, 2, 3], 3) == pytest.approx(0.9819805, abs=1e-6)


def test_collapse_step_is_where_reward_keeps_rising_while_diversity_falls():
    w = 3
    rule = CollapseRule(window=w, diversity_drop=0.1, accuracy_drop=0.1)
    # reward flat for 10 steps then rising; diversity flat then falling from step 13 on
    rows = [{"step": s, "reward_mean": 1.0 + max(0, s - 10) * 0.1, "group_diversity": 0.8 - max(0, s - 12) * 0.05}
            for s in range(1, 31)]
    found = collapse_step(rows, rule)
    # trailing means over 3: the first step t with R_t > R_{t-3} and D_t < 0.9 D_{t-3} is t = 15
    # (t = 14: D_12..14 = 0.75 against 0.9 * D_9..11 = 0.72, not yet; t = 15: D_13..15 = 0.70 < 0.72)
    assert found["detected_at"] == 15 and found["collapse_step"] == 12
    assert collapse_step([dict(r, group_diversity=0.8) for r in rows], rule) is None  # rising reward alone: healthy
    falling = [dict(r, reward_mean=2.0 - r["step"] * 0.01) for r in rows]
    assert collapse_step(falling, rule) is None  # diversity falls but the reward does not rise
    steady = [dict(r, group_diversity=0.8) for r in rows]
    evals = [{"step": 0, "accuracy": 0.5}, {"step": 20, "accuracy": 0.3}]
    found = collapse_step(steady, rule, evals)
    assert found["detected_at"] == 20 and "held-out accuracy" in found["reason"]


# ---------------------------------------------------------------------------------------- the embedded model, every arm
EMBEDDED_ARMS = {
    "stable_rank": [],
    "mean_logprob": ["--rewards", "mean_logprob"],
    "ipo": ["--rewards", "ipo"],
    "self_reward": ["--rewards", "self_reward"],
    "stable_rank_accuracy": ["--rewards", "stable_rank,accuracy", "--reward_weights", "1.0,0.5"],
    "online": ["--reward_scorer", "online"],
    "ema": ["--reward_scorer", "ema"],
    "random": ["--rewards", "random"],
    "reward_model": ["--rewards", "reward_model"],  # + --reward_model: a tiny classifier folder
}


@pytest.mark.slow
@pytest.mark.embedded
@pytest.mark.parametrize("arm", list(EMBEDDED_ARMS))
def test_every_reward_trains_two_steps_on_the_embedded_model(arm, tmp_path):
    """The issue's check: 2 steps of `srgrpo train` on the embedded model with each reward/scorer;
    metrics.jsonl has a finite value per reward and step."""
    from srgrpo.models import load_model

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                            for q, a in [("What is 2 plus 3? Put the answer in \\boxed{}.", "#### 5"),
                                         ("What is 6 times 7? Put the answer in \\boxed{}.", "#### 42")]))
    extra = list(EMBEDDED_ARMS[arm])
    if arm == "reward_model":
        _, tokenizer = load_model(None)
        extra += ["--reward_model", str(tiny_reward_model(tokenizer, tmp_path / "tiny-rm"))]
    out = tmp_path / "run"
    code = main(["train", "--dataset", str(data), "--output-dir", str(out), "--max-steps", "2",
                 "--num_generations", "2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
                 "--max_completion_length", "24", "--learning_rate", "1e-4", "--gradient_checkpointing", "false",
                 "--save_steps", "2", *extra])
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    names = [r["logged_as"] if r["name"] != "reward_model" else "tiny-rm" for r in summary["rewards"]]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for name in names:
            value = row.get(f"rewards/{name}/mean")
            assert value is not None and math.isfinite(value), (name, row)
