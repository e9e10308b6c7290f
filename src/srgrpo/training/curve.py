"""Held-out greedy evaluation during training: `--eval_every N` evaluates the policy every N
optimizer steps (and before the first), writing one line per evaluation to `eval_curve.jsonl`:

    {"step", "accuracy", "n", "mean_length", "probe_refusal", "probe_length", "probe_n", "seconds"}

`accuracy` is `srgrpo.evaluation.accuracy.greedy_accuracy` on the fixed held-out questions
(`--eval_dataset`, `--eval_limit`); `mean_length` the mean greedy answer length in tokens. With `--probe_prompts FILE` (a JSONL of {"prompt"} rows: ordinary requests
that merely sound sensitive, e.g. "How do I kill a Python process?"), the same greedy generation
answers each probe and `probe_refusal` is the share that `srgrpo.training.hacking.is_refusal` flags:
a drift toward refusing shows there. Every answer goes to `eval_curve_answers.jsonl`.

Only the main process evaluates (the others wait at the next collective operation). A resumed run
keeps the lines up to its checkpoint and evaluates on from there.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

from transformers import TrainerCallback

from srgrpo.evaluation.accuracy import greedy_accuracy
from srgrpo.generation import HFGenerator, Sampling
from srgrpo.training.hacking import is_refusal

logger = logging.getLogger("srgrpo.train")


def read_probe_prompts(path: str | Path) -> list[str]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    bad = [i + 1 for i, r in enumerate(rows) if not isinstance(r.get("prompt"), str)]
    if bad or not rows:
        raise ValueError(f"--probe-prompts {path}: every line must be {{\"prompt\": text}} (bad lines: {bad or 'none'})")
    return [r["prompt"] for r in rows]


def read_curve(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class GreedyCurveCallback(TrainerCallback):
    """Evaluates the policy greedily every `every` steps (see the module docstring)."""

    def __init__(self, policy, tokenizer, problems, output_dir: str | Path, every: int, probes=(),
                 max_new_tokens: int = 256, batch_size: int = 8):
        self.policy, self.tokenizer, self.problems = policy, tokenizer, list(problems)
        self.probes = list(probes)
        self.every, self.max_new_tokens, self.batch_size = every, max_new_tokens, batch_size
        self.path = Path(output_dir) / "eval_curve.jsonl"
        self.answers_path = Path(output_dir) / "eval_curve_answers.jsonl"
        self.rows: list[dict] = read_curve(self.path)  # read before training, like the metrics

    def evaluations(self) -> list[dict]:
        return list(self.rows)

    def evaluate(self, step: int) -> dict:
        model = self.policy
        was_training = model.training
        model.eval()
        started = time.perf_counter()
        try:
            accuracy, rows = greedy_accuracy(model, self.tokenizer, self.problems, max_new_tokens=self.max_new_tokens,
                                             batch_size=self.batch_size)
            probe_texts = []
            if self.probes:
                generator = HFGenerator(model, self.tokenizer, batch_size=self.batch_size, scoring="none")
                outputs = generator.generate([[{"role": "user", "content": p}] for p in self.probes], 1,
                                             Sampling(max_new_tokens=self.max_new_tokens, greedy=True))
                probe_texts = [out[0].text for out in outputs]
        finally:
            model.train(was_training)

        def n_tokens(text):
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

        row = {"step": step, "accuracy": accuracy, "n": len(rows),
               "mean_length": statistics.fmean(n_tokens(r["completion"]) for r in rows) if rows else None}
        if self.probes:
            row.update(probe_refusal=statistics.fmean(map(is_refusal, probe_texts)),
                       probe_length=statistics.fmean(map(n_tokens, probe_texts)), probe_n=len(probe_texts))
        row["seconds"] = round(time.perf_counter() - started, 1)
        with self.answers_path.open("a") as out:
            for r in rows:
                out.write(json.dumps({"step": step, "kind": "question", **r}, default=str) + "\n")
            for prompt, text in zip(self.probes, probe_texts):
                out.write(json.dumps({"step": step, "kind": "probe", "prompt": prompt, "completion": text,
                                      "refusal": is_refusal(text)}) + "\n")
        return row

    def _maybe(self, state, force: bool = False):
        step = state.global_step
        if not state.is_world_process_zero or any(r["step"] == step for r in self.rows):
            return
        if not force and step % self.every:
            return
        row = self.evaluate(step)
        self.rows.append(row)
        with self.path.open("a") as out:
            out.write(json.dumps(row) + "\n")
        logger.warning("step %d: held-out greedy accuracy %.3f%s", step, row["accuracy"],
                       f", probe refusals {row['probe_refusal']:.2f}" if "probe_refusal" in row else "")

    def on_train_begin(self, args, state, control, **kwargs):
        self.rows = [r for r in self.rows if r["step"] <= state.global_step]
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self._maybe(state, force=state.global_step == 0)

    def on_step_end(self, args, state, control, **kwargs):
        self._maybe(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._maybe(state, force=True)  # the last step, whatever its number
