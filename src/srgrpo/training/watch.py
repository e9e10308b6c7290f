"""Reward-hacking and collapse watch for SR-GRPO.

A stable-rank reward can be gamed: a policy may raise SR while its completions get shorter,
loop on the same phrases, or all say the same thing. Two pieces watch for that:

- `batch_watch_stats`, called by the reward on every scored batch, measures SR spread within each
  group of completions of one prompt, the share of groups with zero spread (no learning signal), a
  within-completion repetition rate and the diversity across a group's completions. TRL averages
  these over the logging interval and logs them beside its own reward and length metrics.
- `StepProgress` is the console's one progress bar, showing each step's reward, KL and length.
- `WatchCallback` writes one line per logged step to `metrics.jsonl` and warns (optionally stops)
  when SR rises while length or diversity collapses, comparing recent steps with the first ones.
  Every process of a distributed run keeps the history (so all stop together); only the main
  process writes the file and the log.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from transformers import ProgressCallback, TrainerCallback

from srgrpo.records import read_jsonl
from srgrpo.training.hacking import CollapseRule, collapse_step, within_group_length_corr

logger = logging.getLogger("srgrpo.watch")

# metrics.jsonl column -> key in the trainer's logs (TRL's own metrics and those of batch_watch_stats).
LOG_KEYS = {
    "reward_mean": "reward",
    "reward_std": "reward_std",
    "sr_mean": "rewards/stable_rank/mean",
    "sr_group_std": "stable_rank/group_std",
    "zero_spread_frac": "stable_rank/zero_spread_frac",
    "unscored_frac": "stable_rank/unscored_frac",
    "completion_length": "completions/mean_length",
    "clipped_ratio": "completions/clipped_ratio",
    "repetition": "completions/repetition",
    "group_diversity": "completions/group_diversity",
    "kl": "kl",
    "entropy": "entropy",
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
}


def ngrams(ids: Sequence[int], n: int) -> list[tuple]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def repetition_rate(ids: Sequence[int], n: int = 3) -> float:
    """Share of a sequence's n-grams that repeat an earlier one: 0 for no repeat, near 1 for a loop
    (1 - distinct-n). Sequences with fewer than n tokens have none."""
    grams = ngrams(ids, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def group_diversity(group: Sequence[Sequence[int]], n: int = 2) -> float:
    """distinct-n of a group's completions pooled: 1 when no n-gram is shared or repeated, 1/K when
    all K completions are the same. NaN when the group has no n-gram at all."""
    grams = [g for ids in group for g in ngrams(ids, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def strip_trailing(ids: Sequence[int], drop: set[int]) -> list[int]:
    """`ids` without the `drop` ids that end it (the end-of-turn/padding that closes a completion)."""
    ids = list(ids)
    while ids and ids[-1] in drop:
        ids.pop()
    return ids


def batch_watch_stats(
    rewards: Sequence[float | None],
    completion_ids: Sequence[Sequence[int]],
    group_size: int,
    special_ids: set[int] | None = None,
    prefix: str = "stable_rank",
    completions: bool = True,
) -> dict[str, float]:
    """Watch metrics of one scored batch. Completions come in consecutive groups of `group_size`
    (TRL repeats each prompt that many times in a row). Only finite values are returned (a NaN
    would poison TRL's average over the logging interval). The reward's own statistics are named
    `{prefix}/...` (the reward's name); `completions=False` leaves out the `completions/*` ones
    (another reward of the same batch logs them)."""
    group_size = max(int(group_size), 1)
    drop = special_ids or set()
    ids = [strip_trailing(c, drop) for c in completion_ids]
    groups = [range(k, min(k + group_size, len(rewards))) for k in range(0, len(rewards), group_size)]
    spreads, zero_spread, diversities = [], 0, []
    for group in groups:
        scored = [rewards[i] for i in group if rewards[i] is not None]
        spread = statistics.stdev(scored) if len(scored) >= 2 else 0.0
        spreads.append(spread)
        zero_spread += math.isclose(spread, 0.0, abs_tol=1e-8)
        diversities.append(group_diversity([ids[i] for i in group]))
    length_corr = within_group_length_corr(rewards, [len(c) for c in ids], group_size)
    stats = {
        f"{prefix}/group_std": statistics.fmean(spreads) if spreads else math.nan,
        f"{prefix}/zero_spread_frac": zero_spread / len(groups) if groups else math.nan,
        f"{prefix}/unscored_frac": sum(r is None for r in rewards) / len(rewards) if rewards else math.nan,
        f"{prefix}/length_corr": math.nan if length_corr is None else length_corr,
    }
    if completions:
        stats["completions/repetition"] = statistics.fmean(repetition_rate(c) for c in ids) if ids else math.nan
        stats["completions/group_diversity"] = (statistics.fmean(d for d in diversities if not math.isnan(d))
                                                if any(not math.isnan(d) for d in diversities) else math.nan)
    return {k: v for k, v in stats.items() if math.isfinite(v)}


def metrics_row(step: int, logs: dict) -> dict | None:
    """One metrics.jsonl line from a trainer log, or None for logs that are not a training step
    (e.g. the final runtime summary)."""
    if "reward" not in logs:
        return None
    row = {"step": step}
    for column, key in LOG_KEYS.items():
        value = logs.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            row[column] = float(value)
    mapped = set(LOG_KEYS.values())
    for key, value in logs.items():  # every reward's and hacking metric under TRL's own name
        named = "/" in key and (key.startswith("rewards/") or key not in mapped)
        if named and isinstance(value, (int, float)) and math.isfinite(value):
            row[key] = float(value)
    return row


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl, less a line cut when a run was killed while writing it, so a
    resumed run and a report of a running one still read the rest."""
    return read_jsonl(path)


@dataclass
class CollapseThresholds:
    """When the watch warns: SR up by more than `sr_rise` (relative) between the first and the
    last `window` logged steps, while at the same time completion length fell by more than
    `length_drop` (relative), group diversity fell by more than `diversity_drop` (relative), or
    repetition rose by more than `repetition_rise` (absolute)."""

    window: int = 5
    sr_rise: float = 0.02
    length_drop: float = 0.3
    diversity_drop: float = 0.3
    repetition_rise: float = 0.2


def collapse_warning(history: Sequence[dict], t: CollapseThresholds) -> str | None:
    """A message when the recent steps of `history` (metrics rows) show SR rising while length or
    diversity collapses; None otherwise, or while there are fewer than 2 windows of steps."""
    if len(history) < 2 * t.window:
        return None

    def mean(rows, column):
        values = [r[column] for r in rows if column in r]
        return statistics.fmean(values) if values else None

    first, last = history[: t.window], history[-t.window :]
    column = "sr_mean" if any("sr_mean" in r for r in history) else "reward_mean"  # stable rank, else the total
    sr0, sr1 = mean(first, column), mean(last, column)
    if sr0 is None or sr1 is None or not sr1 > sr0 * (1 + t.sr_rise):
        return None
    symptoms = []
    len0, len1 = mean(first, "completion_length"), mean(last, "completion_length")
    if len0 and len1 is not None and len1 < len0 * (1 - t.length_drop):
        symptoms.append(f"completion length {len0:.1f} -> {len1:.1f}")
    div0, div1 = mean(first, "group_diversity"), mean(last, "group_diversity")
    if div0 and div1 is not None and div1 < div0 * (1 - t.diversity_drop):
        symptoms.append(f"group diversity {div0:.3f} -> {div1:.3f}")
    rep0, rep1 = mean(first, "repetition"), mean(last, "repetition")
    if rep0 is not None and rep1 is not None and rep1 > rep0 + t.repetition_rise:
        symptoms.append(f"repetition {rep0:.3f} -> {rep1:.3f}")
    if not symptoms:
        return None
    what = "stable rank" if column == "sr_mean" else "reward"
    return f"possible reward hacking: {what} {sr0:.3f} -> {sr1:.3f} while " + ", ".join(symptoms)


class WatchCallback(TrainerCallback):
    """Writes `metrics.jsonl` (one line per logged step), warns when SR rises while length or
    diversity collapses, and finds the collapse step (`srgrpo.training.hacking.CollapseRule`, with
    the held-out evaluations that `evaluations()` returns, if given); with `stop_on_collapse`, the
    warning or the collapse step ends training (after a checkpoint)."""

    def __init__(self, metrics_path: str | Path, thresholds: CollapseThresholds | None = None,
                 stop_on_collapse: bool = False, collapse_rule: CollapseRule | None = None, evaluations=None):
        self.metrics_path = Path(metrics_path)
        self.thresholds = thresholds or CollapseThresholds()
        self.stop_on_collapse = stop_on_collapse
        self.collapse_rule = collapse_rule or CollapseRule()
        self.evaluations = evaluations or (lambda: [])
        self.collapse: dict | None = None
        self.history: list[dict] = []
        self.warnings: list[str] = []
        self._collapsing = False
        # Read now, before training: in a distributed run the main process rewrites the file when
        # training begins, and no process should read it half-written.
        self._previous = read_metrics(self.metrics_path)

    def on_train_begin(self, args, state, control, **kwargs):
        # On resume, drop lines logged after the checkpoint: those steps are about to run again.
        rows = [r for r in self._previous if r["step"] <= state.global_step]
        if state.is_world_process_zero:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.history = rows
        self.collapse = collapse_step(rows, self.collapse_rule, self.evaluations()) if rows else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        row = metrics_row(state.global_step, logs or {})
        if row is None:
            return
        self.history.append(row)
        message = collapse_warning(self.history, self.thresholds)
        if message:
            row["watch_warning"] = message
            if not self._collapsing:  # warn when the condition sets in, not on every step it lasts
                self.warnings.append(message)
                if state.is_world_process_zero:
                    logger.warning("step %d: %s", state.global_step, message)
        self._collapsing = message is not None
        if self.collapse is None:
            self.collapse = collapse_step(self.history, self.collapse_rule, self.evaluations())
            if self.collapse is not None:
                row["collapse_step"] = self.collapse["collapse_step"]
                if state.is_world_process_zero:
                    logger.warning("step %d: collapse step %d: %s", state.global_step,
                                   self.collapse["collapse_step"], self.collapse["reason"])
        if self.stop_on_collapse and (message or "collapse_step" in row):
            if state.is_world_process_zero:
                logger.warning("step %d: stopping training (stop_on_collapse)", state.global_step)
            control.should_training_stop = True
            control.should_save = True
        if state.is_world_process_zero:
            with self.metrics_path.open("a") as out:
                out.write(json.dumps(row) + "\n")
        return control


# The bar's columns: (label, trainer log key, format). The full rows go to metrics.jsonl.
PROGRESS_COLUMNS = (("reward", "reward", "{:.3f}"), ("kl", "kl", "{:.4f}"), ("length", "completions/mean_length", "{:.0f}"))


class StepProgress(ProgressCallback):
    """transformers' training bar, with the logged step's reward, KL and completion length beside it
    instead of a printed dict per step (those go to metrics.jsonl)."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description("training")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {label: fmt.format(logs[key]) for label, key, fmt in PROGRESS_COLUMNS
                     if isinstance(logs.get(key), (int, float))}
            if shown:
                self.training_bar.set_postfix(shown, refresh=True)


def use_console_progress(trainer) -> None:
    """Swap the trainer's progress bar for StepProgress (no bar when the user turned them off)."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StepProgress())
