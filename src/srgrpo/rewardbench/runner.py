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
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm.auto import tqdm

from srgrpo import distributed, judges
from srgrpo.rewardbench import v2 as rb2
from srgrpo.rewardbench.preference_data import CompletionSet, PreferencePair
from srgrpo.rewardbench.v1 import PairOutcome, section_of, summarize_rewardbench
from srgrpo.rewardbench.preference_data import LOADER_VERSION
from srgrpo.rewardbench.v1 import PROTOCOLS
from srgrpo.rewardbench.v2 import PromptOutcome
from srgrpo.rewardbench.methods import METHODS, random_score
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
    """Per item (each pair's chosen and rejected response): see `_item_feature_stage`."""
    items = [(_item_key(p.id, side), p.prompt, getattr(p, side)) for p in pairs for side in SIDES]
    _item_feature_stage(scorer, items, features, layers, cache, progress)


def _item_feature_stage(scorer: StableRankScorer, items, features, layers, cache: RunCache, progress: bool) -> None:
    """Per item (key, prompt, response): the requested features, the layer sweep, the response's
    token count and the short-span rule's context tokens. Each item is cached as soon as its batch
    is done; under a distributed launcher the items are split across processes and cached by the
    main one after each round. An item cached before a feature's version changed gets that feature
    (only) computed again: the record keeps each value's version."""
    groups: dict[tuple[tuple[str, ...], bool], list] = {}
    for item in items:
        need = _stale(cache.get("features", item[0]), features, layers)
        if need is not None:
            groups.setdefault(need, []).append(item)

    for (wanted, sweep), todo in groups.items():
        sweep_layers = list(layers) if sweep else []

        def compute(share, wanted=wanted, sweep_layers=sweep_layers) -> Iterable[tuple[str, dict]]:
            prompts = [prompt for _, prompt, _ in share]
            responses = [response for _, _, response in share]
            layers_version = FEATURES[SWEEP_FEATURE].version
            if not wanted and not sweep_layers:  # only the token counts are wanted: no forward pass
                for (key, _, _), e in zip(share, scorer.encode(prompts, responses)):
                    yield key, {"values": {}, "layers": {}, "truncated": e.truncated,
                                "response_tokens": e.response_end - e.response_start,
                                "context_tokens": e.context_tokens, "warning": e.problem, "versions": {},
                                "layers_version": layers_version}
                return
            for item in scorer.iter_features(prompts, responses, list(wanted), sweep_layers=sweep_layers,
                                             progress=progress and not distributed.is_distributed()):
                yield share[item.index][0], {
                    "values": {k: _json_float(v) for k, v in item.values.items()},
                    "layers": {str(k): _json_float(v) for k, v in item.layer_values.items()},
                    "response_tokens": item.response_tokens,
                    "context_tokens": item.context_tokens,
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
    items = [(_item_key(p.id, side), p.prompt, getattr(p, side), section_of(p.subset)) for p in pairs for side in SIDES]
    duels = [(p.id, p.prompt, p.chosen, p.rejected) for p in pairs]
    _item_judge_stages(model, tokenizer, items, duels, kinds, cache, batch_size, progress)


def _item_judge_stages(model, tokenizer, items, duels, kinds: set[str], cache: RunCache, batch_size: int,
                       progress: bool) -> None:
    """The judges' stages. `items`: (key, prompt, response, v1 section whose IPO question applies),
    scored alone by the ipo and pointwise judges; `duels`: (key, prompt, a, b), judged by the
    pairwise judge in both orders (+1: a wins both, -1: b wins both, 0: the orders disagree)."""
    keys = [k for k, _, _, _ in items]
    prompts = [p for _, p, _, _ in items]
    responses = [r for _, _, r, _ in items]
    sections = [s for _, _, _, s in items]
    if "ipo" in kinds:
        _chunked_stage("ipo", keys, lambda idx: judges.ipo_scores(
            model, tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx],
            [sections[i] for i in idx], batch_size=batch_size), cache, progress)
    if "pointwise" in kinds:
        _chunked_stage("pointwise", keys, lambda idx: judges.pointwise_scores(
            model, tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx],
            batch_size=batch_size), cache, progress)
    if "pairwise" in kinds:
        _chunked_stage("pairwise", [d[0] for d in duels], lambda idx: judges.pairwise_verdicts(
            model, tokenizer, [duels[i][1] for i in idx], [duels[i][2] for i in idx],
            [duels[i][3] for i in idx], batch_size=batch_size), cache, progress)


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


@dataclasses.dataclass
class RewardBenchConfig:
    """What a RewardBench run computes (both protocols), beside its inputs (model, tokenizer, data,
    output folder). `srgrpo rewardbench` builds one from its flags; Python users build their own."""

    scorers: Sequence[str] = dataclasses.field(default=("stable_rank",), metadata={
        "help": "the methods compared, names of srgrpo.rewardbench.methods.METHODS (--scorers)"})
    options: ScoringOptions | None = dataclasses.field(default=None, metadata={
        "help": "scoring options of the features; None: the defaults (RewardBench 2: its token window)"})
    layers: Sequence[int] = dataclasses.field(default=(), metadata={
        "help": "layers at which stable rank is also read, for the layer sweep (--layers)"})
    n_bootstrap: int = dataclasses.field(default=1000, metadata={
        "help": "bootstrap resamples of each confidence interval (--bootstrap)"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the bootstrap and of the random method"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "start afresh in an output folder that holds another run, instead of refusing"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "show progress bars"})
    run_info: dict | None = dataclasses.field(default=None, metadata={
        "help": "what the caller adds to run.json (model name, data source, ...); a resume with other "
                "values is refused"})


@dataclasses.dataclass(frozen=True)
class _Protocol:
    """What tells the two protocols' runs apart; `_run` is the rest, shared."""

    name: str  # its entry in PROTOCOLS
    dataset: str  # the loader's name in run.json's versions
    output_files: tuple[str, ...]
    run_info: dict  # added to run.json
    summarize: Callable  # outcomes -> summary (n_bootstrap=, seed=)
    stages: Callable  # (model, tokenizer, scorer, units, specs, features, cache, config): fill the cache
    outcomes: Callable  # (units, score_of(unit, slot), cache) -> outcomes; a slot is a side or a completion
    score: Callable  # (spec, unit, slot, cache, seed) -> the method's score of that response
    key: Callable  # (unit id, slot) -> the response's key in the cache
    write_rows: Callable  # (output_dir, units, specs, outcomes_by, cache, seed): the per-item files


def _start_run(model, tokenizer, output_dir: Path, config: RewardBenchConfig, item_ids: list,
               protocol: _Protocol) -> tuple[list, list[str], StableRankScorer, RunCache]:
    """What both protocols' runs start with: the scorers checked, run.json pinned (or a resumed run's
    checked), the scorer and the item cache. Returns (method specs, features used, scorer, cache)."""
    specs = [METHODS[s] for s in METHODS.check(config.scorers)]
    features = sorted({s.feature for s in specs if s.kind == "feature"})
    used = [*features, *([SWEEP_FEATURE] if config.layers else [])]
    # Only what decides the numbers is pinned: the score-defining options and the used features' own
    # parameters, never the batch size. The versions: features are recomputed per item where stale,
    # the protocol's summary is recomputed on every run, the rest (judges, the data loader) pin.
    run_config = {**(config.run_info or {}), **protocol.run_info, "scoring": pinned_options(config.options, used),
                  "scorers": list(config.scorers), "layers": list(config.layers), "pair_ids": item_ids,
                  "seed": config.seed}
    versions = run_versions(
        features=FEATURES.versions(used),
        scorers={s.name: s.version for s in specs if s.kind != "feature"},
        datasets={protocol.dataset: LOADER_VERSION},
        protocol=PROTOCOLS.versions([protocol.name]))
    # Under a distributed launcher every process scores a share; only the main one writes.
    if distributed.is_main():
        _prepare_output_dir(output_dir, run_config, config.overwrite, protocol.output_files, extra_dirs=("plots",),
                            versions=versions, exempt=("features", "protocol"),
                            unpinned={"scoring": [f.name for f in dataclasses.fields(ScoringOptions)]})
    distributed.barrier()
    return specs, features, StableRankScorer(model, tokenizer, config.options), \
        RunCache(output_dir / "cache.jsonl", readonly=not distributed.is_main())


def _write_summaries(output_dir: Path, units, specs, config: RewardBenchConfig, protocol: _Protocol,
                     cache: RunCache) -> tuple[dict, dict]:
    """Every method's summary (results.json) and the layer sweep's (layer_sweep.json, fewer
    resamples). Returns (results as written, {method: outcomes})."""

    def method(spec):
        return protocol.outcomes(units, lambda u, slot: protocol.score(spec, u, slot, cache, config.seed), cache)

    def layer(k):
        return protocol.outcomes(units, lambda u, slot: _float(
            cache.get("features", protocol.key(u.id, slot))["layers"].get(str(k))), cache)

    outcomes_by = {spec.name: method(spec) for spec in specs}
    results = {name: protocol.summarize(outcomes, n_bootstrap=config.n_bootstrap, seed=config.seed).to_json()
               for name, outcomes in outcomes_by.items()}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    if config.layers:
        sweep = {str(k): protocol.summarize(layer(k), n_bootstrap=min(config.n_bootstrap, 200),
                                            seed=config.seed).to_json() for k in config.layers}
        (output_dir / "layer_sweep.json").write_text(json.dumps(sweep, indent=2))
    return results, outcomes_by


def _run(model, tokenizer, units, output_dir: Path, config: RewardBenchConfig, protocol: _Protocol) -> dict | None:
    """Both protocols' run: pin run.json, fill the item cache stage by stage (resumable), then on the
    main process summarise and write the files."""
    specs, features, scorer, cache = _start_run(model, tokenizer, output_dir, config, [u.id for u in units], protocol)
    try:
        protocol.stages(model, tokenizer, scorer, units, specs, features, cache, config)
    finally:
        cache.close()
    if not distributed.is_main():
        return None
    results, outcomes_by = _write_summaries(output_dir, units, specs, config, protocol, cache)
    protocol.write_rows(output_dir, units, specs, outcomes_by, cache, config.seed)
    return results


def run_rewardbench(model, tokenizer, pairs: Sequence[PreferencePair], output_dir: str | Path,
                    config: RewardBenchConfig | None = None) -> dict | None:
    """Score `pairs` with every method of `config.scorers` and write results.json, pairs.jsonl (and
    layer_sweep.json) into `output_dir` (the report is
    `srgrpo.reports.rewardbench.write_rewardbench_report_from_dir`'s job); returns {method: summary}
    as written to results.json. `config.run_info` (model name, data source, ...) goes into run.json,
    so a resume with other arguments is refused; run.json also records the versions of the features,
    methods, data loader and protocol used (a feature whose version changed is recomputed for the
    cached items, nothing else). Under a distributed launcher the items are split across processes;
    the main process writes everything and returns the results, the others return None."""
    if not pairs:
        raise ValueError("no preference pairs to evaluate")
    config = dataclasses.replace(config or RewardBenchConfig(), options=(config and config.options) or ScoringOptions())
    return _run(model, tokenizer, pairs, Path(output_dir), config, V1)


def _v1_stages(model, tokenizer, scorer, pairs, specs, features, cache: RunCache, config: RewardBenchConfig) -> None:
    _feature_stage(scorer, pairs, features, list(config.layers), cache, config.progress)
    judge_kinds = {s.kind for s in specs} & {"ipo", "pointwise", "pairwise"}
    if judge_kinds:
        _judge_stages(model, tokenizer, pairs, judge_kinds, cache, config.options.batch_size, config.progress)


def _v1_write_rows(output_dir: Path, pairs, specs, outcomes_by, cache: RunCache, seed: int) -> None:
    write_jsonl_atomic(output_dir / "pairs.jsonl", _pair_rows(pairs, specs, cache, seed))


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
            **({"context_tokens": extended} if (extended := {
                s: feats[s].get("context_tokens", 0) for s in SIDES if feats[s].get("context_tokens", 0)}) else {}),
        })
    return rows


# ------------------------------------------------------------------------------------ RewardBench 2

V2_OUTPUT_FILES = (*OUTPUT_FILES, "prompts.jsonl")


def _completion_key(set_id: str, k: int) -> str:
    return f"{set_id}|{k}"


def _duel_key(set_id: str, i: int, j: int) -> str:
    return f"{set_id}|{i}|{j}"


def _round_robin(s: CompletionSet) -> list[tuple[int, int]]:
    n = len(s.completions)
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def _completion_score(spec, s: CompletionSet, k: int, cache: RunCache, seed: int) -> float:
    """One completion's score under `spec`. The pairwise judge has no score of one completion: in
    RB2 it plays a round robin among the prompt's completions and a completion scores its wins."""
    if spec.kind == "pairwise":
        wins = 0.0
        for i, j in _round_robin(s):
            verdict = cache.get("pairwise", _duel_key(s.id, i, j))
            wins += (k == i and verdict == 1) or (k == j and verdict == -1)
        return wins
    feats = cache.get("features", _completion_key(s.id, k))
    if spec.kind == "feature":
        return spec.transform(_float(feats["values"].get(spec.feature)))
    if spec.kind == "length":
        return spec.transform(float(feats["response_tokens"]))
    if spec.kind == "random":
        return random_score(seed, s.id, str(k))
    return _float(cache.get(spec.kind, _completion_key(s.id, k)))


def _prompt_outcomes(sets, score_of: Callable[[CompletionSet, int], float], cache: RunCache) -> list[PromptOutcome]:
    out = []
    for s in sets:
        tokens = [cache.get("features", _completion_key(s.id, k))["response_tokens"] for k in range(len(s.completions))]
        out.append(PromptOutcome(s.id, s.subset, [score_of(s, k) for k in range(len(s.completions))],
                                 s.num_correct, tokens))
    return out


def run_rewardbench2(model, tokenizer, sets: Sequence[CompletionSet], output_dir: str | Path,
                     config: RewardBenchConfig | None = None) -> dict | None:
    """`run_rewardbench` under the RewardBench 2 protocol (srgrpo.rewardbench.v2): every
    completion of every prompt is scored alone, with the same resumable cache; writes results.json
    (summaries with protocol "v2"), prompts.jsonl (every completion's score per method, and the
    prompt's credit), pairs.jsonl (per prompt: the chosen completion against the best-scored
    incorrect one, for the report's plots) and layer_sweep.json. `config.options` unset: RB2's
    window (`max_length=rewardbench2.WINDOW`)."""
    if not sets:
        raise ValueError("no RewardBench 2 prompts to evaluate")
    config = dataclasses.replace(config or RewardBenchConfig(), options=(config and config.options)
                                 or dataclasses.replace(ScoringOptions(), max_length=rb2.WINDOW))
    return _run(model, tokenizer, sets, Path(output_dir), config, V2)


def _v2_stages(model, tokenizer, scorer, sets, specs, features, cache: RunCache, config: RewardBenchConfig) -> None:
    items = [(_completion_key(s.id, k), s.prompt, c) for s in sets for k, c in enumerate(s.completions)]
    _item_feature_stage(scorer, items, features, list(config.layers), cache, config.progress)
    judge_kinds = {s.kind for s in specs} & {"ipo", "pointwise", "pairwise"}
    if judge_kinds:
        judged = [(key, prompt, c, rb2.judge_section(s.subset))
                  for s in sets for (key, prompt, c) in
                  ((_completion_key(s.id, k), s.prompt, c) for k, c in enumerate(s.completions))]
        duels = [(_duel_key(s.id, i, j), s.prompt, s.completions[i], s.completions[j])
                 for s in sets for i, j in _round_robin(s)]
        _item_judge_stages(model, tokenizer, judged, duels, judge_kinds, cache, config.options.batch_size,
                           config.progress)


def _v2_write_rows(output_dir: Path, sets, specs, outcomes_by, cache: RunCache, seed: int) -> None:
    prompt_rows, pair_rows = _v2_rows(sets, outcomes_by, cache)
    write_jsonl_atomic(output_dir / "prompts.jsonl", prompt_rows)
    write_jsonl_atomic(output_dir / "pairs.jsonl", pair_rows)


def _v2_rows(sets, outcomes_by: dict[str, list[PromptOutcome]], cache: RunCache) -> tuple[list[dict], list[dict]]:
    prompt_rows, pair_rows = [], []
    for index, s in enumerate(sets):
        feats = [cache.get("features", _completion_key(s.id, k)) for k in range(len(s.completions))]
        tokens = [f["response_tokens"] for f in feats]
        scores = {name: outcomes[index].scores for name, outcomes in outcomes_by.items()}
        ties = rb2.is_ties(s.subset)
        prompt_rows.append({
            "id": s.id, "subset": s.subset, "num_correct": s.num_correct, "tokens": tokens,
            "context_tokens": [f.get("context_tokens", 0) for f in feats],
            "warnings": {str(k): f["warning"] for k, f in enumerate(feats) if f["warning"]},
            "scores": {name: [_json_float(v) for v in values] for name, values in scores.items()},
            # best-of-4 credit per scorer; Ties prompts have no credit of their own (the subset's formula)
            "credit": None if ties else {name: rb2.best_of_n_credit(values) for name, values in scores.items()},
        })
        # For the plots: the first correct completion against the best-scored incorrect one.
        sides = {}
        for name, values in scores.items():
            wrong = [v for v in values[s.num_correct:] if v == v]
            sides[name] = {"chosen": _json_float(values[0]), "rejected": _json_float(max(wrong)) if wrong else None}
        first = next(iter(scores.values()))
        wrong_k = max(range(s.num_correct, len(first)), key=lambda k: first[k] if first[k] == first[k] else -math.inf)
        pair_rows.append({
            "id": s.id, "subset": s.subset, "section": rb2.canonical_subset(s.subset),
            "chosen_tokens": tokens[0], "rejected_tokens": tokens[wrong_k],
            "warnings": {side: feats[k]["warning"] for side, k in (("chosen", 0), ("rejected", wrong_k))
                         if feats[k]["warning"]},
            "scores": sides,
        })
    return prompt_rows, pair_rows


V1 = _Protocol("rewardbench", "preference_pairs", OUTPUT_FILES, {}, summarize_rewardbench,
               _v1_stages, _outcomes, _item_score, _item_key, _v1_write_rows)
V2 = _Protocol("rewardbench2", "completion_sets", V2_OUTPUT_FILES, {"protocol": "v2"}, rb2.summarize_rewardbench2,
               _v2_stages, _prompt_outcomes, _completion_score, _completion_key, _v2_write_rows)
