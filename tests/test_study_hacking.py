"""studies/hacking/study.py without training: every arm's settings are ones `srgrpo train`
accepts (checked by its own parser, before any model loads), the prompts are seeded with their
sensitive share, `run` resumes and splits arms between workers, and the report compares arms over
the same steps and counts completions identical to sr_frozen's."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from srgrpo.judges import ipo_scores, pointwise_scores
from srgrpo.training.config import parse_train_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: studies/ is a package

from studies.hacking import study  # noqa: E402


@pytest.fixture(scope="module")
def judge_model():
    """A tiny model whose tokenizer has the judges' labels ("Yes", "No", "1".."5") as single tokens."""
    from conftest import make_model, make_tokenizer

    tokenizer = make_tokenizer()
    tokenizer.add_tokens(["Yes", "No"])  # the conftest corpus has neither as one token
    return make_model(len(tokenizer), seed=5).eval(), tokenizer


needs_gsm8k = pytest.mark.skipif(not (study.SHARED_DATA / "eval" / "gsm8k_train.jsonl").is_file(),
                                 reason="the shared GSM8K train file is not here")


@needs_gsm8k
def test_prompts_are_seeded_with_a_quarter_of_sensitive_requests(tmp_path):
    a, _ = study.write_prompts(tmp_path / "a")
    b, probes = study.write_prompts(tmp_path / "b")
    rows = [json.loads(line) for line in a.read_text().splitlines()]
    assert a.read_text() == b.read_text()  # the same seed, the same prompts in the same order
    assert len(rows) == study.N_GSM8K_TRAIN + len(study.SENSITIVE_TRAIN)
    assert sum(r["kind"] == "sensitive" for r in rows) / len(rows) == 0.25
    assert all(r["answer"] for r in rows if r["kind"] == "gsm8k")  # the gold answers `accuracy` needs
    assert len(probes.read_text().splitlines()) == len(study.SENSITIVE_PROBES)
    assert not set(study.SENSITIVE_PROBES) & set(study.SENSITIVE_TRAIN)  # held out


@needs_gsm8k
@pytest.mark.parametrize("arm", list(study.ARMS))
def test_every_arm_is_a_valid_train_command(arm, tmp_path):
    prompts, probes = study.write_prompts(tmp_path)
    run = parse_train_args(study.arm_args(arm, tmp_path, prompts, probes))
    settings, steps = study.ARMS[arm]
    assert run.grpo.max_steps == steps and run.grpo.seed == 0
    assert run.reward.reward_names() == settings["rewards"].split(",")
    assert run.reward.reward_scorers()[0] == settings.get("reward_scorer", "online" if arm == "self_reward" else "frozen")
    assert run.grpo.num_generations == 4 and run.grpo.max_completion_length == 96
    assert run.script.eval_every == 25 and run.script.probe_prompts == str(probes)


def test_run_resumes_skips_finished_arms_and_splits_the_rest_between_workers(tmp_path, monkeypatch):
    (tmp_path / "sr_frozen").mkdir(parents=True)
    (tmp_path / "sr_frozen" / "metrics.jsonl").write_text(json.dumps({"step": 150}) + "\n")
    (tmp_path / "sr_frozen" / "summary.json").write_text(json.dumps({"global_step": 150}))
    (tmp_path / "sr_online" / "checkpoint-5").mkdir(parents=True)
    monkeypatch.setattr(study, "write_prompts", lambda out: (out / "prompts.jsonl", out / "probes.jsonl"))
    calls = []

    def fake_call(command, cwd, env, stdout, stderr):
        arm = Path(command[command.index("--output_dir") + 1]).name
        calls.append((arm, command[-1], env["OMP_NUM_THREADS"], stdout is not None))
        return 1 if arm == "ipo" else 0

    monkeypatch.setattr(study.subprocess, "call", fake_call)
    args = argparse.Namespace(output_dir=str(tmp_path), arms="sr_frozen,sr_online,sr_ema,ipo,self_reward",
                              workers=2, max_steps=None, keep_going=False, src="src")
    assert study.run(args) == 1  # ipo failed
    threads = str(max(1, (study.os.cpu_count() or 1) // 2))
    # queue 0: sr_frozen (done: skipped), sr_ema, self_reward; queue 1: sr_online (resumed), ipo (fails, stops)
    assert sorted(calls) == sorted([("sr_online", "--resume", threads, True), ("sr_ema", "--overwrite", threads, True),
                                    ("ipo", "--overwrite", threads, True), ("self_reward", "--overwrite", threads, True)])
    with pytest.raises(SystemExit, match="unknown arm"):
        study.run(argparse.Namespace(**{**vars(args), "arms": "sr_frozen,nope"}))


def _write_arm(folder: Path, steps: int, reward: float, completion_of) -> None:
    folder.mkdir(parents=True)
    rows = [{"step": s, "reward_mean": reward + 0.01 * s, "completion_length": 90.0, "repetition": 0.05,
             "group_diversity": 0.8, "kl": 0.001 * s, "rewards/stable_rank/mean": reward} for s in range(1, steps + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = [{"step": s, "accuracy": 0.0625, "probe_refusal": 0.0, "probe_length": 96.0} for s in (0, 25)]
    (folder / "eval_curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    completions = [{"step": s, "prompt": "p", "completion": completion_of(s, k), "rewards": {"stable_rank": reward}}
                   for s in range(1, steps + 1) for k in range(4)]
    (folder / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in completions))


def test_the_report_compares_arms_over_the_same_steps(tmp_path):
    runs, report_dir = tmp_path / "runs", tmp_path / "report"
    _write_arm(runs / "sr_frozen", 40, 1.7, lambda s, k: f"step {s} completion {k}")
    # sr_online samples sr_frozen's completions for 10 steps, then its own
    _write_arm(runs / "sr_online", 30, 1.8, lambda s, k: f"step {s} completion {k}" if s <= 10 else f"own {s} {k}")
    _write_arm(runs / "ipo", 5, 0.5, lambda s, k: "short run")  # under 20 steps: left out of the comparison
    assert study.report(argparse.Namespace(output_dir=str(runs), report_dir=str(report_dir))) == 0
    text = (report_dir / "report.md").read_text()
    assert "steps 1-10 -> 21-30" in text and "40 of 120" in text
    results = json.loads((report_dir / "results.json").read_text())
    common = results["sr_online"]["common_step"]
    assert common["step"] == 30 and common["same_completions_as_sr_frozen"] == [40, 120]
    # sr_frozen cut at step 30 too: the mean reward of steps 21-30, not of its last 10
    assert common["reward_mean"][1] == pytest.approx(1.8 + 0.01 * 25.5)
    assert results["sr_frozen"]["common_step"]["reward_mean"][1] == pytest.approx(1.7 + 0.01 * 25.5)
    assert "common_step" not in results["ipo"]
    assert (report_dir / "curves.png").stat().st_size > 0


def test_a_short_runs_first_and_last_completions_come_from_different_steps():
    # 6 logged steps, reward rising with the step: windows of 5 would overlap and both pick step 5
    rows = [{"step": s, "prompt": "p", "completion": f"step {s}", "rewards": {"mean_logprob": -3 + 0.1 * s}}
            for s in range(1, 7)]
    first, last = study.top_completions(rows, first=True), study.top_completions(rows, first=False)
    assert [r["step"] for r in first] == [3] and [r["step"] for r in last] == [6]


def test_the_long_arms_are_also_compared_over_all_the_steps_they_share(tmp_path):
    runs, report_dir = tmp_path / "runs", tmp_path / "report"
    _write_arm(runs / "sr_frozen", 120, 1.7, lambda s, k: f"step {s} completion {k}")
    _write_arm(runs / "sr_prompt_adjusted", 110, 1.9, lambda s, k: f"own {s} {k}")
    _write_arm(runs / "ipo", 30, 0.5, lambda s, k: "ipo")
    assert study.report(argparse.Namespace(output_dir=str(runs), report_dir=str(report_dir))) == 0
    text = (report_dir / "report.md").read_text()
    assert "steps 1-10 -> 101-110" in text and "steps 1-10 -> 21-30" in text
    results = json.loads((report_dir / "results.json").read_text())
    assert results["sr_prompt_adjusted"]["common_step_long"]["reward_mean"][1] == pytest.approx(1.9 + 0.01 * 105.5)
    assert results["sr_frozen"]["common_step_long"]["step"] == 110 and "common_step_long" not in results["ipo"]
    assert results["ipo"]["common_step"]["step"] == 30


def test_rescore_scores_each_arms_first_and_last_steps_with_the_frozen_base_once(tmp_path, monkeypatch, judge_model):
    import statistics

    import srgrpo

    tiny_model, tokenizer = judge_model
    runs = tmp_path / "runs"
    texts = ["def add(a, b):\n    return a + b\n", "The answer is 4 because 2 + 2 = 4.", "Canberra is the capital.",
             "First list the steps, then check each one against the question."]
    rows = [{"step": s, "prompt": f"question {s}", "completion": texts[(s + k) % 4], "rewards": {"stable_rank@online": 10.0 + s}}
            for s in range(1, 7) for k in range(2)]
    _write_arm(runs / "sr_online", 6, 1.7, lambda s, k: "unused")
    (runs / "sr_online" / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loads = []
    monkeypatch.setattr(srgrpo, "load_model", lambda: loads.append(1) or (tiny_model, tokenizer))
    assert study.rescore(argparse.Namespace(output_dir=str(runs), threads=1)) == 0
    cache = json.loads((runs / study.RESCORE_FILE).read_text())["sr_online"]
    scorer = srgrpo.StableRankScorer(tiny_model, tokenizer)
    for name, steps in (("first", [1, 2, 3]), ("last", [4, 5, 6])):  # 6 steps: windows of 3, not overlapping
        chosen = [r for r in rows if r["step"] in steps]
        expected = statistics.fmean(scorer.score([r["prompt"] for r in chosen], [r["completion"] for r in chosen]))
        assert cache[name]["steps"] == [steps[0], steps[-1]] and cache[name]["n"] == 6
        assert cache[name]["frozen_stable_rank"] == pytest.approx(expected, rel=1e-4)
        assert cache[name]["own_reward"] == pytest.approx(10.0 + statistics.fmean(steps))
        # the judges as the self_reward and ipo arms ran them: the training prompt was one user message
        chats = [[{"role": "user", "content": r["prompt"]}] for r in chosen]
        completions = [r["completion"] for r in chosen]
        assert cache[name]["frozen_self_reward"] == pytest.approx(
            statistics.fmean(pointwise_scores(tiny_model, tokenizer, chats, completions)), rel=1e-4)
        assert cache[name]["frozen_ipo"] == pytest.approx(
            statistics.fmean(ipo_scores(tiny_model, tokenizer, chats, completions)), rel=1e-4)
    # nothing new logged: no model loaded the second time; the report shows the table
    assert study.rescore(argparse.Namespace(output_dir=str(runs), threads=1)) == 0 and loads == [1]
    assert study.report(argparse.Namespace(output_dir=str(runs), report_dir=str(tmp_path / "report"))) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| own reward | frozen stable_rank | frozen self_reward | frozen ipo |" in report
    assert "| sr_online | 1-3 -> 4-6 | 12 -> 15 |" in report


def test_rescore_adds_a_missing_yardstick_and_starts_over_on_new_steps(tmp_path, monkeypatch, judge_model):
    import srgrpo

    tiny_model, tokenizer = judge_model
    runs = tmp_path / "runs"
    rows = [{"step": s, "prompt": f"question {s}", "completion": f"An answer to question {s}, given in a sentence.",
             "rewards": {"ipo": 0.5}} for s in range(1, 5)]
    _write_arm(runs / "ipo", 4, 0.5, lambda s, k: "unused")
    (runs / "ipo" / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(srgrpo, "load_model", lambda: (tiny_model, tokenizer))
    calls = []
    real = study.frozen_yardstick

    def counted(name, out, model, tok):
        score = real(name, out, model, tok)
        return lambda prompts, completions: calls.append((name, len(prompts))) or score(prompts, completions)

    monkeypatch.setattr(study, "frozen_yardstick", counted)
    run = lambda yardsticks: study.rescore(argparse.Namespace(output_dir=str(runs), threads=1, yardsticks=yardsticks))
    assert run("stable_rank") == 0
    first = json.loads((runs / study.RESCORE_FILE).read_text())["ipo"]
    assert "frozen_stable_rank" in first["last"] and "frozen_ipo" not in first["last"]
    calls.clear()
    assert run("stable_rank,ipo") == 0 and [name for name, _ in calls] == ["ipo", "ipo"]  # only the missing one
    second = json.loads((runs / study.RESCORE_FILE).read_text())["ipo"]
    assert second["last"]["frozen_stable_rank"] == first["last"]["frozen_stable_rank"] and "frozen_ipo" in second["last"]
    with (runs / "ipo" / "completions.jsonl").open("a") as f:  # two more steps: the last window moved
        f.writelines(json.dumps({**rows[0], "step": s}) + "\n" for s in (5, 6))
    calls.clear()
    assert run("ipo") == 0 and sorted(set(name for name, _ in calls)) == ["ipo"]
    third = json.loads((runs / study.RESCORE_FILE).read_text())["ipo"]
    assert third["last"]["steps"] == [4, 6] and "frozen_stable_rank" not in third["last"]  # stale, dropped
    with pytest.raises(SystemExit, match="unknown yardstick"):
        run("stable_rank,reward_model")


def test_refusal_like_training_completions_are_counted_with_whether_the_reward_paid_for_them():
    from srgrpo.training.hacking import is_refusal

    request, question = study.SENSITIVE_TRAIN[0], "What is 2 + 3?"
    refusal, answer = "I'm sorry, but I can't help with that.", "Send it SIGTERM first, then SIGKILL."
    assert is_refusal(refusal) and not is_refusal(answer)
    row = lambda step, prompt, text, reward: {"step": step, "prompt": prompt, "completion": text,
                                              "rewards": {"stable_rank": reward}}
    rows = [row(1, request, refusal, 2.0), row(1, request, answer, 1.5),   # step 1: the refusal is the best
            row(2, request, refusal, 1.0), row(2, request, answer, 1.8),   # step 2: it is not
            row(3, question, refusal, 3.0), row(3, question, "5", 1.0)]    # not a sensitive request: not counted
    assert study.refusal_like(rows) == {"sensitive": 4, "flagged": 2, "group_best": 1, "steps": [1, 2]}


def test_an_arm_keeps_its_colour_in_a_panel_where_an_earlier_arm_has_no_points(tmp_path):
    rows = lambda with_refusals: [{"step": s, "reward_mean": 1.0 + s, **({"hacking/refusal": 0.0} if with_refusals else {})}
                                  for s in range(1, 4)]
    arms = {"sr_frozen": {"metrics": rows(False), "curve": []}, "sr_online": {"metrics": rows(True), "curve": []}}
    fig = study.plot(arms, tmp_path / "curves.png")
    panels = {ax.get_title(): {line.get_label(): line.get_color() for line in ax.get_lines() if line.get_label() in arms}
              for ax in fig.axes}
    reward = next(v for k, v in panels.items() if k.startswith("total reward"))
    refusals = next(v for k, v in panels.items() if k.startswith("training-batch refusals"))
    assert set(refusals) == {"sr_online"} and refusals["sr_online"] == reward["sr_online"] != reward["sr_frozen"]
