"""Study: stable-rank variants that do not reward length.

Stages (run in order; each writes under --cache-dir, default runs/study_length, not committed):

  cache     one forward pass of the embedded model (float32, one thread) over a neutral text set
            (GSM8K *train* question/answer pairs, never evaluation data) and then over the responses
            of the offline RewardBench file, pair by pair in a seeded random order (templated as the
            scorer does, 512-token window, right cut); keeps the full sequence's hidden states at
            four taps (final_norm, last_block, hidden_states[24], hidden_states[16]; fp16, flat
            files) and each response's mean log-probability. Resumable; stopping it early leaves a
            uniform random sample of pairs.
  features  every base metric of every cached item (SR raw / centred / whitened / prompt-projected /
            with the end-of-turn token / windowed, per tap), plus the same on prefixes of the neutral
            texts (how each metric grows with length under the null). Incremental.
  report    every variant (base metric x normalisation: none, Gaussian null, neutral-prefix table,
            neutral power law) and baseline, on the tuning half (even pair index), the held-out
            half (odd) and all pairs: section scores, accuracy, length-controlled accuracy,
            Spearman with response tokens, bootstrap intervals; picks by a fixed rule on the tuning
            half; writes report.md, results.json and length_study.png.
  bon       re-scores the samples of a finished `srgrpo bon` run with registered features (srgrpo.features).

From the repository root (`python -m studies.length.study ...` works the same):

    OMP_NUM_THREADS=1 python studies/length/study.py cache
    OMP_NUM_THREADS=1 python studies/length/study.py features
    python studies/length/study.py report      # report.md, results.json, length_study.png in studies/length/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / "runs" / "study_length"
RESULTS = Path(__file__).resolve().parent / "results"  # the committed report
SHARED = Path(os.environ.get("SRGRPO_SHARED_DATA", ROOT.parent / "shared" / "data"))
RB_FILE = SHARED / "preference" / "rewardbench_offline.jsonl"
NEUTRAL_FILE = SHARED / "eval" / "gsm8k_train.jsonl"
# Taps: name -> layer spec understood by StableRankScorer.layer_module.
TAPS = {"final_norm": "final_norm", "last_block": "last_block", "h24": 24, "h16": 16}


# ----------------------------------------------------------------------------------------------
# cache


def _load_rb():
    rows = [json.loads(line) for line in RB_FILE.read_text().splitlines() if line.strip()]
    return rows


def _items(n_neutral: int, limit: int | None = None) -> list[dict]:
    rows = _load_rb()[:limit]
    items = []  # one per response
    for k, row in enumerate(rows):
        for side in ("chosen", "rejected"):
            items.append({"set": "rb", "pair": k, "side": side, "subset": row["subset"],
                          "id": row.get("id", str(k)), "prompt": row["prompt"], "response": row[side]})
    neutral = [json.loads(line) for line in NEUTRAL_FILE.read_text().splitlines()[:n_neutral]]
    for k, row in enumerate(neutral):
        items.append({"set": "neutral", "pair": k, "side": "-", "subset": "gsm8k_train", "id": f"n{k}",
                      "prompt": row["question"], "response": row["answer"]})
    return items


def stage_cache(args):
    """Resumable: the index (index.jsonl) is appended batch by batch and a rerun skips what it holds.
    Neutral texts come first, then the RewardBench pairs in a seeded random order, one pair (chosen
    and rejected) per batch, so that a run stopped early holds a uniform random sample of pairs.
    `--salvage` adopts the complete items of an earlier longest-first run's files (states_*.f16)."""
    from srgrpo import load_model
    from srgrpo.features import next_token_stats
    from srgrpo.options import ScoringOptions
    from srgrpo.scoring import StableRankScorer
    from srgrpo.text import encode_pair

    out = Path(args.cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model, tokenizer = load_model()
    model.eval()
    options = ScoringOptions()  # the defaults the README's figures use: response span, 512, right
    scorer = StableRankScorer(model, tokenizer, options)
    taps = {name: scorer.engine.layer_module(spec) for name, spec in TAPS.items()}
    lm_head = model.get_output_embeddings()
    d = int(model.config.hidden_size)

    items = _items(300, args.limit)  # the old run's list (300 neutral texts), for salvage
    encoded = [encode_pair(tokenizer, it["prompt"], it["response"], options, i) for i, it in enumerate(items)]
    key_of = lambda it: (it["set"], it["pair"], it["side"])  # noqa: E731
    index_path = out / "index.jsonl"
    done = {}
    if index_path.exists():
        for line in index_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["set"], r["pair"], r["side"])] = r
    index_file = open(index_path, "a")

    def logit_stats(final_states, ids_row, e):
        rs, re_ = e.response_start, e.response_end
        if e.problem is not None or re_ <= max(rs - 1, 0):
            return math.nan, math.nan, math.nan
        first = max(rs - 1, 0)
        with torch.inference_mode():
            logp, cert, entr = next_token_stats(lm_head(final_states[first : re_ - 1].float()))
            targets = torch.as_tensor(ids_row[first + 1 : re_])
            return logp.gather(1, targets[:, None]).mean().item(), cert.mean().item(), entr.mean().item()

    def record(i, file, offset, lp):
        it, e = items[i], encoded[i]
        row = {"set": it["set"], "pair": it["pair"], "side": it["side"], "subset": it["subset"], "id": it["id"],
               "file": file, "offset": offset, "length": len(e.input_ids), "response_start": e.response_start,
               "response_end": e.response_end, "truncated": e.truncated, "problem": e.problem,
               "mean_logprob": lp[0], "self_certainty": lp[1], "mean_entropy": lp[2], "input_ids": e.input_ids}
        index_file.write(json.dumps(row) + "\n")
        done[key_of(it)] = row

    if args.salvage and (out / "states_final_norm.f16").exists() and not any(r["file"] == "states" for r in done.values()):
        old_rows = min((out / f"states_{name}.f16").stat().st_size for name in TAPS) // (2 * d)
        old = np.memmap(out / "states_final_norm.f16", dtype=np.float16, mode="r").reshape(-1, d)
        cursor = 0
        for i in sorted(range(len(items)), key=lambda i: -len(encoded[i].input_ids)):
            n = len(encoded[i].input_ids)
            if cursor + n > old_rows:
                break
            final = torch.from_numpy(np.asarray(old[cursor : cursor + n], dtype=np.float32))
            # logits from the fp16-stored final states (the forward's own logits were not kept)
            record(i, "states", cursor, logit_stats(final, encoded[i].input_ids, encoded[i]))
            cursor += n
        index_file.flush()
        print(f"salvaged {len(done)} items ({cursor} rows) from the earlier run", flush=True)

    files = {name: open(out / f"states2_{name}.f16", "ab") for name in TAPS}
    cursor = (out / "states2_final_norm.f16").stat().st_size // (2 * d)
    for name in TAPS:  # drop a partly written batch of a killed run
        files[name].truncate(cursor * 2 * d)
        files[name].seek(cursor * 2 * d)
    neutral = [i for i, it in enumerate(items) if it["set"] == "neutral" and it["pair"] < args.neutral]
    neutral.sort(key=lambda i: -len(encoded[i].input_ids))
    batches = [neutral[k : k + args.batch_size] for k in range(0, len(neutral), args.batch_size)]
    pairs = sorted({it["pair"] for it in items if it["set"] == "rb"})
    np.random.default_rng(0).shuffle(pairs)
    rb_index = {(it["pair"], it["side"]): i for i, it in enumerate(items) if it["set"] == "rb"}
    batches += [[rb_index[(k, "chosen")], rb_index[(k, "rejected")]] for k in pairs]
    start, tokens_done = time.time(), 0
    total = sum(len(encoded[i].input_ids) for b in batches for i in b if key_of(items[i]) not in done)
    print(f"{total} tokens to run", flush=True)
    for nb, batch in enumerate(batches):
        batch = [i for i in batch if key_of(items[i]) not in done]
        if not batch:
            continue
        pairs_b = [encoded[i] for i in batch]
        ids, attention = scorer.engine.collate(pairs_b)
        captured = {}
        scorer.engine.run(ids, attention, taps, captured.__setitem__)
        for row, (i, e) in enumerate(zip(batch, pairs_b)):
            n = len(e.input_ids)
            for name in TAPS:
                states = captured[name][row, :n].float()
                files[name].write(states.clamp(-65000, 65000).to(torch.float16).numpy().tobytes())
            record(i, "states2", cursor, logit_stats(captured["final_norm"][row, :n], ids[row].tolist(), e))
            cursor += n
            tokens_done += n
        for f in files.values():
            f.flush()
        index_file.flush()
        if nb % 20 == 0:
            el = time.time() - start
            print(f"batch {nb}/{len(batches)}, {tokens_done}/{total} tokens, {el:.0f} s, "
                  f"{tokens_done / max(el, 1e-9):.0f} tok/s, eta {el / max(tokens_done, 1) * (total - tokens_done):.0f} s",
                  flush=True)
    for f in files.values():
        f.close()
    index_file.close()
    meta = {"taps": TAPS, "d": d, "options": dataclasses.asdict(options), "neutral": args.neutral,
            "threads": torch.get_num_threads()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    print("done", flush=True)


# ----------------------------------------------------------------------------------------------
# features: every base metric of every item, computed once from the cache


def _load_cache(cache_dir: Path):
    meta = {"taps": TAPS, "d": D_MODEL}
    index = [json.loads(line) for line in (cache_dir / "index.jsonl").read_text().splitlines()]
    d = meta["d"]
    states = {}
    for name in meta["taps"]:
        per_file = {}
        for file in ("states", "states2"):
            path = cache_dir / f"{file}_{name}.f16"
            if path.exists() and path.stat().st_size:
                per_file[file] = np.memmap(path, dtype=np.float16, mode="r").reshape(-1, d)
        states[name] = per_file
    # a meta.json is written at the end; an interrupted cache is still usable
    return meta, index, states


def _rows(states, item, lo, hi) -> torch.Tensor:
    o = item["offset"]
    return torch.from_numpy(np.asarray(states[item.get("file", "states")][o + lo : o + hi], dtype=np.float32))


# ----------------------------------------------------------------------------------------------
# The study's own variants. The library (`srgrpo.metrics`) keeps only what a registered feature
# computes; these normalisations were candidates the study weighed and did not register. They are
# built on the library's math (`metrics.stable_rank`), batched over a padded (B, T, d) batch with a
# (B, T) mask like every metric there, or one (T, d) matrix. tests/test_study_length.py checks them.


def _batched(hidden: torch.Tensor, mask: torch.Tensor | None):
    """(hidden as (B, T, d), its mask as bool (B, T), whether the input was one matrix)."""
    single = hidden.dim() == 2
    h = hidden.unsqueeze(0) if single else hidden
    m = None if mask is None else (mask.unsqueeze(0) if single else mask)
    m = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device) if m is None else m.to(torch.bool)
    if m.shape != h.shape[:2]:
        raise ValueError(f"mask shape {tuple(m.shape)} does not match hidden {tuple(h.shape)}")
    return h, m, single


def gaussian_null_stable_rank(n_rows: torch.Tensor | int, d: int) -> torch.Tensor:
    """Expected SR of a T x d matrix of i.i.d. Gaussian entries, for large T and d:
    ||H||_F^2 ~ T d and ||H||_2^2 ~ (sqrt T + sqrt d)^2 (the Marchenko-Pastur edge), so
    E[SR] ~ T d / (sqrt T + sqrt d)^2. Symmetric in T and d; ~T for T << d, ~d for T >> d."""
    t = torch.as_tensor(n_rows, dtype=torch.float64).clamp_min(1)
    return t * d / (t.sqrt() + math.sqrt(d)) ** 2


def stable_rank_null_ratio(hidden: torch.Tensor, mask: torch.Tensor | None = None,
                           dtype: torch.dtype = torch.float32, center: bool = False) -> torch.Tensor:
    """SR(H) / E[SR] of an i.i.d. Gaussian matrix of the same shape (T real rows x d): how much of
    the room a matrix of that shape has its spectrum actually uses. `center` as in `stable_rank`."""
    from srgrpo import metrics

    h, m, single = _batched(hidden, mask)
    out = metrics.stable_rank(h, m, dtype, center=center)
    out = out / gaussian_null_stable_rank(m.sum(dim=1), h.shape[-1]).to(out)
    return out[0] if single else out


def length_adjusted_stable_rank(hidden: torch.Tensor, mask: torch.Tensor | None = None,
                                dtype: torch.dtype = torch.float32, exponent: float = 0.5,
                                center: bool = False) -> torch.Tensor:
    """SR(H) / T^exponent, T = real rows: SR with its growth with length divided out (the exponent
    fitted under a null model, e.g. on neutral text); 0 gives plain SR."""
    from srgrpo import metrics

    h, m, single = _batched(hidden, mask)
    out = metrics.stable_rank(h, m, dtype, center=center)
    out = out / m.sum(dim=1).to(out).clamp_min(1).pow(exponent)
    return out[0] if single else out


def whitened_stable_rank(hidden: torch.Tensor, mask: torch.Tensor | None = None,
                         dtype: torch.dtype = torch.float32, mean: torch.Tensor | None = None,
                         whitener: torch.Tensor | None = None, center: bool = False,
                         null_ratio: bool = False) -> torch.Tensor:
    """SR of the states in a model's own coordinates: each real row h -> (h - mean) @ whitener
    (e.g. Sigma^-1/2 of hidden states on neutral text, `_whitener`), padded rows staying zero.
    `center` then subtracts the span's own mean; `null_ratio` divides by the Gaussian null's E[SR].
    A matrix the library cannot score as it is (all zero, NaN/inf, no real row) stays NaN."""
    from srgrpo import metrics

    h, m, single = _batched(hidden, mask)
    scorable = ~torch.isnan(metrics.stable_rank(h, m, dtype))
    z = h.to(dtype)
    if mean is not None:
        z = z - mean.to(device=z.device, dtype=dtype)
    if whitener is not None:
        z = z @ whitener.to(device=z.device, dtype=dtype)
    z = torch.where(m.unsqueeze(-1) & scorable[:, None, None], z, 0.0)
    out = (stable_rank_null_ratio if null_ratio else metrics.stable_rank)(z, m, dtype, center=center)
    out = torch.where(scorable, out, torch.nan)
    return out[0] if single else out


def _sr(h: torch.Tensor) -> float:
    """SR of one (T, d) matrix in float64, by the library's routine; NaN without rows."""
    from srgrpo import metrics

    return math.nan if h.shape[0] == 0 else float(metrics.stable_rank(h, None, torch.float64))


def _whitener(neutral_rows: torch.Tensor, shrink: float):
    """Mean and Sigma^-1/2 of neutral token states, with shrinkage toward a scaled identity."""
    x = neutral_rows.double()
    mu = x.mean(0)
    cov = torch.cov(x.T)
    d = cov.shape[0]
    cov = (1 - shrink) * cov + shrink * cov.trace() / d * torch.eye(d, dtype=cov.dtype)
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag(evals.clamp_min(1e-12).rsqrt()) @ evecs.T
    return mu.float(), w.float()


PREFIX_LENGTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
PROMPT_KS = (1, 4, 16)
WHITEN_SHRINK = 0.1
FULL_TAPS = ("final_norm", "last_block")  # every base metric; other taps get the cheap ones


def _base_metrics(tap: str, r: torch.Tensor, eot: torch.Tensor | None, p: torch.Tensor, whiten) -> dict:
    from srgrpo import metrics

    f64 = torch.float64
    out = {"sr": _sr(r), "sr_c": _sr(r - r.mean(0)) if r.shape[0] > 1 else math.nan}
    mu, w = whiten
    out["sr_w"] = float(whitened_stable_rank(r, None, f64, mean=mu, whitener=w)) if r.shape[0] else math.nan
    if tap in FULL_TAPS:
        out["sr_eot"] = _sr(torch.cat([r, eot]) if eot is not None else r)
        out["sr_wc"] = (float(whitened_stable_rank(r, None, f64, mean=mu, whitener=w, center=True))
                        if r.shape[0] > 1 else math.nan)
        out["sr_win64"] = float(metrics.windowed_stable_rank(r, None, f64, window=64))
        pu = p[1:] if p.shape[0] > 1 else p  # skip the first token (attention sink)
        for k in PROMPT_KS:  # the library's projection, as the registered feature computes it
            out[f"sr_p{k}"] = float(metrics.prompt_projected_stable_rank(r, None, pu, None, f64, k=k))
    return out


def stage_features(args):
    cache_dir = Path(args.cache_dir)
    meta, index, states = _load_cache(cache_dir)
    torch.set_num_threads(1)
    neutral = [it for it in index if it["set"] == "neutral" and it["problem"] is None]
    # Per-model state, from neutral text only: whitening (mean, Sigma^-1/2) per tap.
    if (cache_dir / "whiten.pt").exists():
        saved = torch.load(cache_dir / "whiten.pt")
        whiten = {tap: (v["mean"], v["whitener"]) for tap, v in saved.items()}
    else:
        whiten = {}
        for tap in meta["taps"]:
            rows = torch.cat([_rows(states[tap], it, it["response_start"], it["response_end"]) for it in neutral])
            whiten[tap] = _whitener(rows, WHITEN_SHRINK)
        torch.save({tap: {"mean": m, "whitener": w} for tap, (m, w) in whiten.items()}, cache_dir / "whiten.pt")
    path = cache_dir / "features.jsonl"
    have = set()
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            have.add((r["set"], r["pair"], r["side"]))
    out = []
    start = time.time()
    todo = [it for it in index if it["problem"] is None and (it["set"], it["pair"], it["side"]) not in have]
    for n, it in enumerate(todo):
        rs, re_ = it["response_start"], it["response_end"]
        rec = {"set": it["set"], "pair": it["pair"], "side": it["side"], "tokens": re_ - rs}
        for tap in meta["taps"]:
            st = states[tap]
            r = _rows(st, it, rs, re_)
            eot = _rows(st, it, re_, re_ + 1) if re_ < it["length"] else None
            p = _rows(st, it, 0, rs)
            for name, v in _base_metrics(tap, r, eot, p, whiten[tap]).items():
                rec[f"{tap}/{name}"] = v
            if it["set"] == "neutral":  # prefixes: how each base metric grows as the same text goes on
                for length in PREFIX_LENGTHS:
                    if length < r.shape[0]:
                        for name, v in _base_metrics(tap, r[:length], r[length : length + 1], p, whiten[tap]).items():
                            rec[f"{tap}/{name}@{length}"] = v
        out.append(rec)
        if n % 200 == 0:
            el = time.time() - start
            print(f"{n}/{len(todo)} {el:.0f} s, eta {el / (n + 1) * (len(todo) - n):.0f} s", flush=True)
    with open(path, "a") as f:
        for rec in out:
            f.write(json.dumps(rec) + "\n")
    print(f"features of {len(out)} items in {time.time() - start:.0f} s", flush=True)


# ----------------------------------------------------------------------------------------------
# report: every variant and baseline, scored on the tuning half, the held-out half and all pairs

D_MODEL = 576
SPLITS = ("tune", "held", "all")


def _split_of(pair: int) -> str:
    return "tune" if pair % 2 == 0 else "held"


def _neutral_curves(neutral: list[dict], keys: list[str]) -> dict:
    """For each base metric key: mean log value of neutral-text prefixes at each prefix length, and
    the slope beta of log metric against log length (the null model's growth with length)."""
    curves = {}
    for key in keys:
        xs, ys = [], []
        for length in PREFIX_LENGTHS:
            vals = [r.get(f"{key}@{length}") for r in neutral]
            vals = [v for v in vals if v is not None and v > 0 and math.isfinite(v)]
            if len(vals) >= 20:
                xs.append(math.log(length))
                ys.append(float(np.mean(np.log(vals))))
        if len(xs) >= 3:
            beta = float(np.polyfit(xs, ys, 1)[0])
            curves[key] = {"log_length": xs, "mean_log": ys, "beta": beta}
    return curves


def _null_log(curve: dict, tokens: np.ndarray) -> np.ndarray:
    """log E_null[metric](T): the neutral-prefix table, interpolated in log T, extrapolated with beta."""
    x, y, beta = np.array(curve["log_length"]), np.array(curve["mean_log"]), curve["beta"]
    lt = np.log(np.maximum(tokens, 1))
    out = np.interp(lt, x, y)
    out = np.where(lt < x[0], y[0] + beta * (lt - x[0]), out)
    return np.where(lt > x[-1], y[-1] + beta * (lt - x[-1]), out)


def _gauss_null(tokens: np.ndarray, d: int = D_MODEL) -> np.ndarray:
    """gaussian_null_stable_rank over an array of token counts."""
    return gaussian_null_stable_rank(torch.from_numpy(np.asarray(tokens, dtype=float)), d).numpy()


def _evaluate(name: str, scores: dict, pairs: list[dict], tokens: dict) -> dict:
    from scipy.stats import spearmanr

    from srgrpo.rewardbench.v1 import PairOutcome
    from srgrpo.rewardbench.v1 import summarize_rewardbench as summarize

    result = {}
    for split in SPLITS:
        chosen = [p for p in pairs if split == "all" or _split_of(p["pair"]) == split]
        outcomes = [PairOutcome(str(p["pair"]), p["subset"], scores.get((p["pair"], "chosen"), math.nan),
                                scores.get((p["pair"], "rejected"), math.nan),
                                tokens[(p["pair"], "chosen")], tokens[(p["pair"], "rejected")]) for p in chosen]
        summary = summarize(outcomes, n_bootstrap=1000, seed=0).to_json()
        keys = [(p["pair"], side) for p in chosen for side in ("chosen", "rejected")]
        v = np.array([scores.get(k, math.nan) for k in keys])
        t = np.array([tokens[k] for k in keys])
        ok = np.isfinite(v)
        rho = float(spearmanr(v[ok], t[ok]).statistic) if ok.sum() > 2 and np.ptp(v[ok]) > 0 else math.nan
        result[split] = {
            "score": summary["score"], "accuracy": summary["accuracy"], "sections": summary["sections"],
            "subsets": {k: v["accuracy"] for k, v in summary["subsets"].items()},
            "ci_score": summary["ci"]["score"], "ci_accuracy": summary["ci"]["accuracy"],
            "lc_accuracy": summary["length_controlled"]["accuracy"], "lc_n": summary["length_controlled"]["n"],
            "spearman_tokens": rho, "n_pairs": summary["n_pairs"], "n_unscored": summary["n_unscored"],
        }
    return result


def build_scores(features: list[dict], index: list[dict]) -> tuple[dict, dict, dict, dict]:
    """All variant and baseline scores: name -> {(pair, side): value} over the RewardBench responses,
    the same score of every neutral-text response (for z-scoring mixtures without the evaluation
    data), their descriptions and the neutral calibration used."""
    items = [r for r in features if r["set"] in ("rb", "neutral")]
    is_rb = np.array([r["set"] == "rb" for r in items])
    info = {(it["set"], it["pair"], it["side"]): it for it in index}
    keys = [(r["pair"], r["side"]) for r in items if r["set"] == "rb"]
    tokens = np.array([r["tokens"] for r in items], dtype=float)
    neutral = [r for r in items if r["set"] == "neutral"]
    base_keys = sorted(k for k in items[0] if "/" in k and "@" not in k)
    curves = _neutral_curves(neutral, base_keys)
    scores, neutral_scores, help_ = {}, {}, {}

    def add(name, values, text):
        values = np.asarray(values, dtype=float)
        scores[name] = {k: float(v) for k, v in zip(keys, values[is_rb])}
        neutral_scores[name] = values[~is_rb]
        help_[name] = text

    def field(name):
        return [info[(r["set"], r["pair"], r["side"])][name] for r in items]

    # baselines
    add("mean_logprob", field("mean_logprob"), "mean log-probability of the response tokens")
    add("self_certainty", field("self_certainty"), "mean KL(uniform || next-token distribution)")
    add("negative_entropy", -np.array(field("mean_entropy")), "minus mean next-token entropy")
    add("length", tokens, "response tokens (longer wins)")
    add("shorter", -tokens, "minus response tokens (shorter wins)")
    add("random", np.random.default_rng(0).random(len(items)), "seeded uniform scores")
    # every base metric, raw and length-normalised
    for key in base_keys:
        raw = np.array([r.get(key, math.nan) for r in items], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            logv = np.log(raw)
        add(key, raw, f"{key} as it is")
        add(f"{key}/gauss", raw / _gauss_null(tokens), f"{key} over E[SR] of an iid Gaussian T x d matrix")
        if key in curves:
            add(f"{key}/neutral", logv - _null_log(curves[key], tokens),
                f"log {key} minus its mean on neutral-text prefixes of the same length")
            add(f"{key}/pow", logv - curves[key]["beta"] * np.log(tokens),
                f"log {key} - beta log T, beta = {curves[key]['beta']:.3f} fitted on neutral-text prefixes")
    return scores, neutral_scores, help_, curves


def _z(name: str, scores: dict, neutral_scores: dict) -> dict:
    """A score z-scored with its mean and spread over the neutral-text responses (no evaluation data)."""
    ok = neutral_scores[name][np.isfinite(neutral_scores[name])]
    mu, sd = float(ok.mean()), float(ok.std()) or 1.0
    return {k: (v - mu) / sd for k, v in scores[name].items()}


def add_mixtures(scores, neutral_scores, help_, results, pairs, tokens) -> list[str]:
    """Sums of neutral-z-scored scores: the best SR variants (chosen on the tuning half) across taps,
    and each with mean log-probability. Returns the names added."""
    sr_like = [n for n in results if n.split("/")[0] in ("final_norm", "last_block", "h24", "h16")]
    by_tap = {}
    for n in sorted(sr_like, key=lambda n: -(results[n]["tune"]["score"] or 0)):
        by_tap.setdefault(n.split("/")[0], n)
    top = sorted(sr_like, key=lambda n: -(results[n]["tune"]["score"] or 0))[:4]
    combos = []
    taps = list(by_tap.values())
    for i in range(len(taps)):
        for j in range(i + 1, len(taps)):
            combos.append((taps[i], taps[j]))
    combos += [(n, "mean_logprob") for n in top]
    added = []
    for a, b in combos:
        name = f"mix[{a}+{b}]"
        za, zb = _z(a, scores, neutral_scores), _z(b, scores, neutral_scores)
        scores[name] = {k: za[k] + zb[k] for k in za}
        help_[name] = f"z({a}) + z({b}), z-scores from the neutral-text responses"
        results[name] = _evaluate(name, scores[name], pairs, tokens)
        added.append(name)
    return added


def stage_report(args):
    cache_dir = Path(args.cache_dir)
    index = [json.loads(line) for line in (cache_dir / "index.jsonl").read_text().splitlines()]
    features = [json.loads(line) for line in (cache_dir / "features.jsonl").read_text().splitlines()]
    rb_rows = [it for it in index if it["set"] == "rb" and it["side"] == "chosen"]
    tokens = {(it["pair"], it["side"]): it["response_end"] - it["response_start"] for it in index if it["set"] == "rb"}
    featured = {(r["pair"], r["side"]) for r in features if r["set"] == "rb"}
    pairs = [{"pair": it["pair"], "subset": it["subset"]} for it in rb_rows
             if (it["pair"], "chosen") in featured and (it["pair"], "rejected") in featured]
    print(f"{len(pairs)} pairs with features on both sides", flush=True)
    scores, neutral_scores, help_, curves = build_scores(features, index)

    results = {name: _evaluate(name, s, pairs, tokens) for name, s in scores.items()}
    add_mixtures(scores, neutral_scores, help_, results, pairs, tokens)
    out = Path(args.output_dir or cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"results": results, "help": help_, "neutral_curves": curves}, indent=1))
    write_report(out, results, help_, curves)


def _fmt(x, pct=True):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:+.2f}"


def write_report(out: Path, results: dict, help_: dict, curves: dict) -> None:
    names = sorted(results, key=lambda n: -(results[n]["tune"]["score"] or 0))
    lines = ["# Length-robust stable rank: study", "",
             "Embedded SmolLM2-135M-Instruct, offline RewardBench file (LLMBar = Chat Hard, HEP = Reasoning),",
             "response span, 512-token window. Pairs split by pair index: even = tuning half, odd = held-out half.",
             "Score = mean of the sections present; LC = accuracy on pairs whose response token counts differ by < 20%;",
             "rho = Spearman(score, response tokens) over all responses of the split. Sorted by tuning-half score.", "",
             "| variant | tune score | held score [95% CI] | all score | all acc | all LC acc (n) | rho all | Chat Hard | Reasoning |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for n in names:
        r = results[n]
        t, h, a = r["tune"], r["held"], r["all"]
        ci = h["ci_score"]
        lines.append(f"| `{n}` | {_fmt(t['score'])} | {_fmt(h['score'])} [{_fmt(ci[0])}, {_fmt(ci[1])}] | {_fmt(a['score'])} | "
                     f"{_fmt(a['accuracy'])} | {_fmt(a['lc_accuracy'])} ({a['lc_n']}) | {_fmt(a['spearman_tokens'], False)} | "
                     f"{_fmt(a['sections'].get('Chat Hard'))} | {_fmt(a['sections'].get('Reasoning'))} |")
    lines += ["", "## Variants", ""] + [f"- `{n}`: {help_[n]}" for n in sorted(help_)]
    lines += ["", "## Neutral-text growth exponents (log metric vs log prefix length, GSM8K-train answers)", "",
              "| metric | beta |", "|---|--:|"] + [f"| `{k}` | {v['beta']:.3f} |" for k, v in sorted(curves.items())]
    sel = select(results)
    lines += ["", "## Selection (tuning half only)", "",
              "Rule: among the SR-only variants (no log-probability), the highest tuning-half score among those",
              "that meet the issue's two length conditions on the tuning half (|Spearman(score, tokens)| <= 0.1,",
              "length-controlled accuracy >= raw accuracy); the same rule over every score for the overall pick.",
              "Held-out figures are reported for the picks, never used to choose. (The length-controlled condition",
              "was added to the rule after a first look at a partial cache of 399 pairs, where the rule without it",
              "picked a variant whose length-controlled accuracy fell below its raw accuracy.)", ""]
    for label, name in sel.items():
        if name is None:
            lines.append(f"- {label}: none qualifies")
            continue
        h = results[name]["held"]
        lines.append(f"- {label}: `{name}` -- held-out score {_fmt(h['score'])} (CI {_fmt(h['ci_score'][0])}-"
                     f"{_fmt(h['ci_score'][1])}), acc {_fmt(h['accuracy'])}, LC acc {_fmt(h['lc_accuracy'])}, "
                     f"rho {_fmt(h['spearman_tokens'], False)}")
    for probe in sorted(out.glob("grpo_probe*.json")):
        data = json.loads(probe.read_text())
        lines += ["", f"## GRPO length probe: {probe.name} (benchmarks/grpo_length_probe.py)", "",
                  f"Settings: {json.dumps({k: v for k, v in data['args'].items() if k != 'output'})}", "",
                  "| reward | mean completion length per step | growth first -> last | clipped share per step |",
                  "|---|---|--:|---|"]
        for run in data["runs"]:
            ml = run["mean_length"]
            lines.append(f"| `{run['reward']}` | {' -> '.join(f'{x:.1f}' for x in ml)} | "
                         f"{100 * (ml[-1] / ml[0] - 1):+.0f}% | {', '.join(f'{c:.2f}' for c in run['clipped_ratio'])} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot(out / "length_study.png", results, curves, sel)
    print("\n".join(lines[:60]))
    print("\n".join(lines[-8:]))


def _is_sr_only(name: str) -> bool:
    return name.split("/")[0] in ("final_norm", "last_block", "h24", "h16") or (
        name.startswith("mix[") and "mean_logprob" not in name)


def select(results: dict) -> dict:
    def best(names):
        def qualifies(t):
            return (t["score"] is not None and t["spearman_tokens"] is not None and abs(t["spearman_tokens"]) <= 0.1
                    and t["lc_accuracy"] is not None and t["lc_accuracy"] >= t["accuracy"])

        ok = [n for n in names if qualifies(results[n]["tune"])]
        return max(ok, key=lambda n: results[n]["tune"]["score"]) if ok else None

    return {"best SR-only variant": best([n for n in results if _is_sr_only(n)]),
            "best of all scores": best(list(results)),
            "best SR-only, ignoring the length constraint": max(
                (n for n in results if _is_sr_only(n)), key=lambda n: results[n]["tune"]["score"] or 0)}


def plot(path: Path, results: dict, curves: dict, sel: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    baselines = ("mean_logprob", "self_certainty", "negative_entropy", "length", "shorter", "random",
                 "final_norm/sr")
    for n, r in results.items():
        a = r["held"]
        x, y = a["spearman_tokens"], a["score"]
        if x is None or y is None or not math.isfinite(x):
            continue
        if n in baselines or n in sel.values():
            ax.errorbar(x, 100 * y, yerr=[[100 * (y - a["ci_score"][0])], [100 * (a["ci_score"][1] - y)]],
                        fmt="o", capsize=3, color="C3" if n in sel.values() else "C0")
            ax.annotate(n, (x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        else:
            ax.plot(x, 100 * y, ".", color="0.6", ms=4)
    ax.axvspan(-0.1, 0.1, color="C2", alpha=0.1, label="|rho| <= 0.1")
    if "mean_logprob" in results:
        ax.axhline(100 * results["mean_logprob"]["held"]["score"] + 5, ls="--", color="C1", lw=1,
                   label="mean_logprob + 5 (held-out)")
    ax.set_xlabel("Spearman(score, response tokens), held-out half")
    ax.set_ylabel("RewardBench-offline score, held-out half (%)")
    ax.set_title("every variant (grey); baselines and picks with 95% CI")
    ax.legend(fontsize=8)
    for key in ("final_norm/sr", "final_norm/sr_c", "final_norm/sr_w", "last_block/sr", "final_norm/sr_p4", "final_norm/sr_p16"):
        if key in curves:
            c = curves[key]
            ax2.plot(np.exp(c["log_length"]), np.exp(c["mean_log"]), "o-", label=f"{key} (beta {c['beta']:.2f})")
    t = np.array([4, 8, 16, 32, 64, 128, 256, 384])
    ax2.plot(t, _gauss_null(t), "k--", lw=1, label="iid Gaussian null, d = 576")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("prefix length T (tokens)")
    ax2.set_ylabel("geometric mean of the metric on neutral-text prefixes")
    ax2.set_title("growth with length under the null (GSM8K-train answers)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
# ----------------------------------------------------------------------------------------------
# bon: re-score saved Best-of-N candidates with the variants


def stage_bon(args):
    """Re-score the samples of a finished `srgrpo bon` run (generations.jsonl) with length-robust
    variants by a forward pass over prompt + re-tokenised sample text (generations.jsonl keeps the
    text, not the sampled ids, so a sample's tokens can differ from the sampled ones where the
    tokenizer merges differently), and compare selectors at every N up to the run's."""
    from srgrpo import load_model
    from srgrpo.generation import prompt_token_ids
    from srgrpo.options import ScoringOptions
    from srgrpo.scoring import StableRankScorer
    from srgrpo.evaluation.datasets import load_problems
    from srgrpo.text import encode_ids

    bon_dir = Path(args.bon_dir)
    run = json.loads((bon_dir / "run.json").read_text())
    records = {}
    for line in (bon_dir / "generations.jsonl").read_text().splitlines():
        r = json.loads(line)
        records[(r["stage"], r["key"])] = r["value"]
    pinned = {k: v for k, v in run.items() if k != "problems"}
    problems = load_problems(run["dataset"], limit=len(run["problems"]), seed=int(run.get("seed", 0)))
    assert [p.id for p in problems] == run["problems"], "the problems differ from the run's"
    problems = [p for p in problems if ("samples", p.id) in records and ("greedy", p.id) in records]
    print(f"{len(problems)} questions with samples", flush=True)
    model, tokenizer = load_model(None, dtype="float32")
    scorer = StableRankScorer(model, tokenizer, ScoringOptions())
    variants = [v for v in args.variants.split(",") if v]
    for p in problems:
        samples = records[("samples", p.id)]
        prompt_ids = prompt_token_ids(tokenizer, p.messages())
        encoded = [encode_ids(tokenizer, prompt_ids, tokenizer(c["text"], add_special_tokens=False)["input_ids"],
                              scorer.options) for c in samples]
        for item in scorer.iter_encoded_features(encoded, variants):
            for v in variants:
                samples[item.index]["features"][v] = item.values[v]
    ns = [n for n in (1, 2, 4, 8, 16, 32) if n <= int(run.get("n_max", 8))]
    table = {}
    for name in ["stable_rank", "mean_logprob", "self_certainty"] + variants + ["random"]:
        table[name] = {}
        for n in ns:
            acc = []
            for p in problems:
                cands = records[("samples", p.id)][:n]
                if name == "random":
                    acc.append(sum(bool(c["correct"]) for c in cands) / len(cands))
                else:
                    vals = [c["features"].get(name) for c in cands]
                    vals = [v if v is not None and math.isfinite(v) else -math.inf for v in vals]
                    acc.append(float(cands[int(np.argmax(vals))]["correct"]))
            table[name][n] = float(np.mean(acc))
    greedy = float(np.mean([bool(records[("greedy", p.id)]["correct"]) for p in problems]))
    from scipy.stats import spearmanr

    allc = [c for p in problems for c in records[("samples", p.id)]]
    rho = {name: float(spearmanr([c["features"].get(name, math.nan) for c in allc],
                                 [c["n_tokens"] for c in allc], nan_policy="omit").statistic)
           for name in ["stable_rank", "mean_logprob"] + variants}
    picked_len = {name: float(np.mean([records[("samples", p.id)][int(np.argmax(
        [c["features"].get(name) if c["features"].get(name) is not None and math.isfinite(c["features"].get(name))
         else -math.inf for c in records[("samples", p.id)]]))]["n_tokens"] for p in problems]))
        for name in ["stable_rank", "mean_logprob"] + variants}
    result = {"questions": len(problems), "greedy": greedy, "accuracy": table, "spearman_tokens": rho,
              "picked_tokens_at_8": picked_len,
              "mean_tokens": float(np.mean([c["n_tokens"] for c in allc])), "bon_dir": str(bon_dir),
              "run": pinned}
    out = Path(args.output_dir or Path(args.cache_dir))
    (out / "bon_rescored.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["cache", "features", "report", "bon"])
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--bon-dir", default=str(DEFAULT_CACHE / "bon_mmlu"), help="a finished srgrpo bon run")
    parser.add_argument("--variants", default="stable_rank_prompt_adjusted", help="registered features (srgrpo.features) to re-score with")
    parser.add_argument("--salvage", action="store_true", help="adopt an earlier longest-first run's complete items")
    parser.add_argument("--neutral", type=int, default=150, help="GSM8K-train items for the neutral-text statistics")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output-dir", default=str(RESULTS), help="report folder; the report also reads the GRPO "
                        "length probe's grpo_probe*.json there (benchmarks/grpo_length_probe.py --output)")
    parser.add_argument("--limit", type=int, default=None, help="first N RewardBench pairs only (smoke test)")
    args = parser.parse_args(argv)
    if args.stage == "cache":
        stage_cache(args)
    elif args.stage == "bon":
        stage_bon(args)
    elif args.stage == "features":
        stage_features(args)
    else:
        stage_report(args)


if __name__ == "__main__":
    main()
