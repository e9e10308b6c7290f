"""Evaluation (the RewardBench app): stable rank and baselines as zero-shot reward models.

Where each piece of it lives, starting here:

- the command: `srgrpo rewardbench` = `srgrpo.cli.rewardbench`;
- the run: `srgrpo.evaluation.runner.run_rewardbench(model, tokenizer, pairs, output_dir,
  scorers=..., options=..., run_info=...)`, resumable, writes results.json / pairs.jsonl /
  layer_sweep.json / run.json;
- the data: `srgrpo.evaluation.preference_data.load_preference_pairs`;
- the protocol: `srgrpo.evaluation.rewardbench` (sections, subset weights, `PROTOCOLS`, the summary);
- the scorers compared: `srgrpo.evaluation.scorers.SCORERS` (every feature, lengths, random, the judges);
- the results' types: `srgrpo.results.RewardBenchSummary`, `PairRow`;
- the report: `srgrpo.reports.rewardbench.write_rewardbench_report_from_dir`.

The names load on first use (the runner pulls in torch and the model code).
"""

import importlib

_PUBLIC = {
    "run_rewardbench": "srgrpo.evaluation.runner",
    "load_preference_pairs": "srgrpo.evaluation.preference_data",
    "PreferencePair": "srgrpo.evaluation.preference_data",
    "summarize_rewardbench": "srgrpo.evaluation.rewardbench",
    "PROTOCOLS": "srgrpo.evaluation.rewardbench",
    "SCORERS": "srgrpo.evaluation.scorers",
    "parse_scorers": "srgrpo.evaluation.scorers",
}
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'srgrpo.evaluation' has no attribute {name!r}")
