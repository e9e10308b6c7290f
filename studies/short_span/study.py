"""Study: what stable rank should mean for a response of very few tokens (the short-span rule).

SR of one token's row is exactly 1 and SR of a few rows is close to 1, so short answers tie near the
bottom whatever they say. The candidate rules are values of `ScoringOptions.min_span_tokens` (0 = off,
N = a response shorter than N tokens is scored over the N tokens that end with it), plus the whole
sequence (span=full) as a reference. One forward pass per item (embedded SmolLM2-135M-Instruct,
float32, chat template, 512-token window, states after the final norm); every rule's SR is then read
off the same states, so the rules differ only in the rows they take.

Sets:
  v1-short  the pairs of the offline RewardBench v1 file where either response has fewer than 8
            tokens (--below; and the sub-group under 4); accuracy = chosen strictly above rejected.
  mmlu-bo4  a synthetic short-answer best-of-4 in RewardBench 2's format: MMLU-Redux questions
            (error_type ok) whose four choices all have at most 8 tokens and whose question has at
            most 48 (cheap to run on a shared CPU), the first of each subject; chosen = the correct choice, rejected = the other three; RB2's best-of-4 credit
            (1 / completions tied at the top, 0 unless the correct one is at the top; chance 25%).

From the repository root (`python -m studies.short_span.study ...` works the same):

    python studies/short_span/study.py [--rules 0,4,8,16,32] [--out FILE]

Writes a Markdown table (stdout and --out, default studies/short_span/results/short_span.md) with paired
bootstrap intervals of each rule's difference from "off"; the scores of each set are saved next to
it (.npz), and a second run rebuilds the table from them without scoring again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from srgrpo import load_model, metrics
from srgrpo.rewardbench.v2 import best_of_n_credit
from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer
from srgrpo.text import short_span_start

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SRGRPO_SHARED_DATA", ROOT / ".." / "shared" / "data"))


def response_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def v1_short(tokenizer, below: int = 16) -> list[dict]:
    rows = [json.loads(line) for line in (SHARED / "preference" / "rewardbench_offline.jsonl").open()]
    out = []
    for r in rows:
        shortest = min(response_tokens(tokenizer, r["chosen"]), response_tokens(tokenizer, r["rejected"]))
        if shortest < below:
            out.append({"id": str(r["id"]), "prompt": r["prompt"], "completions": [r["chosen"], r["rejected"]],
                        "shortest": shortest})
    return out


def mmlu_bo4(tokenizer, max_tokens: int = 8, per_subject: int = 1, max_question_tokens: int = 48) -> list[dict]:
    out, taken = [], {}
    for line in (SHARED / "eval" / "mmlu_redux.jsonl").open():
        r = json.loads(line)
        if r["error_type"] != "ok" or taken.get(r["subject"], 0) >= per_subject:
            continue
        choices = [str(c) for c in r["choices"]]
        if len(set(choices)) < 4 or max(response_tokens(tokenizer, c) for c in choices) > max_tokens:
            continue
        if response_tokens(tokenizer, r["question"]) > max_question_tokens:
            continue
        answer = int(r["answer"])
        taken[r["subject"]] = taken.get(r["subject"], 0) + 1
        order = [answer] + [k for k in range(4) if k != answer]
        out.append({"id": f"{r['subject']}:{r['index']}", "prompt": r["question"],
                    "completions": [choices[k] for k in order]})
    return out


def score_all(scorer: StableRankScorer, groups: list[dict], rules: list[int]) -> dict[str, np.ndarray]:
    """SR of every completion of every group under each rule (and span=full): name -> (items,)."""
    prompts = [g["prompt"] for g in groups for _ in g["completions"]]
    responses = [c for g in groups for c in g["completions"]]
    encoded = scorer.encode(prompts, responses)
    names = [f"min_span_tokens={n}" for n in rules] + ["span=full"]
    values = {name: np.full(len(encoded), np.nan) for name in names}
    dtype = torch.float32
    started = time.perf_counter()
    for done, idx in enumerate(scorer.engine.plan(encoded)):
        items = [encoded[i] for i in idx]
        ids, mask = scorer.engine.collate(items)
        states = scorer.hidden_states(ids, mask)
        for row, (i, e) in enumerate(zip(idx, items)):
            for n in rules:
                start = short_span_start(e.response_start, e.response_end, n)
                values[f"min_span_tokens={n}"][i] = float(metrics.stable_rank(states[row, start:e.response_end], None, dtype))
            values["span=full"][i] = float(metrics.stable_rank(states[row, : len(e.input_ids)], None, dtype))
        if done % 5 == 0:
            print(f"  batch {done}: {time.perf_counter() - started:.0f} s", flush=True)
    return values


def split(values: np.ndarray, groups: list[dict]) -> list[np.ndarray]:
    out, k = [], 0
    for g in groups:
        out.append(values[k:k + len(g["completions"])])
        k += len(g["completions"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", default="0,4,8,16,32")
    parser.add_argument("--below", type=int, default=8, help="v1 pairs with a response under this many tokens")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "short_span.md")
    args = parser.parse_args()
    rules = [int(x) for x in args.rules.split(",")]
    model, tokenizer = load_model(dtype="float32")
    scorer = StableRankScorer(model, tokenizer, ScoringOptions(max_length=512, batch_size=8))
    sets = {"mmlu-bo4": mmlu_bo4(tokenizer), "v1-short": v1_short(tokenizer, args.below)}
    units = {}  # set -> rule -> per-unit value (best-of-4 credit / pair correct)
    extra = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, groups in sets.items():
        path = args.out.with_suffix(f".{name}.npz")
        if path.is_file():  # scored before: the table is rebuilt from the saved scores
            saved = np.load(path)
            values = {k.replace("min_span_tokens_", "min_span_tokens=").replace("span_full", "span=full"): saved[k]
                      for k in saved.files}
        else:
            print(f"{name}: {len(groups)} groups", flush=True)
            values = score_all(scorer, groups, rules)
            np.savez(path, **{k.replace("=", "_"): v for k, v in values.items()})
        for rule, v in values.items():
            per = split(v, groups)
            if name == "v1-short":
                units.setdefault(name, {})[rule] = np.array([s[0] > s[1] for s in per], dtype=float)
                extra.setdefault(rule, {})["v1 ties"] = np.mean([s[0] == s[1] for s in per])
            else:
                units.setdefault(name, {})[rule] = np.array([best_of_n_credit(list(s)) for s in per])
                extra.setdefault(rule, {})["SR exactly 1"] = float(np.mean(v == 1.0))
    rng = np.random.default_rng(0)
    off = "min_span_tokens=0"
    header = ["rule"]
    for name in units:
        n = len(units[name][off])
        label = "MMLU short answers, best-of-4 credit" if name == "mmlu-bo4" else f"v1 pairs with a response < {args.below} tokens, accuracy"
        header += [f"{label} (n={n})", "minus off [95% CI]"]
    header += ["MMLU completions with SR exactly 1", "v1 pairs tied"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for rule in units[next(iter(units))]:
        cells = [f"`{rule}`"]
        for name, by_rule in units.items():
            diff = by_rule[rule] - by_rule[off]
            picks = rng.integers(0, len(diff), size=(2000, len(diff)))
            lo, hi = np.percentile(diff[picks].mean(axis=1), [2.5, 97.5])
            cells += [f"{100 * by_rule[rule].mean():.1f}",
                      "—" if rule == off else f"{100 * diff.mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"]
        cells += [f"{100 * extra[rule].get('SR exactly 1', float('nan')):.1f}",
                  f"{100 * extra[rule].get('v1 ties', float('nan')):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
