"""The scale study's report: tables (report.md), numbers (results.json) and plots from whatever steps
of `study.py run` exist. Everything is recomputed from the runs' own files (pairs.jsonl of
`srgrpo rewardbench`, results.json of `srgrpo bon`, summary.json of `srgrpo train`, the compare
tables of `srgrpo compare`), so a partial study gives a partial report that says what is missing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from srgrpo.training.watch import read_metrics

from studies.scale.study import (BON_DATASETS, BON_QUESTIONS, GRPO_ARMS, GRPO_MODEL, GRPO_STEPS, HELD_OUT, MODELS,
                                 PAIRS_PER_SUBSET, ZEROSHOT_METHODS, bon_steps, grpo_steps, read_json, shared_data,
                                 zeroshot_steps)

SECTIONS = {"Chat Hard (LLMBar)": "llmbar-", "Code (HumanEvalPack)": "hep-"}
LENGTH_TOLERANCE = 0.2  # "similar length": the longer response at most 20% longer (srgrpo's v1 summary)
BOOTSTRAP = 2000
PLOTTED = ["stable_rank", "mean_logprob", "self_certainty", "ipo", "pointwise_judge", "effective_rank", "length",
           "stable_rank_windowed"]
PAPER = ("The paper (Qwen2.5-1.5B-Instruct, full RewardBench, 512-token window): stable rank 75.95; "
         "Qwen3-8B 84.04. Best-of-16 by stable rank +17% over greedy; SR-GRPO math average 28.0 -> 32.4.")
LIMITS = ["## What this can and cannot show", "",
          "- One model family per size: size is not separated from family (SmolLM2 at 135M, Qwen2.5-Coder above), "
          "from code tuning, or from quantisation (GGUF weights dequantised to float32).",
          "- Small samples: 40 pairs per subset (about ±7 points per section), 50 questions per Best-of-N dataset, "
          "100 held-out questions, 50 GRPO steps of 4 completions against the paper's hundreds of steps; read the "
          "intervals, not the point estimates.",
          "- The paper's numbers above are on the full RewardBench and other models; nothing here is a like-for-like "
          "reproduction, only the same questions asked at three sizes on a CPU.", ""]


CODE_FENCE = "```"  # an answer that writes a code block (the Qwen coder models often do, then invent its output)


def writes_code(text) -> bool:
    return CODE_FENCE in str(text)


def mean_or_none(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def finite_or(value, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else default


# ---------------------------------------------------------------------------------------- zero-shot
def section_of(subset: str) -> str | None:
    return next((name for name, prefix in SECTIONS.items() if subset.startswith(prefix)), None)


def pair_outcomes(pairs_file: Path) -> dict:
    """{method: {"correct": bool array, "section": array, "similar_length": bool array}} from pairs.jsonl;
    a pair is correct only when chosen scores strictly higher (ties and unscored sides are wrong)."""
    rows = [json.loads(line) for line in pairs_file.open()]
    section = np.array([section_of(r["subset"]) for r in rows])
    longer = np.array([max(r["chosen_tokens"], r["rejected_tokens"], 1) for r in rows], dtype=float)
    shorter = np.array([min(r["chosen_tokens"], r["rejected_tokens"]) for r in rows], dtype=float)
    similar = (longer - shorter) <= LENGTH_TOLERANCE * longer
    out = {}
    for method in rows[0]["scores"]:
        chosen = np.array([np.nan if r["scores"][method]["chosen"] is None else r["scores"][method]["chosen"]
                           for r in rows], dtype=float)
        rejected = np.array([np.nan if r["scores"][method]["rejected"] is None else r["scores"][method]["rejected"]
                             for r in rows], dtype=float)
        out[method] = {"correct": chosen > rejected, "section": section, "similar_length": similar}
    return out


def headline(correct: np.ndarray, section: np.ndarray) -> float:
    """The plain mean of the sections' accuracies (RewardBench's headline over the sections present)."""
    return float(np.mean([correct[section == s].mean() for s in SECTIONS if (section == s).any()]))


def bootstrap_headline(correct: np.ndarray, section: np.ndarray, seed: int = 0) -> list[float]:
    """95% percentile interval of the headline, resampling pairs within each section."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(section == s) for s in SECTIONS if (section == s).any()]
    draws = np.empty(BOOTSTRAP)
    for b in range(BOOTSTRAP):
        draws[b] = np.mean([correct[rng.choice(g, g.size)].mean() for g in groups])
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def bootstrap_mean(values: np.ndarray, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, values.size, (BOOTSTRAP, values.size))].mean(axis=1)
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def zeroshot_results(run: Path) -> dict:
    """{model: {method: numbers}} for every model whose rewardbench run is complete."""
    results = {}
    for model in MODELS:
        pairs = run / "zeroshot" / model / "pairs.jsonl"
        if not pairs.is_file():
            continue
        per_model = {}
        for method, o in pair_outcomes(pairs).items():
            c, s, similar = o["correct"], o["section"], o["similar_length"]
            per_model[method] = {
                "headline": headline(c, s), "headline_ci": bootstrap_headline(c, s),
                "sections": {name: float(c[s == name].mean()) for name in SECTIONS if (s == name).any()},
                "section_ci": {name: bootstrap_mean(c[s == name].astype(float)) for name in SECTIONS
                               if (s == name).any()},
                "length_controlled": float(c[similar].mean()) if similar.any() else None,
                "length_controlled_ci": bootstrap_mean(c[similar].astype(float)) if similar.any() else None,
                "length_controlled_n": int(similar.sum()), "n_pairs": int(c.size),
            }
        results[model] = per_model
    return results


# ---------------------------------------------------------------------------------------- Best-of-N
def bon_results(run: Path) -> dict:
    """{model: {dataset: results.json of srgrpo bon}} for every finished run."""
    out = {}
    for model in MODELS:
        for dataset in BON_DATASETS:
            data = read_json(run / "bon" / model / dataset / "results.json", None)
            if data is not None:
                # The committed results.json names files, not where they lay on the machine that ran it.
                settings = data.get("run") or {}
                data["run"] = {k: Path(v).name if isinstance(v, str) and Path(v).is_absolute() else v
                               for k, v in settings.items()}
                out.setdefault(model, {})[dataset] = data
    return out


def bon_pick_profile(run: Path) -> dict:
    """{model: {dataset: profile}} of what stable rank picks at the largest N, against the samples
    it picks from: the share that writes a code block, mean tokens and accuracy of each. Shows
    whether SR's choice follows the answer's form (code, length) rather than its correctness."""
    out = {}
    for model in MODELS:
        for dataset in BON_DATASETS:
            per_question = [row["value"] for row in read_metrics(run / "bon" / model / dataset / "generations.jsonl")
                            if row.get("stage") == "samples" and row.get("value")]
            if not per_question:
                continue
            picks = [max(samples, key=lambda c: finite_or(c["features"].get("stable_rank"), -np.inf))
                     for samples in per_question]
            samples = [c for group in per_question for c in group]
            out.setdefault(model, {})[dataset] = {
                "questions": len(per_question),
                **{f"{who}_{what}": mean_or_none([measure(c) for c in chosen])
                   for who, chosen in (("samples", samples), ("picks", picks))
                   for what, measure in (("code", lambda c: writes_code(c["text"])), ("tokens", lambda c: c["n_tokens"]),
                                         ("correct", lambda c: bool(c["correct"])))},
                **code_effect_at_fixed_length(per_question)}
    return out


def code_effect_at_fixed_length(per_question: list[list[dict]]) -> dict:
    """How much a code block raises stable rank with the answer's length held fixed: least squares
    of SR on (writes code, log tokens) after removing each question's mean, so only samples of the
    same question are compared. `within_sd` is SR's spread within a question, the scale a selector
    acts on. None where no question mixes code and prose."""
    code, log_len, sr, mixed = [], [], [], 0
    for samples in per_question:
        kept = [c for c in samples if np.isfinite(finite_or(c["features"].get("stable_rank"), np.nan))
                and c.get("n_tokens")]
        if len({writes_code(c["text"]) for c in kept}) < 2:
            continue
        mixed += 1
        for values, measure in ((code, lambda c: float(writes_code(c["text"]))), (log_len, lambda c: np.log(c["n_tokens"])),
                                (sr, lambda c: c["features"]["stable_rank"])):
            column = np.array([measure(c) for c in kept])
            values.extend(column - column.mean())
    if not sr:
        return {"code_sr_effect": None, "within_sd": None, "mixed_questions": 0}
    coef, *_ = np.linalg.lstsq(np.column_stack([code, log_len]), np.array(sr), rcond=None)
    return {"code_sr_effect": float(coef[0]), "within_sd": float(np.std(sr)),
            "mixed_questions": mixed}


def bon_pick_table(profile: dict) -> list[str]:
    lines = ["What stable rank picks at N = 8, against the 8 samples it picks from:", "",
             "| model | dataset | questions | with code: samples / SR pick (%) | mean tokens: samples / SR pick | "
             "accuracy: samples / SR pick (%) | SR gain of code at fixed length (questions mixing both) |",
             "|---|---|---|---|---|---|---|"]
    for model, per in profile.items():
        for dataset, p in per.items():
            lines.append(f"| {model} | {dataset} | {p['questions']} | {pct(p['samples_code'])} / {pct(p['picks_code'])} | "
                         f"{p['samples_tokens']:.0f} / {p['picks_tokens']:.0f} | "
                         f"{pct(p['samples_correct'])} / {pct(p['picks_correct'])} | {code_effect_cell(p)} |")
    return lines + ["", "The last column: the least-squares effect of writing a code block on stable rank with log "
                    "length held fixed, comparing samples of the same question only; beside it, SR's standard "
                    "deviation within a question (the scale on which a selector chooses)."]


def code_effect_cell(p: dict) -> str:
    if p.get("code_sr_effect") is None:
        return "–"
    return f"{p['code_sr_effect']:+.2f} (within-question SD {p['within_sd']:.2f}; {p['mixed_questions']})"


def sampled_tokens(result: dict) -> float:
    """Tokens the sampler produced for the N samples of every question (the greedy answer left
    out), from the figures srgrpo bon's results.json already holds."""
    return result["mean_tokens"] * result["n_questions"] * max(result["ns"])


# ---------------------------------------------------------------------------------------- GRPO
def compare_table(run: Path, base: str) -> dict | None:
    """`srgrpo compare` of every arm's held-out evaluation against `base` (a folder under grpo/eval),
    as the JSON it writes beside its Markdown."""
    evals = run / "grpo" / "eval"
    arms = [evals / a for a in GRPO_ARMS if (evals / a).is_dir() and a != base]
    base_dir = evals / base
    if not base_dir.is_dir() or not arms:
        return None
    out = run / "grpo" / f"compare_vs_{base}.md"
    # Paths relative to the run folder, as the table names its rows by them and the report is committed.
    dirs = [d.relative_to(run).as_posix() for d in (base_dir, *arms)]
    done = subprocess.run([sys.executable, "-m", "srgrpo.cli", "compare", "--base", dirs[0], "--output",
                           str(out.resolve()), *dirs], capture_output=True, text=True, cwd=run)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    return read_json(out.with_suffix(".json"), None)


def grpo_results(run: Path, metrics: dict[str, list[dict]]) -> dict:
    """Finished arms (those with srgrpo train's summary.json). Their seconds come from the study's
    ledger, summed over every resumption; the summary's own train_seconds cover the last one only."""
    arms, timings = {}, read_json(run / "timings.json", {})
    for arm in GRPO_ARMS:
        summary = read_json(run / "grpo" / arm / "summary.json", None)
        if summary is not None:
            arms[arm] = {"global_step": summary.get("global_step"),
                         "seconds": timings.get(f"grpo/train/{arm}", {}).get("seconds"),
                         "first_step": summary.get("first_step"), "last_step": summary.get("last_step"),
                         "collapse": summary.get("collapse")}
    return {"arms": arms, "progress": grpo_progress(run, metrics), "vs_base": compare_table(run, "base"),
            "vs_random": compare_table(run, "random")}


CODE_SHARE = "code_share"  # not logged by srgrpo train: the report adds it from completions.jsonl

# Per-step measures of a GRPO arm as srgrpo train logs them in metrics.jsonl (the hacking study's
# measures): (column, label). The table compares the first and the last PROGRESS_WINDOW steps logged.
PROGRESS_MEASURES = [
    ("reward_mean", "reward"), ("completion_length", "length (tokens)"), ("clipped_ratio", "cut at budget"),
    ("sr_mean", "stable rank"), ("stable_rank/length_corr", "SR-length corr"), ("kl", "KL"),
    ("repetition", "repetition"), ("group_diversity", "group diversity"), ("hacking/prompt_echo", "prompt echo"),
    ("hacking/dataset_overlap", "dataset overlap"), ("hacking/continues_after_answer", "goes on after answer"),
    (CODE_SHARE, "with code"),
]
PROGRESS_WINDOW = 5
CURVE_PANELS = ["completion_length", "clipped_ratio", CODE_SHARE, "kl", "stable_rank/length_corr",
                "hacking/prompt_echo", "hacking/continues_after_answer", "group_diversity"]


def finite_points(rows: list[dict], column: str) -> list[tuple[int, float]]:
    """(step, value) of every row that logged `column` as a finite number."""
    return [(r["step"], r[column]) for r in rows if isinstance(r.get(column), (int, float)) and np.isfinite(r[column])]


def window_mean(rows: list[dict], column: str, first: bool) -> float | None:
    values = [v for _, v in finite_points(rows, column)]
    part = values[:PROGRESS_WINDOW] if first else values[-PROGRESS_WINDOW:]
    return float(np.mean(part)) if part else None


def arm_metrics(run: Path) -> dict[str, list[dict]]:
    """{arm: metrics.jsonl rows} of every arm that has logged a step, finished or not."""
    rows = {arm: read_metrics(run / "grpo" / arm / "metrics.jsonl") for arm in GRPO_ARMS}
    for arm, arm_rows in rows.items():
        shares = code_share_by_step(run / "grpo" / arm / "completions.jsonl")
        for row in arm_rows:
            if row.get("step") in shares:
                row[CODE_SHARE] = shares[row["step"]]
    return {arm: r for arm, r in rows.items() if r}


def code_share_by_step(completions: Path) -> dict[int, float]:
    """{step: share of that step's sampled completions that write a code block}."""
    per_step: dict[int, list[bool]] = {}
    for row in read_metrics(completions):
        per_step.setdefault(row.get("step"), []).append(writes_code(row.get("completion", "")))
    return {step: float(np.mean(flags)) for step, flags in per_step.items()}


def code_preference(run: Path) -> dict:
    """Per arm and per reward it logs, over the sampled groups (one prompt's K completions at a
    step, from completions.jsonl) that mix answers with a code block and answers without: how many
    such groups, in how many the code answers got the higher mean reward, and the mean gap. It
    shows whether a reward, not GRPO alone, pushes a policy from prose to code."""
    found = {}
    for arm in GRPO_ARMS:
        groups: dict[tuple, list[dict]] = {}
        for row in read_metrics(run / "grpo" / arm / "completions.jsonl"):
            groups.setdefault((row.get("step"), json.dumps(row.get("prompt"))), []).append(row)
        per_reward: dict[str, list[float]] = {}
        for rows in groups.values():
            code = [r for r in rows if writes_code(r.get("completion", ""))]
            prose = [r for r in rows if not writes_code(r.get("completion", ""))]
            if not code or not prose:
                continue
            for name in rows[0].get("rewards", {}):
                gap = (mean_or_none([r["rewards"][name] for r in code])
                       - mean_or_none([r["rewards"][name] for r in prose]))
                per_reward.setdefault(name, []).append(gap)
        if per_reward:
            found[arm] = {name: {"groups": len(gaps), "code_higher": sum(g > 0 for g in gaps),
                                 "mean_gap": float(np.mean(gaps))} for name, gaps in per_reward.items()}
    return found


def code_preference_table(preference: dict) -> list[str]:
    lines = ["Within-group reward of code against prose (training samples; groups that mixed both):", "",
             "| arm | reward | mixed groups | code rewarded higher | mean gap (code - prose) |", "|---|---|---|---|---|"]
    for arm, rewards in preference.items():
        for name, p in rewards.items():
            lines.append(f"| {arm} | {name} | {p['groups']} | {p['code_higher']} | {p['mean_gap']:+.3g} |")
    return lines + [""]


def grpo_progress(run: Path, metrics: dict[str, list[dict]]) -> dict:
    """Per arm of `metrics`: steps logged, wall seconds per step so far, and each PROGRESS_MEASURES
    column over its first and last PROGRESS_WINDOW steps."""
    timings, progress = read_json(run / "timings.json", {}), {}
    for arm, rows in metrics.items():
        steps = max(r.get("step", 0) for r in rows)
        seconds = timings.get(f"grpo/train/{arm}", {}).get("seconds")
        progress[arm] = {"steps": steps, "seconds_per_step": seconds / steps if seconds and steps else None,
                         "measures": {c: [window_mean(rows, c, True), window_mean(rows, c, False)]
                                      for c, _ in PROGRESS_MEASURES}}
    return progress


def progress_table(progress: dict) -> list[str]:
    lines = [f"Each cell: mean of the first {PROGRESS_WINDOW} steps -> mean of the last {PROGRESS_WINDOW} "
             "logged (seconds per step: wall time so far, model loading included).", "",
             "| arm | steps | s/step | " + " | ".join(label for _, label in PROGRESS_MEASURES) + " |",
             "|---|---|---|" + "---|" * len(PROGRESS_MEASURES)]
    for arm, p in progress.items():
        cells = [" -> ".join("–" if v is None else f"{v:.3g}" for v in p["measures"][c]) for c, _ in PROGRESS_MEASURES]
        per_step = "–" if p["seconds_per_step"] is None else f"{p['seconds_per_step']:.0f}"
        lines.append(f"| {arm} | {p['steps']} | {per_step} | " + " | ".join(cells) + " |")
    return lines


def plot_grpo_curves(metrics: dict[str, list[dict]], path: Path) -> None:
    """One panel per CURVE_PANELS column, one line per arm (a PROGRESS_WINDOW-step running mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(PROGRESS_MEASURES)
    columns = 4
    fig, axes = plt.subplots(-(-len(CURVE_PANELS) // columns), columns, figsize=(3.8 * columns, 3.2 * 2), squeeze=False)
    for ax, column in zip(axes.flat, CURVE_PANELS):
        for arm, rows in metrics.items():
            points = finite_points(rows, column)
            if not points:
                continue
            steps, values = zip(*points)
            if len(values) >= PROGRESS_WINDOW:
                steps = steps[PROGRESS_WINDOW - 1:]
                values = np.convolve(values, np.ones(PROGRESS_WINDOW), "valid") / PROGRESS_WINDOW
            ax.plot(steps, values, label=arm)
        ax.set_title(labels[column])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"SR-GRPO arms on {GRPO_MODEL}: training measures ({PROGRESS_WINDOW}-step running mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- timings
def loaded_parameters(run: Path) -> dict:
    """{model: parameters} as the load line of each zero-shot log printed it."""
    found = {}
    for model in MODELS:
        log = run / "zeroshot" / f"{model}.log"
        if log.is_file():
            match = re.search(r"srgrpo: model: .*?\(\w+, ([\d,.]+)M parameters", log.read_text(errors="replace"))
            if match:
                found[model] = float(match.group(1).replace(",", "")) * 1e6
    return found


def timing_rows(run: Path, bon: dict, grpo: dict) -> list[dict]:
    timings = read_json(run / "timings.json", {})
    done = read_json(run / "done.json", {})
    rows = []
    for model in MODELS:
        row = {"model": model}
        step = timings.get(f"zeroshot/{model}")
        if step and f"zeroshot/{model}" in done:
            row["seconds_per_pair"] = step["seconds"] / step["pairs"]
        tokens = sum(sampled_tokens(r) for r in bon.get(model, {}).values())
        seconds = sum(timings.get(f"bon/{model}/{d}", {}).get("seconds", 0) for d in bon.get(model, {}))
        if tokens and seconds:
            row["seconds_per_generated_token"] = seconds / tokens
        if model == GRPO_MODEL:
            steps = [(a["seconds"], a["global_step"]) for a in grpo["arms"].values()
                     if a.get("global_step") and a.get("seconds")]
            if steps:
                row["seconds_per_grpo_step"] = sum(s for s, _ in steps) / sum(n for _, n in steps)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------- writing
def held_out_answers(eval_dir: Path) -> dict[str, dict]:
    """{question key: the greedy answer} from srgrpo evaluate's answers.jsonl; read_metrics skips a
    line cut by a kill, as it does for the arms' completions.jsonl."""
    return {row["key"]: row["value"]["answers"][0] for row in read_metrics(eval_dir / "answers.jsonl")}


def answer_modes(answers: dict[str, dict], base: dict[str, dict]) -> dict:
    """Share of held-out answers with a code block, the accuracy of those with and without one, and
    how many questions the policy lost and gained against the base's answers."""
    with_code = [bool(a["correct"]) for a in answers.values() if writes_code(a["text"])]
    without = [bool(a["correct"]) for a in answers.values() if not writes_code(a["text"])]
    shared = [k for k in answers if k in base]
    return {"code_share": len(with_code) / len(answers) if answers else None,
            "accuracy_with_code": mean_or_none(with_code), "accuracy_without_code": mean_or_none(without),
            "lost": sum(bool(base[k]["correct"]) and not answers[k]["correct"] for k in shared),
            "gained": sum(bool(answers[k]["correct"]) and not base[k]["correct"] for k in shared)}


def held_out_table(run: Path) -> list[str]:
    """Each evaluated policy's held-out accuracy beside the length of its answers, the share the
    budget cut and the share written as code, so that a change in accuracy can be told apart from a
    change in how the policy answers."""
    lines = ["| policy | accuracy (%) | lost / gained vs base | mean answer tokens | cut at budget (%) | "
             "answers with code (%) | accuracy with code / without (%) |", "|---|---|---|---|---|---|---|"]
    base = held_out_answers(run / "grpo" / "eval" / "base")
    for policy in ("base", *GRPO_ARMS):
        folder = run / "grpo" / "eval" / policy
        task = read_json(folder / "results.json", {}).get("tasks", {}).get(HELD_OUT["task"])
        if task:
            modes = answer_modes(held_out_answers(folder), base)
            lines.append(f"| {policy} | {pct(task['accuracy'])}{ci(task['interval'])} | {lost_gained(policy, modes)} | "
                         f"{task['mean_tokens']:.0f} | {pct(task['unfinished_fraction'])} | {pct(modes['code_share'])} | "
                         f"{pct(modes['accuracy_with_code'])} / {pct(modes['accuracy_without_code'])} |")
    return lines + [""]


def lost_gained(policy: str, modes: dict) -> str:
    return "–" if policy == "base" else f"{modes['lost']} / {modes['gained']}"


def commands_section() -> list[str]:
    """Every command the study runs, as `study.py run` builds them, with the run folder, the model
    folder and the data folder as RUN, MODELS and DATA, so a reader can rerun any one figure."""
    steps = (zeroshot_steps(Path("RUN"), list(MODELS), Path("MODELS")) + bon_steps(Path("RUN"), list(MODELS), Path("MODELS"))
             + grpo_steps(Path("RUN"), Path("MODELS")))
    lines = ["## Commands", "", "Each step of `python studies/scale/study.py run --output-dir RUN` (RUN: the run folder; "
             "MODELS: the folder `get_qwen_coder.sh` fills; DATA: the shared data folder; the 135M is the embedded "
             "default and takes no --model; RUN/grpo/prompts.jsonl is a seeded sample of GSM8K train the study writes "
             "first). The held-out tables come from `srgrpo compare --base grpo/eval/base grpo/eval/base "
             "grpo/eval/ARM ...` and `srgrpo compare --base grpo/eval/random grpo/eval/random grpo/eval/ARM ...`, "
             "run in RUN, the numbers here from `python studies/scale/study.py report --output-dir RUN`.", "", "```bash"]
    for step in steps:
        lines += [f"# {step.name}", " ".join(["srgrpo", *step.argv[3:]]).replace(str(shared_data()), "DATA")]
    return lines + ["```", ""]


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def ci(interval) -> str:
    return "" if not interval else f" [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]"


def zeroshot_table(zeroshot: dict) -> list[str]:
    models = list(zeroshot)
    lines = ["| method | " + " | ".join(f"{m}: all [95% CI] | LC (n) | Chat Hard | Code" for m in models) + " |",
             "|---|" + "---|---|---|---|" * len(models)]
    for method in ZEROSHOT_METHODS:
        cells = []
        for m in models:
            r = zeroshot[m].get(method)
            if r is None:
                cells += ["–"] * 4
                continue
            cells += [pct(r["headline"]) + ci(r["headline_ci"]),
                      f"{pct(r['length_controlled'])}{ci(r['length_controlled_ci'])} ({r['length_controlled_n']})",
                      pct(r["sections"].get("Chat Hard (LLMBar)")), pct(r["sections"].get("Code (HumanEvalPack)"))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def plot_zeroshot(zeroshot: dict, params: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if m in zeroshot]
    x = [params.get(m, MODELS[m][1]) for m in models]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    panels = [("all (mean of sections)", lambda r: (r["headline"], r["headline_ci"]))] + [
        (name, lambda r, n=name: (r["sections"].get(n), r["section_ci"].get(n))) for name in SECTIONS]
    colours = plt.get_cmap("tab10")
    for ax, (title, pick) in zip(axes, panels):
        for i, method in enumerate(PLOTTED):
            points = [pick(zeroshot[m][method]) for m in models if method in zeroshot[m]]
            if len(points) != len(models):
                continue
            y = [100 * p[0] for p in points]
            err = np.array([[100 * (p[0] - p[1][0]), 100 * (p[1][1] - p[0])] for p in points]).T
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method, color=colours(i), alpha=0.85)
        ax.axhline(50, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(8e7, 3e9)  # the three sizes' range, so a partial study keeps its axes
        ax.set_title(title)
        ax.set_xlabel("parameters")
    axes[0].set_ylabel(f"pairwise accuracy, % ({PAIRS_PER_SUBSET} pairs per subset, 95% CI)")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Zero-shot reward accuracy against model size (RewardBench v1 subsets)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bon_table(bon: dict) -> list[str]:
    lines = ["| model | dataset | budget | hit budget | greedy | selector | N=1 | N=2 | N=4 | N=8 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, per in bon.items():
        for dataset, r in per.items():
            for selector, accs in r["selectors"].items():
                cells = [pct(accs.get(str(n))) + ci(r["intervals"].get(selector, {}).get(str(n)))
                         for n in (1, 2, 4, 8)]
                lines.append(f"| {model} | {dataset} | {BON_DATASETS[dataset]} | {pct(r['unfinished_fraction'])}% | "
                             f"{pct(r['greedy'])}{ci(r['greedy_interval'])} | {selector} | " + " | ".join(cells) + " |")
    return lines


def plot_bon(bon: dict, path: Path) -> None:
    """Accuracy against N, one row per model and one column per dataset; each selector's 95%
    interval as a band, greedy's as a grey band around its dashed line, the oracle dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if m in bon]
    if not models:
        return
    fig, axes = plt.subplots(len(models), len(BON_DATASETS), figsize=(5 * len(BON_DATASETS), 3.6 * len(models)),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for row, model in zip(axes, models):
        for ax, dataset in zip(row, BON_DATASETS):
            ax.set_title(f"{model}: {dataset}")
            r = bon[model].get(dataset)
            if r is None:
                ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes, color="grey")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for i, (selector, accs) in enumerate(r["selectors"].items()):
                ns = sorted(int(n) for n in accs)
                band = [r["intervals"].get(selector, {}).get(str(n)) for n in ns]
                ax.plot(ns, [100 * accs[str(n)] for n in ns], marker="o", color=colours(i), label=selector)
                if all(band):
                    ax.fill_between(ns, [100 * lo for lo, _ in band], [100 * hi for _, hi in band], color=colours(i),
                                    alpha=0.1)
            oracle = r.get("oracle") or {}
            if oracle:  # the ceiling: a question counts when any of its first N samples is right
                ax.plot(ns, [100 * oracle[str(n)] for n in ns], color="grey", linestyle=":", label="oracle")
            ax.axhline(100 * r["greedy"], color="black", linestyle="--", label="greedy")
            ax.axhspan(*(100 * v for v in r["greedy_interval"]), color="grey", alpha=0.1)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns, labels=[str(n) for n in ns])
            ax.set_xlabel("N (samples to choose from)")
            ax.set_ylabel("accuracy, %")
            ax.legend(fontsize=7)
    fig.suptitle(f"Best-of-N, first {BON_QUESTIONS} questions (95% bootstrap bands)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


GLANCE_SCORERS = [("stable_rank", "stable rank"), ("mean_logprob", "mean log-prob"),
                  ("self_certainty", "self-certainty"), ("ipo", "IPO judge"), ("random", "random")]
GLANCE_SELECTORS = ["stable_rank", "random", "self_certainty", "majority"]


def glance_section(zeroshot: dict, bon: dict, grpo: dict) -> list[str]:
    """The study's answer in three small tables, each figure with its interval; the sections below
    hold the detail."""
    lines = ["## At a glance", ""]
    if zeroshot:
        lines += ["Zero-shot pairwise accuracy (%), both sections:", "",
                  "| model | " + " | ".join(label for _, label in GLANCE_SCORERS) + " |",
                  "|---" * (len(GLANCE_SCORERS) + 1) + "|"]
        for model, methods in zeroshot.items():
            lines.append(f"| {model} | " + " | ".join(
                pct(methods[m]["headline"]) + ci(methods[m]["headline_ci"]) if m in methods else "–"
                for m, _ in GLANCE_SCORERS) + " |")
        lines.append("")
    if bon:
        lines += ["Best-of-N at N = 8, accuracy (%):", "",
                  "| model | dataset | greedy | " + " | ".join(GLANCE_SELECTORS) + " | oracle |",
                  "|---" * (len(GLANCE_SELECTORS) + 4) + "|"]
        for model, per in bon.items():
            for dataset, r in per.items():
                cells = [pct(r["selectors"].get(sel, {}).get("8")) + ci(r["intervals"].get(sel, {}).get("8"))
                         for sel in GLANCE_SELECTORS]
                lines.append(f"| {model} | {dataset} | {pct(r['greedy'])}{ci(r['greedy_interval'])} | "
                             + " | ".join(cells) + f" | {pct(r.get('oracle', {}).get('8'))} |")
        lines.append("")
    rows = {row["policy"]: row for row in (grpo.get("vs_base") or {}).get("rows", [])}
    if rows:
        against_random = {row["policy"]: row for row in (grpo.get("vs_random") or {}).get("rows", [])}
        task = HELD_OUT["task"]
        lines += [f"SR-GRPO on {GRPO_MODEL}, held-out {task} accuracy (%) and differences (points, paired "
                  "bootstrap 95%):", "", "| policy | accuracy | vs step 0 | vs the random arm |", "|---|---|---|---|"]
        for policy, row in rows.items():
            lines.append(f"| {policy} | {pct(row['accuracy'][task])}{ci(row['intervals'][task])} | "
                         f"{difference(row, task)} | {difference(against_random.get(policy, {}), task)} |")
        lines.append("")
    return lines if len(lines) > 2 else lines + ["Nothing has finished yet.", ""]


def difference(row: dict, task: str) -> str:
    d = row.get("vs_base", {}).get(task)
    return "–" if not d else f"{100 * d['absolute']:+.1f}{ci(d['interval'])}"


def zeroshot_section(zeroshot: dict, params: dict, report_dir: Path) -> list[str]:
    lines = [f"## Zero-shot reward (RewardBench v1 subsets, first {PAIRS_PER_SUBSET} pairs of each)", ""]
    if not zeroshot:
        return lines + ["No model finished yet.", ""]
    plot_zeroshot(zeroshot, params, report_dir / "zeroshot_vs_size.png")
    return lines + zeroshot_table(zeroshot) + ["", "![accuracy against model size](zeroshot_vs_size.png)", ""]


def bon_section(bon: dict, picks: dict, report_dir: Path) -> list[str]:
    lines = [f"## Best-of-N (first {BON_QUESTIONS} questions, N = 1, 2, 4, 8)", ""]
    if not bon:
        return lines + ["Not run yet.", ""]
    plot_bon(bon, report_dir / "bon_vs_n.png")
    return lines + bon_table(bon) + ["", "![accuracy against N](bon_vs_n.png)", ""] + bon_pick_table(picks) + [""]


def finished_arms_table(arms: dict) -> list[str]:
    if not arms:
        return ["No arm has finished yet."]
    lines = ["Finished arms:", "", "| arm | steps | s/step | collapse step |", "|---|---|---|---|"]
    for arm, a in arms.items():
        per_step = f"{a['seconds'] / a['global_step']:.0f}" if a.get("global_step") and a.get("seconds") else "–"
        collapse = (a.get("collapse") or {}).get("collapse_step", "–")
        lines.append(f"| {arm} | {a['global_step']} | {per_step} | {collapse} |")
    return lines


def grpo_section(run: Path, grpo: dict, metrics: dict[str, list[dict]], report_dir: Path) -> list[str]:
    lines = [f"## SR-GRPO on {GRPO_MODEL} ({GRPO_STEPS} steps per arm; held-out {HELD_OUT['task']}, "
             f"{HELD_OUT['limit']} questions)", ""]
    base = read_json(run / "grpo" / "eval" / "base" / "results.json", {}).get("tasks", {}).get(HELD_OUT["task"])
    if base:
        lines += [f"Step 0 (the base model), held-out greedy accuracy: {pct(base['accuracy'])}{ci(base['interval'])} "
                  f"on {base['n']} questions, {pct(base['unfinished_fraction'])}% cut at {base['max_new_tokens']} "
                  "tokens.", ""]
        lines += held_out_table(run)
    if grpo["progress"]:
        plot_grpo_curves(metrics, report_dir / "grpo_curves.png")
        lines += progress_table(grpo["progress"]) + ["", "![training measures per arm](grpo_curves.png)", ""]
        preference = code_preference(run)
        if preference:
            lines += code_preference_table(preference)
    lines += finished_arms_table(grpo["arms"])
    for key, title in (("vs_base", "against step 0 (the base)"), ("vs_random", "against the random arm")):
        table = run / "grpo" / f"compare_{key}.md"
        if grpo.get(key) and table.is_file():
            # srgrpo compare's table opens with a top-level heading; inside this report it is a sub-part
            lines += ["", f"Held-out accuracy {title}:", "", re.sub(r"^# ", "#### ", table.read_text().strip(), flags=re.M)]
    return lines + [""]


def timing_section(timings: list[dict]) -> list[str]:
    lines = ["## Time per unit of work", "", "| model | s per scored pair | s per generated token | s per GRPO step |",
             "|---|---|---|---|"]
    for row in timings:
        lines.append(f"| {row['model']} | " + " | ".join(
            f"{row[k]:.2f}" if k in row else "–"
            for k in ("seconds_per_pair", "seconds_per_generated_token", "seconds_per_grpo_step")) + " |")
    return lines + ["", "Wall seconds of each step as it ran on a 2-core CPU, summed over its resumptions: with "
                    "`--workers 2` a step had one thread and shared the machine with another step, so these are "
                    "what the study cost here, not srgrpo's speed on an idle machine (`benchmarks/` measures that). "
                    "A pair is scored by every method, both judges included; generated tokens count the N samples "
                    "only, while the time also covers the greedy answer and the scoring of every sample.", "",
                    PAPER, ""]


def write_report(run: Path, report_dir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = arm_metrics(run)
    zeroshot, bon, grpo = zeroshot_results(run), bon_results(run), grpo_results(run, metrics)
    picks, params = bon_pick_profile(run), loaded_parameters(run)
    timings = timing_rows(run, bon, grpo)
    done = read_json(run / "done.json", {})
    lines = (["# Scale study: report", "", f"Steps done: {len(done)} ({', '.join(sorted(done)) or 'none'}).", ""]
             + glance_section(zeroshot, bon, grpo) + zeroshot_section(zeroshot, params, report_dir) + bon_section(bon, picks, report_dir)
             + grpo_section(run, grpo, metrics, report_dir) + timing_section(timings) + LIMITS + commands_section())
    (report_dir / "report.md").write_text("\n".join(lines))
    results = {"zeroshot": zeroshot, "bon": bon, "bon_picks": picks, "grpo": grpo, "timings": timings,
               "parameters": params, "done": done}
    (report_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
