"""`srgrpo rewardbench`: score preference pairs with every requested scorer, resumably, and report.

Flow: pairs -> items (each pair's chosen and rejected response) -> per-item scores (one shared
forward pass for every hidden-state and log-prob scorer, plus the judges' own passes) -> per-pair
outcomes -> RewardBench summaries -> results.json, pairs.jsonl, report.md and plots.

Nothing computed is lost: every item's scores are appended to `cache.jsonl` in the output folder
as soon as they exist. A run started again with the same arguments reads that file and computes
only what is missing, so its final numbers equal an uninterrupted run's. `run.json` records the
arguments that determine the numbers; a different run in the same folder is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm.auto import tqdm

from srgrpo import distributed
from srgrpo.evaluation.preference_data import PreferencePair
from srgrpo.evaluation.rewardbench import PairOutcome, section_of, summarize_rewardbench
from srgrpo.evaluation.preference_data import LOADER_VERSION
from srgrpo.evaluation.rewardbench import PROTOCOLS
from srgrpo.evaluation.scorers import SCORERS, random_score
from srgrpo.features import FEATURES, pinned_options
from srgrpo.options import ScoringOptions
from srgrpo.records import RunCache, run_versions, write_jsonl_atomic
from srgrpo.records import json_float as _json_float
from srgrpo.records import nan_if_none as _float
from srgrpo.records import prepare_output_dir as _prepare_output_dir
from srgrpo.scoring import StableRankScorer

SIDES = ("chosen", "rejected")
JUDGE_CHUNK = 32  # items per judge call between cache writes
DISTRIBUTED_ROUND = 64  # items per process between two gathers on the main process
OUTPUT_FILES = ("cache.jsonl", "run.json", "results.json", "layer_sweep.json", "pairs.jsonl", "report.md")


def _item_key(pair_id: str, side: str) -> str:
    return f"{pair_id}|{side}"


# The layer sweep is stable rank at every layer: its values are as current as this feature's version.
SWEEP_FEATURE = "stable_rank"


def _stale(record: dict | None, features, layers) -> tuple[tuple[str, ...], bool] | None:
    """What an item's cached record lacks: (features to compute, whether the layer sweep is needed),
    or None when it is complete. A record from before versions were kept holds version-1 values."""
    if record is None:
        return tuple(features), bool(layers)
    versions = record.get("versions", {})
    stale = tuple(f for f in features
                  if f not in record["values"] or versions.get(f, 1) != FEATURES[f].version)
    sweep = bool(layers) and (any(str(k) not in record["layers"] for k in layers)
                              or record.get("layers_version", 1) != FEATURES[SWEEP_FEATURE].version)
    return (stale, sweep) if stale or sweep else None


def _merge(old: dict | None, new: dict, sweep: bool) -> dict:
    """A recomputed record's new values over the old record's still-current ones."""
    if old is None:
        return new
    old_versions = old.get("versions", dict.fromkeys(old["values"], 1))
    merged = {**old, "values": {**old["values"], **new["values"]}, "versions": {**old_versions, **new["versions"]}}
    if sweep:
        merged["layers"], merged["layers_version"] = new["layers"], new["layers_version"]
    return merged


def _feature_stage(scorer: StableRankScorer, pairs, features, layers, cache: RunCache, progress: bool) -> None:
    """Per item: the requested features, the layer sweep, and the response's token count. Each item
    is cached as soon as its batch is done; under a distributed launcher the items are split across
    processes and cached by the main one after each round. An item cached before a feature's
    version changed gets that feature (only) computed again: the record keeps each value's version."""
    groups: dict[tuple[tuple[str, ...], bool], list] = {}
    for p in pairs:
        for side in SIDES:
            need = _stale(cache.get("features", _item_key(p.id, side)), features, layers)
            if need is not None:
                groups.setdefault(need, []).append((p, side))

    for (wanted, sweep), todo in groups.items():
        sweep_layers = list(layers) if sweep else []

        def compute(share, wanted=wanted, sweep_layers=sweep_layers) -> Iterable[tuple[str, dict]]:
            prompts = [p.prompt for p, _ in share]
            responses = [getattr(p, side) for p, side in share]
            layers_version = FEATURES[SWEEP_FEATURE].version
            if not wanted and not sweep_layers:  # only the token counts are wanted: no forward pass
                for (p, side), e in zip(share, scorer.encode(prompts, responses)):
                    yield _item_key(p.id, side), {"values": {}, "layers": {}, "truncated": e.truncated,
                                                  "response_tokens": e.response_end - e.response_start,
                                                  "warning": e.problem, "versions": {},
                                                  "layers_version": layers_version}
                return
            for item in scorer.iter_features(prompts, responses, list(wanted), sweep_layers=sweep_layers,
                                             progress=progress and not distributed.is_distributed()):
                p, side = share[item.index]
                yield _item_key(p.id, side), {
                    "values": {k: _json_float(v) for k, v in item.values.items()},
                    "layers": {str(k): _json_float(v) for k, v in item.layer_values.items()},
                    "response_tokens": item.response_tokens,
                    "truncated": item.truncated,
                    "warning": item.warning,
                    "versions": {k: FEATURES[k].version for k in item.values},
                    "layers_version": layers_version,
                }

        def store(key: str, record: dict, sweep=sweep) -> None:
            cache.put("features", key, _merge(cache.get("features", key), record, sweep))

        if not distributed.is_distributed():
            for key, record in compute(todo):
                store(key, record)
            continue
        for results in distributed.sharded_rounds(todo, DISTRIBUTED_ROUND, lambda share: list(compute(share))):
            for key, record in results:
                store(key, record)


def _chunked_stage(stage: str, keys: Sequence[str], compute: Callable[[list[int]], list], cache: RunCache,
                   progress: bool) -> None:
    """Run `compute` over the missing keys in chunks, caching after each chunk."""
    todo = [i for i, k in enumerate(keys) if not cache.has(stage, k)]
    with tqdm(total=len(todo), unit="item", desc=stage, disable=not (progress and todo and distributed.is_main())) as bar:
        # One chunk per process per round (one round = one chunk without a launcher).
        for results in distributed.sharded_rounds(todo, JUDGE_CHUNK, lambda share: list(zip(share, compute(share)))):
            for i, value in results:
                cache.put(stage, keys[i], _json_float(value))
            bar.update(len(results))


def _judge_stages(model, tokenizer, pairs, kinds: set[str], cache: RunCache, batch_size: int, progress: bool) -> None:
    from srgrpo import judges

    items = [(p, side) for p in pairs for side in SIDES]
    keys = [_item_key(p.id, side) for p, side in items]
    prompts = [p.prompt for p, _ in items]
    responses = [getattr(p, side) for p, side in items]
    sections = [section_of(p.subset) for p, _ in items]
    if "ipo" in kinds:
        _chunked_stage("ipo", keys, lambda idx: judges.ipo_scores(
            model, tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx],
            [sections[i] for i in idx], batch_size=batch_size), cache, progress)
    if "pointwise" in kinds:
        _chunked_stage("pointwise", keys, lambda idx: judges.pointwise_scores(
            model, tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx],
            batch_size=batch_size), cache, progress)
    if "pairwise" in kinds:
        _chunked_stage("pairwise", [p.id for p in pairs], lambda idx: judges.pairwise_verdicts(
            model, tokenizer, [pairs[i].prompt for i in idx], [pairs[i].chosen for i in idx],
            [pairs[i].rejected for i in idx], batch_size=batch_size), cache, progress)


def _item_score(spec, pair: PreferencePair, side: str, cache: RunCache, seed: int) -> float:
    key = _item_key(pair.id, side)
    feats = cache.get("features", key)
    if spec.kind == "feature":
        return spec.transform(_float(feats["values"].get(spec.feature)))
    if spec.kind == "length":
        return spec.transform(float(feats["response_tokens"]))
    if spec.kind == "random":
        return random_score(seed, pair.id, side)
    if spec.kind == "pairwise":
        verdict = cache.get("pairwise", pair.id)
        wins = {"chosen": verdict == 1, "rejected": verdict == -1}
        return 1.0 if wins[side] else 0.0  # disagreement between orders: a tie, which counts wrong
    return _float(cache.get(spec.kind, key))


def _outcomes(pairs, score_of: Callable[[PreferencePair, str], float], cache: RunCache) -> list[PairOutcome]:
    out = []
    for p in pairs:
        chosen_f, rejected_f = (cache.get("features", _item_key(p.id, s)) for s in SIDES)
        out.append(PairOutcome(p.id, p.subset, score_of(p, "chosen"), score_of(p, "rejected"),
                               chosen_f["response_tokens"], rejected_f["response_tokens"]))
    return out


def run_rewardbench(
    model,
    tokenizer,
    pairs: Sequence[PreferencePair],
    output_dir: str | Path,
    scorers: Sequence[str] = ("stable_rank",),
    options: ScoringOptions | None = None,
    layers: Sequence[int] = (),
    n_bootstrap: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    run_info: dict | None = None,
) -> dict | None:
    """Score `pairs` with every scorer and write results.json, pairs.jsonl (and layer_sweep.json)
    into `output_dir` (the report is `srgrpo.reports.rewardbench.write_rewardbench_report_from_dir`'s
    job); returns
    {scorer: summary} as written to results.json. `run_info` (model name, data source, ...) goes
    into run.json, so a resume with other arguments is refused; run.json also records the versions
of the features, scorers, data loader and protocol used (a feature whose version changed is
recomputed for the cached items, nothing else). Under a distributed launcher the
    items are split across processes; the main process writes everything and returns the results,
    the others return None."""
    if not pairs:
        raise ValueError("no preference pairs to evaluate")
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; choose from: {', '.join(SCORERS)}")
    options = options or ScoringOptions()
    output_dir = Path(output_dir)
    specs = [SCORERS[s] for s in scorers]
    features = sorted({s.feature for s in specs if s.kind == "feature"})
    used = [*features, *([SWEEP_FEATURE] if layers else [])]
    # Only what decides the numbers is pinned: the score-defining options and the used features' own
    # parameters, never the batch size. The versions: features are recomputed per item where stale,
    # the protocol's summary is recomputed on every run, the rest (judges, the data loader) pin.
    run_config = {**(run_info or {}), "scoring": pinned_options(options, used), "scorers": list(scorers),
                  "layers": list(layers), "pair_ids": [p.id for p in pairs], "seed": seed}
    versions = run_versions(
        features=FEATURES.versions(used),
        scorers={s.name: s.version for s in specs if s.kind != "feature"},
        datasets={"preference_pairs": LOADER_VERSION},
        protocol=PROTOCOLS.versions(["rewardbench"]))
    # Under a distributed launcher every process scores a share; only the main one writes.
    if distributed.is_main():
        _prepare_output_dir(output_dir, run_config, overwrite, OUTPUT_FILES, extra_dirs=("plots",),
                            versions=versions, refreshed=("features",), recorded=("protocol",),
                            unpinned={"scoring": [f.name for f in dataclasses.fields(ScoringOptions)]})
    distributed.barrier()

    scorer = StableRankScorer(model, tokenizer, options)
    cache = RunCache(output_dir / "cache.jsonl", readonly=not distributed.is_main())
    try:
        _feature_stage(scorer, pairs, features, list(layers), cache, progress)
        judge_kinds = {s.kind for s in specs} & {"ipo", "pointwise", "pairwise"}
        if judge_kinds:
            _judge_stages(model, tokenizer, pairs, judge_kinds, cache, options.batch_size, progress)
    finally:
        cache.close()
    if not distributed.is_main():
        return None

    summaries = {}
    for spec in specs:
        outcomes = _outcomes(pairs, lambda p, side, spec=spec: _item_score(spec, p, side, cache, seed), cache)
        summaries[spec.name] = summarize_rewardbench(outcomes, n_bootstrap=n_bootstrap, seed=seed)
    layer_sweep = {}
    for k in layers:
        outcomes = _outcomes(pairs, lambda p, side, k=k: _float(
            cache.get("features", _item_key(p.id, side))["layers"].get(str(k))), cache)
        layer_sweep[k] = summarize_rewardbench(outcomes, n_bootstrap=min(n_bootstrap, 200), seed=seed)

    pair_rows = _pair_rows(pairs, specs, cache, seed)
    results = {name: summary.to_json() for name, summary in summaries.items()}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    if layer_sweep:
        sweep_json = {str(k): summary.to_json() for k, summary in layer_sweep.items()}
        (output_dir / "layer_sweep.json").write_text(json.dumps(sweep_json, indent=2))
    write_jsonl_atomic(output_dir / "pairs.jsonl", pair_rows)
    return results


def _pair_rows(pairs, specs, cache: RunCache, seed: int) -> list[dict]:
    rows = []
    for p in pairs:
        feats = {s: cache.get("features", _item_key(p.id, s)) for s in SIDES}
        rows.append({
            "id": p.id, "subset": p.subset, "section": section_of(p.subset),
            "chosen_tokens": feats["chosen"]["response_tokens"],
            "rejected_tokens": feats["rejected"]["response_tokens"],
            "warnings": {s: feats[s]["warning"] for s in SIDES if feats[s]["warning"]},
            "scores": {spec.name: {s: _json_float(_item_score(spec, p, s, cache, seed)) for s in SIDES}
                       for spec in specs},
        })
    return rows
