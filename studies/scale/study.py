"""Stable rank at three model sizes: SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B- and 1.5B-Instruct.

Three parts, each a queue of `srgrpo` commands run one after another (every command resumes by
itself, and the study marks a step done only when its command exits 0, so `run` can be stopped and
started again at any point):

    zeroshot   srgrpo rewardbench on the RewardBench v1 subsets of the shared data, the first 40 pairs
               of each of the 11 subsets (LLMBar = Chat Hard, HumanEvalPack = Code), every feature,
               the lengths, random, and the IPO and pointwise 1-5 judges; per model
    bon        srgrpo bon on GSM8K test and MATH-500 (first 50 questions each), N = 1, 2, 4, 8;
               stable rank against random, greedy, self-certainty and majority vote; per model
    grpo       srgrpo train on the 0.5B model: arms stable_rank (frozen base, the paper's), random
               (the control), accuracy, and stable_rank + accuracy, the same prompts, seed and
               settings; then srgrpo evaluate on 100 GSM8K test questions for the base and each arm,
               and srgrpo compare against the base and against the random arm

    python studies/scale/study.py run --output-dir runs/scale [--parts zeroshot,bon,grpo] [--models ...] [--workers 2]
    python studies/scale/study.py report --output-dir runs/scale --report-dir studies/scale/results
    python studies/scale/study.py status --output-dir runs/scale        # what is done, started, pending
    python studies/scale/study.py snapshot --output-dir runs/scale      # the resumable state, into git

The run folder lives outside the repository (checkpoints, large logs). `snapshot` copies its small
resumable state (scores cached so far, sampled generations, finished summaries; no checkpoint) into
`studies/scale/results/state/`, and `run` seeds an output folder from there before it starts, so a
study stopped on one machine continues on another from the last snapshot. Zero-shot, Best-of-N and
evaluation steps continue from their caches; a GRPO arm continues only from its checkpoints, so an arm
unfinished when its machine is lost starts again at step 0 (`status` says so).

Models come from `--models-dir` (default `$SRGRPO_MODELS`, else `~/.cache/srgrpo/models`), where
`get_qwen_coder.sh` from the project's shared assets puts the two GGUF files; the 135M model is
srgrpo's embedded default. Data: `$SRGRPO_SHARED_DATA` (the preference pairs and GSM8K train).

Each step's wall time goes to `timings.json`, from which the report gives seconds per scored pair,
per generated token and per GRPO step.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from srgrpo.records import read_jsonl  # no torch: status stays quick

REPO = Path(__file__).resolve().parents[2]

# name -> (what --model gets: None = the embedded default, else a file in --models-dir; parameters)
MODELS = {
    "smollm2-135m": (None, 134.5e6),
    "qwen2.5-coder-0.5b": ("qwen2.5-coder-0.5b-instruct.gguf", 630e6),
    "qwen2.5-coder-1.5b": ("qwen2.5-coder-1.5b-instruct.gguf", 1.78e9),
}
PAIRS_PER_SUBSET = 40
ZEROSHOT_METHODS = [
    "stable_rank", "stable_rank_centered", "stable_rank_normalized", "stable_rank_windowed",
    "stable_rank_prompt_adjusted", "effective_rank", "inverse_condition_number", "pca_dimension",
    "mean_logprob", "self_certainty", "mean_entropy", "length", "shorter", "random", "ipo", "pointwise_judge",
]
# The pairwise judge is left out: it reads both responses in both orders, four times the judge cost.

BON_DATASETS = {"gsm8k": 384, "math500": 512}  # dataset -> token budget of one sampled answer
BON_QUESTIONS = 50
BON_NS = "1,2,4,8"
BON_SELECTORS = "stable_rank,random,self_certainty,majority"
# Rows per generate batch (8 questions x 8 samples). On a CPU one decoding step costs nearly the
# same for 8 rows as for 16 (it reads every weight once either way): a step of the 1.5B measured
# 1.8 s for 8 rows and 2.2 s for 32 (4.4 against 14.7 tokens/s), so wide batches pay.
BON_BATCH = 64

GRPO_MODEL = "qwen2.5-coder-0.5b"
GRPO_STEPS = 50
GRPO_PROMPTS = 200  # GSM8K-train questions, seeded sample
GRPO_ARMS = {
    "stable_rank": {"rewards": "stable_rank"},
    "random": {"rewards": "random"},
    "accuracy": {"rewards": "accuracy"},
    "stable_rank_accuracy": {"rewards": "stable_rank,accuracy", "reward_weights": "1.0,1.0",
                             "multi_objective_aggregation": "normalize_then_sum"},
}
# Every arm: K=4 completions of up to 320 tokens (most GSM8K answers of the 0.5B finish well within
# it), one prompt per optimizer step, LoRA at the paper's shape, a learning rate that moves the
# adapter within 50 steps, the paper's KL beta, float32 (this CPU has no bf16 instructions: bf16
# ran at half the speed of float32 here). A checkpoint every step: a step takes many minutes here,
# and a run stopped mid-arm then loses at most the step in flight.
GRPO_COMMON = {
    "num_generations": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
    "max_completion_length": 320, "learning_rate": 2e-5, "lr_scheduler_type": "constant", "warmup_steps": 0.0,
    "beta": 0.04, "activation_checkpointing": False, "save_steps": 1, "save_total_limit": 2, "seed": 0,
    "dtype": "float32", "reward_batch_size": 4, "logging_steps": 1, "save_completions": True,
}
HELD_OUT = {"task": "gsm8k", "limit": 100, "max_new_tokens": 384, "batch_size": 50}  # greedy: rows per batch
INSTRUCTION = "\n\nSolve the problem step by step, then give the final answer as \\boxed{NUMBER}."


# What `snapshot` keeps of a run folder: enough to resume the zero-shot and Best-of-N steps and to
# write the report, small enough for git (a GRPO arm resumes only from its checkpoints, which stay out;
# the GRPO prompts are rebuilt from the shared data, which is not copied into the repository).
STATE_PATTERNS = ["done.json", "timings.json", "zeroshot/*.log", "zeroshot/*/cache.jsonl", "zeroshot/*/run.json",
                  "zeroshot/*/pairs.jsonl", "zeroshot/*/results.json", "bon/*/*/*.jsonl", "bon/*/*/*.json",
                  "grpo/*/summary.json", "grpo/*/metrics.jsonl", "grpo/eval/**/*.json",
                  "grpo/eval/**/*.jsonl"]
STATE_MAX_BYTES = 20 * 2**20
STATE_DIR = REPO / "studies" / "scale" / "results" / "state"


@dataclass
class Step:
    """One command of the study: `name` is its key in done.json and timings.json; steps that share a
    `lane` run one after another, in order (an arm's evaluation needs its training), lanes at once."""
    name: str
    argv: list[str]
    log: Path
    meta: dict = field(default_factory=dict)
    lane: str = ""
    # A training whose folder holds a log but no checkpoint (seeded from a snapshot; the checkpoints
    # stayed on the machine that ran it): it starts again at step 0, and its logged steps and booked
    # seconds belong to the lost run.
    fresh_start: bool = False


def shared_data() -> Path:
    return Path(os.environ.get("SRGRPO_SHARED_DATA", REPO.parent / "shared" / "data"))


def model_arg(name: str, models_dir: Path) -> list[str]:
    file = MODELS[name][0]
    return [] if file is None else ["--model", str(models_dir / file)]


def check_models(steps: list[Step], models_dir: Path) -> None:
    """Stop before the first command if a model file the steps name is missing."""
    for step in steps:
        if "--model" in step.argv:
            path = Path(step.argv[step.argv.index("--model") + 1])
            if not path.is_file():
                sys.exit(f"--models-dir: {path} not found (bash get_qwen_coder.sh {models_dir} assembles it)")


def srgrpo(*args: str) -> list[str]:
    return [sys.executable, "-m", "srgrpo.cli", *args]


def zeroshot_steps(out: Path, models: list[str], models_dir: Path) -> list[Step]:
    data = shared_data() / "preference" / "rewardbench_offline.jsonl"
    return [Step(f"zeroshot/{m}", srgrpo("rewardbench", "--data", str(data), "--limit", str(PAIRS_PER_SUBSET),
                                         "--scorers", ",".join(ZEROSHOT_METHODS), "--output-dir",
                                         str(out / "zeroshot" / m), "--quiet", *model_arg(m, models_dir)),
                 out / "zeroshot" / f"{m}.log", {"pairs": 11 * PAIRS_PER_SUBSET}) for m in models]


def bon_steps(out: Path, models: list[str], models_dir: Path) -> list[Step]:
    """One step per model and dataset; within a model the larger budget first, so that a run's
    longest step starts early and the shorter one fills the other worker's end of the queue."""
    longest_first = sorted(BON_DATASETS.items(), key=lambda item: -item[1])
    return [Step(f"bon/{m}/{d}", srgrpo("bon", "--dataset", d, "--limit", str(BON_QUESTIONS), "--n", BON_NS,
                                        "--selectors", BON_SELECTORS, "--max-new-tokens", str(budget),
                                        "--gen-batch-size", str(BON_BATCH), "--output-dir", str(out / "bon" / m / d), "--quiet",
                                        "--data-dir", str(shared_data()), *model_arg(m, models_dir)),
                 out / "bon" / m / f"{d}.log") for m in models for d, budget in longest_first]


def grpo_prompts(out: Path) -> Path:
    """GSM8K-train questions (a seeded sample, the same for every arm) with the boxed-answer
    instruction, written once, before the first run."""
    import random

    path = out / "grpo" / "prompts.jsonl"
    if path.is_file():
        return path
    rows = [json.loads(line) for line in (shared_data() / "eval" / "gsm8k_train.jsonl").open()]
    rows = random.Random(0).sample(rows, GRPO_PROMPTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({"question": r["question"] + INSTRUCTION, "answer": r["answer"]}) + "\n"
                           for r in rows))
    tmp.replace(path)
    return path


def grpo_steps(out: Path, models_dir: Path) -> list[Step]:
    prompts = out / "grpo" / "prompts.jsonl"  # written by grpo_prompts when the study runs
    model = model_arg(GRPO_MODEL, models_dir)
    held_out = ["--tasks", HELD_OUT["task"], "--limit", str(HELD_OUT["limit"]), "--max-new-tokens",
                str(HELD_OUT["max_new_tokens"]), "--batch-size", str(HELD_OUT["batch_size"]),
                "--data-dir", str(shared_data()), "--quiet"]
    steps = [Step("grpo/eval/base", srgrpo("evaluate", *held_out, "--output-dir", str(out / "grpo" / "eval" / "base"),
                                           *model), out / "grpo" / "eval" / "base.log")]
    for arm, settings in GRPO_ARMS.items():
        flags = [f"--{k}={v}" for k, v in {**GRPO_COMMON, **settings}.items()]
        run_dir = out / "grpo" / arm
        resumable = any(run_dir.glob("checkpoint-*"))
        fresh_start = not resumable and (run_dir / "metrics.jsonl").is_file()
        start = ["--resume"] if resumable else ["--overwrite"] if fresh_start else []
        steps.append(Step(f"grpo/train/{arm}", srgrpo("train", "--dataset", str(prompts), "--output-dir", str(run_dir),
                                                      "--max-steps", str(GRPO_STEPS), *flags, *start, *model),
                          out / "grpo" / f"{arm}.log", {"steps": GRPO_STEPS}, lane=f"grpo/{arm}",
                          fresh_start=fresh_start))
        steps.append(Step(f"grpo/eval/{arm}", srgrpo("evaluate", *held_out, "--adapter", str(run_dir / "final"),
                                                     "--skip-base", "--output-dir", str(out / "grpo" / "eval" / arm),
                                                     *model), out / "grpo" / "eval" / f"{arm}.log", lane=f"grpo/{arm}"))
    return steps


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


class Ledger:
    """done.json (steps that exited 0) and timings.json (wall seconds, summed over resumptions),
    written under one lock because the workers share them."""

    def __init__(self, out: Path):
        self.out, self.lock = out, threading.Lock()
        self.done, self.timings = read_json(out / "done.json", {}), read_json(out / "timings.json", {})

    def add_seconds(self, step: Step, seconds: float) -> None:
        with self.lock:
            earlier = self.timings.get(step.name, {}).get("seconds", 0.0)
            self.timings[step.name] = {**step.meta, "seconds": earlier + seconds}
            write_json(self.out / "timings.json", self.timings)

    def forget_seconds(self, step: Step) -> None:
        with self.lock:
            self.timings.pop(step.name, None)
            write_json(self.out / "timings.json", self.timings)

    def mark_done(self, step: Step) -> None:
        with self.lock:
            self.done[step.name] = time.strftime("%Y-%m-%d %H:%M:%S")
            write_json(self.out / "done.json", self.done)


HEARTBEAT_S = 60.0  # how often a running step's seconds reach timings.json


def worker_env(workers: int) -> dict:
    """With several workers each command gets cores / workers threads, so they do not fight over
    the cores (on 2 cores two one-thread commands got more done than one two-thread command)."""
    env = dict(os.environ)
    if workers > 1:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


def say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write per line: two workers' lines never interleave
    sys.stdout.flush()


def run_step(step: Step, label: str, ledger: Ledger, env: dict) -> bool:
    say(f"[{time.strftime('%H:%M:%S')}] step {label}: {step.name}")
    step.log.parent.mkdir(parents=True, exist_ok=True)
    if step.fresh_start:
        ledger.forget_seconds(step)  # they timed the lost run, not this one
    start = last = time.time()
    with step.log.open("a") as log:
        command = subprocess.Popen(step.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        code = None
        while code is None:  # the seconds are booked as they pass, so a run killed mid-step keeps them
            try:
                code = command.wait(timeout=HEARTBEAT_S)
            except subprocess.TimeoutExpired:
                pass
            now = time.time()
            ledger.add_seconds(step, now - last)
            last = now
    seconds = time.time() - start
    if code == 0:
        ledger.mark_done(step)
    if code != 0:
        say(f"  {step.name} exited {code} after {seconds:.0f} s; see {step.log}")
    else:
        say(f"  {step.name} done in {seconds:.0f} s")
    return code == 0


def lanes_of(steps: list[Step]) -> list[list[Step]]:
    """Steps grouped by lane (a step without one is its own lane), lanes and steps in plan order."""
    grouped: dict[str, list[Step]] = {}
    for step in steps:
        grouped.setdefault(step.lane or step.name, []).append(step)
    return list(grouped.values())


def part_of(step: Step) -> str:
    return step.name.split("/")[0]


def next_lane(pending: list[list[Step]], part: str | None) -> int:
    """The first pending lane of the part a worker has been running, else the first lane: a worker
    that finished a Best-of-N step samples on and one that finished a GRPO arm trains on, so that
    two workers keep one of each part going (a run cut short then leaves progress in both)."""
    return next((i for i, lane in enumerate(pending) if part_of(lane[0]) == part), 0)


def run_steps(out: Path, steps: list[Step], keep_going: bool, workers: int = 1) -> int:
    """Run every step not yet done: `workers` lanes at a time, each worker taking the next lane of
    the part it ran last (`next_lane`), a lane's steps one after another (a failed step skips the
    rest of its lane). Returns 1 if any step failed."""
    ledger = Ledger(out)
    labels = {step.name: f"{i + 1}/{len(steps)}" for i, step in enumerate(steps)}
    pending = lanes_of([step for step in steps if step.name not in ledger.done])
    # No more workers than lanes left: a run resumed with one lane left gives its step every core.
    workers = max(1, min(workers, len(pending)))
    env, failed, stop, taking = worker_env(workers), [], threading.Event(), threading.Lock()

    def work() -> None:
        part = None
        while not stop.is_set():
            with taking:
                if not pending:
                    return
                lane = pending.pop(next_lane(pending, part))
            part = part_of(lane[0])
            for step in lane:
                if not run_step(step, labels[step.name], ledger, env):
                    failed.append(step.name)
                    if not keep_going:
                        stop.set()
                    break

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 1 if failed else 0


def _places(models_dir: Path, out: Path) -> list[tuple[str, str]]:
    """(this machine's folder, its placeholder): a snapshot names no machine's paths, so that the
    commands' pinned arguments (run.json) match again wherever the study resumes."""
    return [(str(models_dir), "${SRGRPO_MODELS}"), (str(shared_data()), "${SRGRPO_SHARED_DATA}"),
            (str(out), "${RUN_DIR}")]


def _copy(source: Path, target: Path, replacements: list[tuple[str, str]]) -> None:
    text = source.read_text(encoding="utf-8", errors="surrogateescape")
    for old, new in replacements:
        text = text.replace(old, new)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8", errors="surrogateescape")


def snapshot(out: Path, state: Path, models_dir: Path) -> list[Path]:
    """Copy the run folder's small resumable files (STATE_PATTERNS, each at most STATE_MAX_BYTES) to
    `state`, this machine's folders replaced by placeholders; returns what was copied."""
    copied = []
    for pattern in STATE_PATTERNS:
        for path in sorted(out.glob(pattern)):
            if path.is_file() and path.stat().st_size <= STATE_MAX_BYTES:
                _copy(path, state / path.relative_to(out), _places(models_dir, out))
                copied.append(state / path.relative_to(out))
    return copied


def seed(out: Path, state: Path, models_dir: Path) -> list[Path]:
    """Copy into the run folder every snapshot file it lacks (a file it has is newer: kept), the
    placeholders replaced by this machine's folders."""
    seeded = []
    for path in sorted(state.rglob("*")) if state.is_dir() else []:
        target = out / path.relative_to(state)
        if path.is_file() and not target.exists():
            _copy(path, target, [(new, old) for old, new in _places(models_dir, out)])
            seeded.append(target)
    return seeded


PROGRESS_FILES = ("cache.jsonl", "generations.jsonl", "answers.jsonl")  # the commands' RunCache files


def progress_counts(step: Step) -> dict[str, int]:
    """What a step's own files say it has done: {"step": the last logged training step}, else the
    records of each stage of its cache (a zero-shot stage counts responses: two per pair)."""
    folder = Path(step.argv[step.argv.index("--output-dir") + 1])
    if (folder / "metrics.jsonl").is_file():
        return {"step": max((r.get("step", 0) for r in read_jsonl(folder / "metrics.jsonl")), default=0)}
    for name in PROGRESS_FILES:
        if (folder / name).is_file():
            stages: dict[str, int] = {}
            for row in read_jsonl(folder / name):
                if isinstance(row, dict) and "stage" in row:
                    stages[row["stage"]] = stages.get(row["stage"], 0) + 1
            return stages
    return {}


def progress(step: Step, counts: dict[str, int]) -> str:
    if "step" in counts:
        return f"step {counts['step']} of {step.meta.get('steps', '?')}"
    return ", ".join(f"{stage} {n}" for stage, n in counts.items())


def fraction_done(step: Step, counts: dict[str, int]) -> float | None:
    """The share of a training, a Best-of-N or a held-out evaluation that is done, by the unit that
    takes the time (training steps, sampled questions, answered questions); None for other steps."""
    if "step" in counts and step.meta.get("steps"):
        return counts["step"] / step.meta["steps"]
    if step.name.startswith("bon/"):
        return counts.get("samples", 0) / BON_QUESTIONS
    if step.name.startswith("grpo/eval/"):
        return counts.get(HELD_OUT["task"], 0) / HELD_OUT["limit"]
    return None


def status(out: Path, steps: list[Step]) -> list[str]:
    """One line per step: done, started or pending, the seconds it has run, its progress and, for a
    started step, the hours left at the rate it has run so far."""
    done, timings = read_json(out / "done.json", {}), read_json(out / "timings.json", {})
    lines = []
    for step in steps:
        seconds = timings.get(step.name, {}).get("seconds")
        counts = progress_counts(step)  # reads the step's files once
        state = "done" if step.name in done else "started" if seconds or counts else "pending"
        ran = f"{seconds / 3600:5.2f} h" if seconds else "       "
        line = f"{step.name:34} {state:8} {ran}  {progress(step, counts) if state != 'pending' else ''}".rstrip()
        share = fraction_done(step, counts) if state == "started" and seconds else None
        if share and step.fresh_start:
            line += f" logged, no checkpoint here: starts again at step 0 (~{seconds / share / 3600:.1f} h at that rate)"
        elif share:
            line += f"  (~{seconds * (1 - share) / share / 3600:.1f} h left at this rate)"
        lines.append(line)
    return lines


def plan(args) -> list[Step]:
    out, models_dir = args.output_dir, args.models_dir
    parts = {p.strip() for p in args.parts.split(",")}
    unknown = parts - {"zeroshot", "bon", "grpo"}
    if unknown:
        sys.exit(f"--parts: unknown part(s) {', '.join(sorted(unknown))}; choose from zeroshot, bon, grpo")
    models = [m.strip() for m in args.models.split(",")]
    bad = [m for m in models if m not in MODELS]
    if bad:
        sys.exit(f"--models: unknown model(s) {', '.join(bad)}; choose from {', '.join(MODELS)}")
    zeroshot = zeroshot_steps(out, models, models_dir) if "zeroshot" in parts else []
    bon = bon_steps(out, models, models_dir) if "bon" in parts else []
    grpo = grpo_steps(out, models_dir) if "grpo" in parts else []
    return zeroshot + alternate_lanes(grpo, bon)


def alternate_lanes(first: list[Step], second: list[Step]) -> list[Step]:
    """The lanes of two parts taken in turn. The GRPO arms and the Best-of-N steps each run for
    hours: taken in turn, two workers train and sample side by side, so that a run stopped early
    (a session's end) leaves part of both rather than all of one."""
    a, b = lanes_of(first), lanes_of(second)
    turns = [lane for pair in zip(a, b) for lane in pair] + a[len(b):] + b[len(a):]
    return [step for lane in turns for step in lane]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every step not yet done (resumable)")
    run.add_argument("--output-dir", type=Path, required=True)
    run.add_argument("--parts", default="zeroshot,bon,grpo")
    run.add_argument("--models", default=",".join(MODELS))
    run.add_argument("--models-dir", type=Path,
                     default=Path(os.environ.get("SRGRPO_MODELS", Path.home() / ".cache" / "srgrpo" / "models")))
    run.add_argument("--keep-going", action="store_true", help="go on to the next step after a failure")
    run.add_argument("--workers", type=int, default=1,
                     help="steps run at once, each on cores / workers threads (2 suits a 2-core machine)")
    run.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    report = sub.add_parser("report", help="tables and plots from whatever steps exist")
    report.add_argument("--output-dir", type=Path, required=True)
    report.add_argument("--report-dir", type=Path, default=REPO / "studies" / "scale" / "results")
    stat = sub.add_parser("status", help="each step: done, started or pending, its hours and progress")
    stat.add_argument("--output-dir", type=Path, required=True)
    snap = sub.add_parser("snapshot", help="copy the resumable state into the repository")
    snap.add_argument("--output-dir", type=Path, required=True)
    for command in (run, snap):
        command.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where snapshots live")
    for command in (snap, stat):
        command.add_argument("--models-dir", type=Path, default=run.get_default("models_dir"))
    stat.set_defaults(parts="zeroshot,bon,grpo", models=",".join(MODELS))
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        print(f"{len(snapshot(args.output_dir, args.state_dir, args.models_dir))} files copied to {args.state_dir}")
        return 0
    if args.command == "report":
        from studies.scale.report import write_report

        write_report(args.output_dir, args.report_dir)
        return 0
    steps = plan(args)
    if args.command == "status":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `status | head` ends quietly, like any shell tool
        print("\n".join(status(args.output_dir, steps)))
        return 0
    check_models(steps, args.models_dir)
    if args.workers < 1:
        sys.exit("--workers: must be at least 1")
    if args.dry_run:
        for step in steps:
            print(step.name, " ".join(step.argv[2:]))
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    seeded = seed(args.output_dir, args.state_dir, args.models_dir)
    if seeded:
        print(f"seeded {len(seeded)} files from {args.state_dir}", flush=True)
    if any(step.name.startswith("grpo/") for step in steps):
        grpo_prompts(args.output_dir)
    return run_steps(args.output_dir, steps, args.keep_going, args.workers)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
