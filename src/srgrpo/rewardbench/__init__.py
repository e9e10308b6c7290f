"""Evaluation (the RewardBench app): stable rank and baselines as zero-shot reward models.

Where each piece of it lives, starting here:

- the command: `srgrpo rewardbench` = `srgrpo.cli.rewardbench`;
- the run: `srgrpo.rewardbench.runner.run_rewardbench(model, tokenizer, pairs, output_dir,
  RewardBenchConfig(scorers=..., options=..., run_info=...))` (`run_rewardbench2` for RewardBench 2),
  resumable, writes results.json / pairs.jsonl / layer_sweep.json / run.json;
- the data: `srgrpo.rewardbench.preference_data.load_preference_pairs`;
- the protocol: `srgrpo.rewardbench.v1` (sections, subset weights, `PROTOCOLS`, the summary);
- the methods compared (`--scorers`): `srgrpo.rewardbench.methods.METHODS` (every feature, lengths, random, the judges);
- the results' types: `srgrpo.results.RewardBenchSummary`, `PairRow`;
- the report: `srgrpo.reports.rewardbench.write_rewardbench_report_from_dir`.

The names load on first use (the runner pulls in torch and the model code).
"""

import importlib

_PUBLIC = {
    "run_rewardbench": "srgrpo.rewardbench.runner",
    "run_rewardbench2": "srgrpo.rewardbench.runner",
    "RewardBenchConfig": "srgrpo.rewardbench.runner",
    "load_preference_pairs": "srgrpo.rewardbench.preference_data",
    "PreferencePair": "srgrpo.rewardbench.preference_data",
    "summarize_rewardbench": "srgrpo.rewardbench.v1",
    "PROTOCOLS": "srgrpo.rewardbench.v1",
    "METHODS": "srgrpo.rewardbench.methods",
    "parse_methods": "srgrpo.rewardbench.methods",
}
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'srgrpo.rewardbench' has no attribute {name!r}")
