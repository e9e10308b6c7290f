"""The scale study's queue (resumable, records only what exited 0) and its report's arithmetic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studies.scale import report, study  # noqa: E402


def test_run_steps_records_successes_and_resumes_only_what_is_missing(tmp_path):
    marker = tmp_path / "count.txt"
    count = f"import pathlib; p = pathlib.Path({str(marker)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')"
    ok = study.Step("a/ok", [sys.executable, "-c", count], tmp_path / "a.log", {"pairs": 4})
    fail = study.Step("b/fail", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "b.log")
    assert study.run_steps(tmp_path, [ok, fail], keep_going=True) == 1
    done = json.loads((tmp_path / "done.json").read_text())
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert set(done) == {"a/ok"} and set(timings) == {"a/ok", "b/fail"} and timings["a/ok"]["pairs"] == 4
    assert "boom" in (tmp_path / "b.log").read_text()
    # Again: the finished step is skipped (it ran once), the failed one runs again and adds its time.
    first = timings["b/fail"]["seconds"]
    assert study.run_steps(tmp_path, [ok, fail], keep_going=False) == 1
    assert marker.read_text() == "x"
    assert json.loads((tmp_path / "timings.json").read_text())["b/fail"]["seconds"] > first


def test_a_running_steps_seconds_are_booked_before_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "HEARTBEAT_S", 0.2)
    wait = (f"import pathlib, time; p = pathlib.Path({str(tmp_path / 'timings.json')!r}); t = time.time(); "
            "[time.sleep(0.05) for _ in iter(lambda: p.exists() or time.time() - t > 20, True)]; "
            "raise SystemExit(0 if p.exists() else 5)")
    step = study.Step("slow/one", [sys.executable, "-c", wait], tmp_path / "s.log")
    assert study.run_steps(tmp_path, [step], keep_going=False) == 0  # timings.json appeared while it ran
    assert json.loads((tmp_path / "timings.json").read_text())["slow/one"]["seconds"] > 0.2


def _waits_for(tmp_path, me, other):
    """A command that leaves its marker, then waits up to 20 s for the other's: it succeeds only if
    both run at the same time."""
    code = (f"import os, pathlib, sys, time; d = pathlib.Path({str(tmp_path)!r}); "
            f"(d / '{me}').write_text(os.environ.get('OMP_NUM_THREADS', '')); "
            f"t = time.time(); "
            f"[time.sleep(0.05) for _ in iter(lambda: (d / '{other}').exists() or time.time() - t > 20, True)]; "
            f"sys.exit(0 if (d / '{other}').exists() else 4)")
    return [sys.executable, "-c", code]


def test_workers_run_lanes_at_once_and_a_failed_step_skips_the_rest_of_its_lane(tmp_path, monkeypatch):
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    a = study.Step("x/a", _waits_for(tmp_path, "a", "b"), tmp_path / "a.log")
    b = study.Step("x/b", _waits_for(tmp_path, "b", "a"), tmp_path / "b.log")
    assert study.run_steps(tmp_path, [a, b], keep_going=False, workers=2) == 0
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == "1"  # cores / workers threads each
    assert set(json.loads((tmp_path / "done.json").read_text())) == {"x/a", "x/b"}
    train = study.Step("arm/train", [sys.executable, "-c", "raise SystemExit(2)"], tmp_path / "t.log", lane="arm")
    evaluate = study.Step("arm/eval", [sys.executable, "-c", "open('never', 'w')"], tmp_path / "e.log", lane="arm")
    assert study.run_steps(tmp_path, [train, evaluate], keep_going=True, workers=2) == 1
    assert not (tmp_path / "e.log").exists() and "arm/eval" not in json.loads((tmp_path / "timings.json").read_text())


def test_a_worker_that_finishes_a_part_takes_the_next_lane_of_the_same_part(tmp_path):
    """GRPO arms and Best-of-N steps: the worker that finished a Best-of-N step takes the next
    Best-of-N step, not the next arm, so one worker trains while the other samples."""
    def wait_for(name, then=""):  # succeeds only if `name` appears within 20 s; then leaves `then`
        return [sys.executable, "-c", f"import pathlib, sys, time; d = pathlib.Path({str(tmp_path)!r}); t = time.time(); "
                f"[time.sleep(0.05) for _ in iter(lambda: (d / '{name}').exists() or time.time() - t > 20, True)]; "
                f"{f'(d / {then!r}).write_text(chr(120)); ' if then else ''}"
                f"sys.exit(0 if (d / '{name}').exists() else 4)"]

    arm = study.Step("grpo/train/a", wait_for("b2", then="a-done"), tmp_path / "a.log")
    first = study.Step("bon/b1", [sys.executable, "-c", "pass"], tmp_path / "b1.log")
    second_arm = study.Step("grpo/train/c", wait_for("a-done"), tmp_path / "c.log")
    second = study.Step("bon/b2", [sys.executable, "-c", f"open({str(tmp_path / 'b2')!r}, 'w').close()"],
                        tmp_path / "b2.log")
    # In plan order the arm c comes before b2: a worker taking lanes in order would wait in c for
    # a, while a waits for b2, which nobody runs until both time out.
    assert study.run_steps(tmp_path, [arm, first, second_arm, second], keep_going=True, workers=2) == 0
    assert set(json.loads((tmp_path / "done.json").read_text())) == {"grpo/train/a", "bon/b1", "grpo/train/c",
                                                                     "bon/b2"}


def test_a_run_with_fewer_lanes_left_than_workers_gives_each_step_more_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = (f"import os, pathlib; pathlib.Path({str(tmp_path / 'threads')!r})"
               ".write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))")
    last = study.Step("x/last", [sys.executable, "-c", threads], tmp_path / "l.log")
    (tmp_path / "done.json").write_text('{"x/first": "2026-12-07 10:00:00"}')
    first = study.Step("x/first", [sys.executable, "-c", "raise SystemExit(9)"], tmp_path / "f.log")
    assert study.run_steps(tmp_path, [first, last], keep_going=False, workers=2) == 0
    # One lane left: no per-worker thread cap (torch then uses every core), not cores / workers = 1.
    assert (tmp_path / "threads").read_text() == "unset"


def test_plan_names_each_models_command_and_refuses_unknown_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SRGRPO_SHARED_DATA", str(tmp_path / "data"))
    for name in ("qwen2.5-coder-0.5b-instruct.gguf", "qwen2.5-coder-1.5b-instruct.gguf"):
        (tmp_path / name).write_bytes(b"")
    args = ["run", "--output-dir", str(tmp_path / "out"), "--models-dir", str(tmp_path), "--dry-run"]
    assert study.main(args + ["--parts", "zeroshot,bon"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "zeroshot/smollm2-135m", "zeroshot/qwen2.5-coder-0.5b", "zeroshot/qwen2.5-coder-1.5b",
        "bon/smollm2-135m/math500", "bon/smollm2-135m/gsm8k", "bon/qwen2.5-coder-0.5b/math500",
        "bon/qwen2.5-coder-0.5b/gsm8k", "bon/qwen2.5-coder-1.5b/math500", "bon/qwen2.5-coder-1.5b/gsm8k"]
    assert "--model" not in lines[0] and f"--model {tmp_path / 'qwen2.5-coder-0.5b-instruct.gguf'}" in lines[1]
    assert "--limit 40" in lines[0] and "pairwise_judge" not in lines[0] and "ipo,pointwise_judge" in lines[0]
    # GRPO lanes (an arm's training, then its evaluation) and Best-of-N steps take turns after the zero-shot steps.
    assert study.main(args + ["--parts", "bon,grpo", "--models", "smollm2-135m"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "grpo/eval/base", "bon/smollm2-135m/math500", "grpo/train/stable_rank", "grpo/eval/stable_rank",
        "bon/smollm2-135m/gsm8k", "grpo/train/random", "grpo/eval/random", "grpo/train/accuracy",
        "grpo/eval/accuracy", "grpo/train/stable_rank_accuracy", "grpo/eval/stable_rank_accuracy"]
    with pytest.raises(SystemExit, match="--parts: unknown part"):
        study.main(args + ["--parts", "zeroshot,nope"])
    with pytest.raises(SystemExit, match="--models: unknown model"):
        study.main(args + ["--models", "gpt-5"])
    with pytest.raises(SystemExit, match="not found"):
        study.main(["run", "--output-dir", str(tmp_path / "out"), "--models-dir", str(tmp_path / "none"),
                    "--dry-run", "--parts", "zeroshot"])


def test_status_reads_each_steps_own_files(tmp_path):
    def step(name, folder, **meta):
        return study.Step(name, ["srgrpo", "x", "--output-dir", str(tmp_path / folder)], tmp_path / "x.log", meta)

    steps = [step("zeroshot/a", "z"), step("grpo/train/b", "t", steps=50), step("bon/c", "c")]
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "cache.jsonl").write_text(
        "".join(json.dumps({"stage": s, "key": k, "value": 1}) + "\n" for s, k in
                [("features", "1|chosen"), ("features", "1|rejected"), ("ipo", "1|chosen")]) + '{"stage": "ipo", "ke')
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # cut by a kill
    (tmp_path / "done.json").write_text('{"zeroshot/a": "2026-12-07 10:00:00"}')
    (tmp_path / "timings.json").write_text('{"zeroshot/a": {"seconds": 5400}, "grpo/train/b": {"seconds": 720}}')
    lines = study.status(tmp_path, steps)
    assert lines[0].split() == ["zeroshot/a", "done", "1.50", "h", "features", "2,", "ipo", "1"]
    # 2 of 50 steps in 720 s: 48 more at 360 s each = 4.8 h
    assert lines[1].split() == ["grpo/train/b", "started", "0.20", "h", "step", "2", "of", "50", "(~4.8", "h", "left",
                                "at", "this", "rate)"]
    assert lines[2].split() == ["bon/c", "pending"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "generations.jsonl").write_text("".join(
        json.dumps({"stage": stage, "key": str(i), "value": 1}) + "\n" for stage, i in
        [("greedy", 0), ("greedy", 1)] + [("samples", i) for i in range(10)]))
    assert study.fraction_done(steps[2], study.progress_counts(steps[2])) == 10 / study.BON_QUESTIONS
    assert study.fraction_done(steps[0], study.progress_counts(steps[0])) is None


def test_an_arm_whose_checkpoints_stayed_elsewhere_starts_again_and_forgets_the_lost_runs_seconds(tmp_path, monkeypatch):
    """A run folder seeded from a snapshot holds an unfinished arm's log but none of its checkpoints:
    `srgrpo train` refuses such a folder without --resume (which needs a checkpoint) or --overwrite."""
    monkeypatch.setenv("SRGRPO_SHARED_DATA", str(tmp_path / "data"))
    models = tmp_path / "models"
    models.mkdir()
    out = tmp_path / "run"
    for name, files in [("stable_rank", ["metrics.jsonl", "checkpoint-7/x"]), ("random", ["metrics.jsonl"])]:
        for f in files:
            (out / "grpo" / name / f).parent.mkdir(parents=True, exist_ok=True)
            (out / "grpo" / name / f).write_text('{"step": 40}\n')
    steps = {s.name: s for s in study.grpo_steps(out, models)}
    kept, lost, new = steps["grpo/train/stable_rank"], steps["grpo/train/random"], steps["grpo/train/accuracy"]
    assert "--resume" in kept.argv and "--overwrite" not in kept.argv and not kept.fresh_start
    assert "--overwrite" in lost.argv and "--resume" not in lost.argv and lost.fresh_start
    assert "--overwrite" not in new.argv and "--resume" not in new.argv and not new.fresh_start
    (out / "timings.json").write_text('{"grpo/train/random": {"seconds": 12000, "steps": 50}}')
    line = study.status(out, [lost])[0]
    # 40 of 50 steps in 12000 s: the whole arm takes 15000 s at that rate, none of which is done
    assert "step 40 of 50 logged, no checkpoint here: starts again at step 0 (~4.2 h at that rate)" in line
    lost.argv = [sys.executable, "-c", "pass"]
    assert study.run_steps(out, [lost], keep_going=False) == 0
    assert json.loads((out / "timings.json").read_text())["grpo/train/random"]["seconds"] < 60  # this run only


def _pair(subset, chosen, rejected, chosen_tokens=10, rejected_tokens=10):
    return {"id": f"{subset}-{chosen}-{rejected}", "subset": subset, "section": "x", "chosen_tokens": chosen_tokens,
            "rejected_tokens": rejected_tokens, "warnings": {},
            "scores": {"stable_rank": {"chosen": chosen, "rejected": rejected},
                       "length": {"chosen": chosen_tokens, "rejected": rejected_tokens}}}


def test_zeroshot_numbers_by_hand(tmp_path):
    folder = tmp_path / "zeroshot" / "smollm2-135m"
    folder.mkdir(parents=True)
    rows = [_pair("llmbar-natural", 2.0, 1.0), _pair("llmbar-adver-manual", 1.0, 1.0),  # a tie counts wrong
            _pair("hep-go", 3.0, 1.0, 10, 30), _pair("hep-rust", 1.0, None, 12, 10),  # unscored: wrong
            _pair("hep-cpp", 5.0, 4.0, 11, 10), _pair("hep-java", 1.0, 2.0, 50, 10)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = report.zeroshot_results(tmp_path)["smollm2-135m"]
    sr = result["stable_rank"]
    # Chat Hard: 1 of 2 right; Code: 2 of 4 right (go, cpp); headline = (0.5 + 0.5) / 2.
    assert sr["sections"] == {"Chat Hard (LLMBar)": 0.5, "Code (HumanEvalPack)": 0.5} and sr["headline"] == 0.5
    # Similar length (longer at most 20% longer): the two llmbar pairs, rust (12 vs 10), cpp (11 vs 10).
    assert sr["length_controlled_n"] == 4 and sr["length_controlled"] == 0.5
    assert sr["headline_ci"][0] <= 0.5 <= sr["headline_ci"][1] and sr["n_pairs"] == 6
    # length (the longer wins, ties wrong): llmbar 0 of 2 (equal lengths); code: rust, cpp, java right, go wrong.
    assert result["length"]["sections"] == {"Chat Hard (LLMBar)": 0.0, "Code (HumanEvalPack)": 0.75}
    report.write_report(tmp_path, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| stable_rank | 50.0" in text and (tmp_path / "report" / "zeroshot_vs_size.png").stat().st_size > 1000


def test_snapshot_names_no_machine_path_and_seeds_another_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGRPO_SHARED_DATA", str(tmp_path / "data"))
    models, run, state = tmp_path / "models", tmp_path / "run", tmp_path / "state"
    pinned = {"model": str(models / "qwen2.5-coder-0.5b-instruct.gguf"),
              "data": str(tmp_path / "data" / "preference" / "rewardbench_offline.jsonl")}
    (run / "zeroshot" / "qwen2.5-coder-0.5b").mkdir(parents=True)
    (run / "zeroshot" / "qwen2.5-coder-0.5b" / "run.json").write_text(json.dumps(pinned))
    (run / "zeroshot" / "qwen2.5-coder-0.5b" / "cache.jsonl").write_text('{"key": "1|chosen"}\n')
    (run / "done.json").write_text('{"zeroshot/smollm2-135m": "2026-12-07 06:00:00"}')
    (run / "zeroshot" / "qwen2.5-coder-0.5b" / "report.md").write_text("not state")  # no pattern keeps it
    (run / "zeroshot" / "qwen2.5-coder-0.5b.log").write_text(f"wrote results.json to {run / 'zeroshot'}\n")
    copied = study.snapshot(run, state, models)
    assert sorted(p.relative_to(state).as_posix() for p in copied) == [
        "done.json", "zeroshot/qwen2.5-coder-0.5b.log", "zeroshot/qwen2.5-coder-0.5b/cache.jsonl",
        "zeroshot/qwen2.5-coder-0.5b/run.json"]
    assert (state / "zeroshot" / "qwen2.5-coder-0.5b.log").read_text() == "wrote results.json to ${RUN_DIR}/zeroshot\n"
    saved = json.loads((state / "zeroshot" / "qwen2.5-coder-0.5b" / "run.json").read_text())
    assert saved == {"model": "${SRGRPO_MODELS}/qwen2.5-coder-0.5b-instruct.gguf",
                     "data": "${SRGRPO_SHARED_DATA}/preference/rewardbench_offline.jsonl"}
    # Another machine: other folders; the pins come back with its paths, and a newer file is kept.
    monkeypatch.setenv("SRGRPO_SHARED_DATA", str(tmp_path / "elsewhere"))
    other = tmp_path / "other-run"
    (other).mkdir()
    (other / "done.json").write_text("{}")
    seeded = study.seed(other, state, tmp_path / "other-models")
    assert sorted(p.relative_to(other).as_posix() for p in seeded) == [
        "zeroshot/qwen2.5-coder-0.5b.log", "zeroshot/qwen2.5-coder-0.5b/cache.jsonl",
        "zeroshot/qwen2.5-coder-0.5b/run.json"]
    assert (other / "zeroshot" / "qwen2.5-coder-0.5b.log").read_text() == f"wrote results.json to {other / 'zeroshot'}\n"
    assert json.loads((other / "zeroshot" / "qwen2.5-coder-0.5b" / "run.json").read_text()) == {
        "model": str(tmp_path / "other-models" / "qwen2.5-coder-0.5b-instruct.gguf"),
        "data": str(tmp_path / "elsewhere" / "preference" / "rewardbench_offline.jsonl")}
    assert (other / "done.json").read_text() == "{}"


def test_seconds_per_token_come_from_bons_own_figures(tmp_path):
    (tmp_path / "timings.json").write_text(json.dumps({"bon/smollm2-135m/gsm8k": {"seconds": 300.0}}))
    bon = {"smollm2-135m": {"gsm8k": {"mean_tokens": 50.0, "n_questions": 3, "ns": [1, 2, 4]}}}
    rows = report.timing_rows(tmp_path, bon, {"arms": {}})
    assert rows[0]["seconds_per_generated_token"] == 300.0 / (50 * 3 * 4)  # 600 sampled tokens


def test_an_unfinished_arm_shows_its_first_and_last_steps(tmp_path):
    arm = tmp_path / "grpo" / "random"
    arm.mkdir(parents=True)
    rows = [{"step": s, "completion_length": 100.0 + 10 * s, "kl": 0.0 if s == 1 else 0.01 * s} for s in range(1, 13)]
    lines = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 13, "compl'  # a line cut by a kill
    (arm / "metrics.jsonl").write_text(lines)
    (tmp_path / "timings.json").write_text(json.dumps({"grpo/train/random": {"seconds": 1200.0, "steps": 50}}))
    progress = report.grpo_progress(tmp_path, report.arm_metrics(tmp_path))
    assert list(progress) == ["random"] and progress["random"]["steps"] == 12
    assert progress["random"]["seconds_per_step"] == 100.0
    # Steps 1-5 against steps 8-12: lengths 130 -> 200; KL (0 + .02 + .03 + .04 + .05) / 5 -> .10.
    assert progress["random"]["measures"]["completion_length"] == [130.0, 200.0]
    assert progress["random"]["measures"]["kl"] == pytest.approx([0.028, 0.10])
    assert progress["random"]["measures"]["sr_mean"] == [None, None]  # the random arm logs no stable rank
    (tmp_path / "grpo" / "eval" / "base").mkdir(parents=True)
    (tmp_path / "grpo" / "eval" / "base" / "results.json").write_text(json.dumps({"tasks": {"gsm8k": {
        "accuracy": 0.27, "interval": [0.19, 0.36], "n": 100, "unfinished_fraction": 0.15, "max_new_tokens": 384,
        "mean_tokens": 272.04}}}))
    answers = [("Step 1 ... The answer is 18.", True), ("```python\nprint(3)\n```\n```output\n3\n```", False),
               ("```python\nprint(4)\n```", False), ("No idea.", False)]
    (tmp_path / "grpo" / "eval" / "base" / "answers.jsonl").write_text("".join(
        json.dumps({"stage": "gsm8k", "key": f"gsm8k-{i}", "value": {"answers": [{"text": t, "correct": c}]}}) + "\n"
        for i, (t, c) in enumerate(answers)))
    report.write_report(tmp_path, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "held-out greedy accuracy: 27.0 [19, 36] on 100 questions, 15.0% cut at 384" in text
    assert "| base | 27.0 [19, 36] | – | 272 | 15.0 | 50.0 | 0.0 / 50.0 |" in text
    assert "| random | 12 | 100 | " in text and "130 -> 200" in text and "No arm has finished yet." in text
    assert (tmp_path / "report" / "grpo_curves.png").stat().st_size > 1000


def test_a_resumed_arms_seconds_per_step_come_from_the_ledger_not_its_last_run(tmp_path):
    """srgrpo train's summary.json times only the run that finished the arm; an arm resumed for its
    last 2 of 50 steps must still cost what all 50 cost."""
    arm = tmp_path / "grpo" / "stable_rank"
    arm.mkdir(parents=True)
    (arm / "summary.json").write_text(json.dumps({"global_step": 50, "train_seconds": 800.0,
                                                  "collapse": {"collapse_step": 24}}))
    (tmp_path / "timings.json").write_text(json.dumps({"grpo/train/stable_rank": {"seconds": 15000.0, "steps": 50}}))
    grpo = report.grpo_results(tmp_path, {})
    assert grpo["arms"]["stable_rank"]["seconds"] == 15000.0
    assert report.timing_rows(tmp_path, {}, grpo)[1]["seconds_per_grpo_step"] == 300.0
    report.write_report(tmp_path, tmp_path / "report")
    assert "| stable_rank | 50 | 300 | 24 |" in (tmp_path / "report" / "report.md").read_text()


def test_code_preference_compares_code_and_prose_only_within_groups_that_mix_them(tmp_path):
    arm = tmp_path / "grpo" / "stable_rank"
    arm.mkdir(parents=True)
    code, prose = "```python\nprint(1)\n```", "First, 2 + 2 = 4."
    samples = [  # (step, prompt, completion, reward)
        (1, "a", code, 3.5), (1, "a", prose, 3.0), (1, "a", prose, 3.2),  # mixed: code +0.4
        (1, "b", code, 3.0), (1, "b", prose, 3.4),                        # mixed: code -0.4
        (2, "a", code, 3.1), (2, "a", prose, 2.0),                        # mixed, same prompt, next step: +1.1
        (2, "c", prose, 9.0), (2, "c", prose, 1.0),                       # prose only: left out
    ]
    (arm / "completions.jsonl").write_text("".join(
        json.dumps({"step": s, "prompt": p, "completion": c, "rewards": {"stable_rank": r}}) + "\n"
        for s, p, c, r in samples))
    found = report.code_preference(tmp_path)
    assert list(found) == ["stable_rank"]
    p = found["stable_rank"]["stable_rank"]
    assert (p["groups"], p["code_higher"]) == (3, 2)
    assert p["mean_gap"] == pytest.approx((0.4 - 0.4 + 1.1) / 3)


def test_the_reports_commands_name_every_step_and_no_machine_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGRPO_SHARED_DATA", str(tmp_path / "data"))
    text = "\n".join(report.commands_section())
    names = [line[2:] for line in text.splitlines() if line.startswith("# ")]
    assert len(names) == 3 + 6 + 1 + 2 * len(study.GRPO_ARMS)  # zero-shot, Best-of-N, base eval, arm + eval
    assert str(tmp_path) not in text and "--data-dir DATA" in text
    assert "--rewards=random" in text and "--adapter RUN/grpo/random/final" in text
    assert all(line.startswith(("srgrpo ", "# ")) for line in text.split("```bash\n")[1].split("\n```")[0].splitlines())


def test_bon_results_name_the_model_file_not_its_folder(tmp_path):
    folder = tmp_path / "bon" / "qwen2.5-coder-0.5b" / "gsm8k"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"run": {"model": "/machine/models/q.gguf", "seed": 0,
                                                             "sampling": "t=1"}}))
    assert report.bon_results(tmp_path)["qwen2.5-coder-0.5b"]["gsm8k"]["run"] == {
        "model": "q.gguf", "seed": 0, "sampling": "t=1"}


def test_bon_pick_profile_follows_the_highest_stable_rank_sample_of_each_question(tmp_path):
    folder = tmp_path / "bon" / "qwen2.5-coder-0.5b" / "gsm8k"
    folder.mkdir(parents=True)
    code, prose = "```python\nprint(1)\n```", "2 + 2 = 4, so \\boxed{4}"

    def sample(text, sr, tokens, correct):
        return {"text": text, "n_tokens": tokens, "correct": correct, "features": {"stable_rank": sr}}

    rows = [{"stage": "greedy", "key": "q0", "value": sample(prose, 9.0, 5, True)},  # greedy: not a candidate
            {"stage": "samples", "key": "q0", "value": [sample(prose, 2.0, 10, True), sample(code, 3.0, 30, False)]},
            {"stage": "samples", "key": "q1", "value": [sample(code, float("nan"), 50, False),
                                                        sample(prose, 1.0, 20, True)]}]  # NaN ranks last
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"stage": "sam')
    p = report.bon_pick_profile(tmp_path)["qwen2.5-coder-0.5b"]["gsm8k"]
    assert p["questions"] == 2
    assert (p["samples_code"], p["picks_code"]) == (0.5, 0.5)
    assert (p["samples_tokens"], p["picks_tokens"]) == (27.5, 25.0)
    assert (p["samples_correct"], p["picks_correct"]) == (0.5, 0.5)
    assert p["mixed_questions"] == 1  # q1's code sample has no stable rank, so q1 compares nothing
    row = next(line for line in report.bon_pick_table(report.bon_pick_profile(tmp_path)) if "qwen" in line)
    assert row.startswith("| qwen2.5-coder-0.5b | gsm8k | 2 | 50.0 / 50.0 | 28 / 25 | 50.0 / 50.0 | ")
    assert row.endswith("; 1) |")


def test_code_effect_at_fixed_length_separates_code_from_length():
    code, prose = "```python\nprint(1)\n```", "so \\boxed{4}"

    def sample(text, tokens, question_shift):  # SR = 0.7 * code + 0.5 * log(tokens) + a per-question shift
        sr = 0.7 * (text == code) + 0.5 * np.log(tokens) + question_shift
        return {"text": text, "n_tokens": tokens, "features": {"stable_rank": sr}}

    questions = [[sample(code, 300, 5.0), sample(prose, 100, 5.0), sample(prose, 200, 5.0)],
                 [sample(code, 50, -2.0), sample(code, 400, -2.0), sample(prose, 120, -2.0)],
                 [sample(prose, 80, 1.0), sample(prose, 90, 1.0)]]  # prose only: left out
    effect = report.code_effect_at_fixed_length(questions)
    assert effect["code_sr_effect"] == pytest.approx(0.7)
    assert effect["mixed_questions"] == 2
    assert report.code_effect_at_fixed_length(questions[2:])["code_sr_effect"] is None


def test_answer_modes_count_code_answers_and_the_questions_lost_and_gained_against_the_base():
    code, prose = "```python\nprint(4)\n```", "so \\boxed{4}"
    base = {"q0": {"text": prose, "correct": True}, "q1": {"text": prose, "correct": False},
            "q2": {"text": prose, "correct": True}}
    policy = {"q0": {"text": code, "correct": False}, "q1": {"text": prose, "correct": True},
              "q2": {"text": code, "correct": True}, "q3": {"text": prose, "correct": True}}  # q3: not in base
    modes = report.answer_modes(policy, base)
    assert modes["code_share"] == 0.5
    assert (modes["accuracy_with_code"], modes["accuracy_without_code"]) == (0.5, 1.0)
    assert (modes["lost"], modes["gained"]) == (1, 1)
    assert report.lost_gained("base", modes) == "–" and report.lost_gained("random", modes) == "1 / 1"


def test_arm_metrics_carry_each_steps_share_of_code_completions(tmp_path):
    arm = tmp_path / "grpo" / "stable_rank"
    arm.mkdir(parents=True)
    (arm / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": 1.0}) + "\n" for s in (1, 2, 3)))
    code, prose = "```python\nprint(1)\n```", "so \\boxed{4}"
    (arm / "completions.jsonl").write_text("".join(json.dumps({"step": s, "completion": c}) + "\n" for s, c in
                                                   [(1, code), (1, prose), (1, prose), (1, prose), (2, code), (2, code)]))
    rows = report.arm_metrics(tmp_path)["stable_rank"]
    assert [r.get(report.CODE_SHARE) for r in rows] == [0.25, 1.0, None]  # step 3 logged no completions


def test_glance_section_puts_each_part_in_one_row_per_model_with_intervals():
    zeroshot = {"qwen2.5-coder-0.5b": {"stable_rank": {"headline": 0.587, "headline_ci": [0.54, 0.63]},
                                       "random": {"headline": 0.5, "headline_ci": [0.45, 0.55]}}}
    bon = {"qwen2.5-coder-0.5b": {"gsm8k": {
        "greedy": 0.24, "greedy_interval": [0.14, 0.36], "oracle": {"8": 0.5},
        "selectors": {"stable_rank": {"8": 0.1}, "majority": {"8": 0.3}},
        "intervals": {"stable_rank": {"8": [0.02, 0.2]}, "majority": {"8": [0.18, 0.42]}}}}}
    row = lambda policy, acc, diff: {"policy": policy, "accuracy": {"gsm8k": acc}, "intervals": {"gsm8k": [0.1, 0.3]},
                                     "vs_base": {"gsm8k": {"absolute": diff, "interval": [-0.16, -0.02]}} if diff else {}}
    grpo = {"vs_base": {"rows": [row("base", 0.27, None), row("stable_rank", 0.18, -0.09)]},
            "vs_random": {"rows": [row("random", 0.27, None), row("stable_rank", 0.18, -0.09)]}}
    text = "\n".join(report.glance_section(zeroshot, bon, grpo))
    assert "| qwen2.5-coder-0.5b | 58.7 [54, 63] | – | – | – | 50.0 [45, 55] |" in text
    assert "| qwen2.5-coder-0.5b | gsm8k | 24.0 [14, 36] | 10.0 [2, 20] | – | – | 30.0 [18, 42] | 50.0 |" in text
    assert "| stable_rank | 18.0 [10, 30] | -9.0 [-16, -2] | -9.0 [-16, -2] |" in text
    assert "| base | 27.0 [10, 30] | – | – |" in text
    assert report.glance_section({}, {}, {"vs_base": None}) == ["## At a glance", "", "Nothing has finished yet.", ""]
