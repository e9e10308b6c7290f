"""Study: stable-rank variants that do not reward length (issue 13).

Stages (run in order; each writes under --cache-dir, default benchmarks/results/length):

  cache   one forward pass of the embedded model over every response of the offline RewardBench
          file (templated as the scorer does, 512-token window, right cut) and over a neutral
          text set (GSM8K *train* question/answer pairs, never evaluation data); keeps the full
          sequence's hidden states at several taps (fp16, one flat file per tap) and each
          response's mean log-probability.
  report  evaluates every variant and baseline offline from the cache, writes
          report.md, results.json and length_study.png.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/study_length.py cache
    PYTHONPATH=src python benchmarks/study_length.py report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "benchmarks" / "results" / "length"
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


def stage_cache(args):
    from srgrpo import load_model
    from srgrpo.scoring import ScoringOptions, StableRankScorer, encode_pair, next_token_stats

    out = Path(args.cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model, tokenizer = load_model()
    model.eval()
    options = ScoringOptions()  # the defaults the README's figures use: response span, 512, right
    scorer = StableRankScorer(model, tokenizer, options)
    taps = {name: scorer.layer_module(spec) for name, spec in TAPS.items()}
    lm_head = model.get_output_embeddings()

    rows = _load_rb()[: args.limit]
    items = []  # one per response
    for k, row in enumerate(rows):
        for side in ("chosen", "rejected"):
            items.append({"set": "rb", "pair": k, "side": side, "subset": row["subset"],
                          "id": row.get("id", str(k)), "prompt": row["prompt"], "response": row[side]})
    neutral = [json.loads(line) for line in NEUTRAL_FILE.read_text().splitlines()[: args.neutral]]
    for k, row in enumerate(neutral):
        items.append({"set": "neutral", "pair": k, "side": "-", "subset": "gsm8k_train", "id": f"n{k}",
                      "prompt": row["question"], "response": row["answer"]})

    encoded = [encode_pair(tokenizer, it["prompt"], it["response"], options, i) for i, it in enumerate(items)]
    total = sum(len(e.input_ids) for e in encoded)
    print(f"{len(items)} items, {total} tokens in all, {total * 576 * 2 / 1e9:.2f} GB per tap", flush=True)

    files = {name: open(out / f"states_{name}.f16", "wb") for name in TAPS}
    offsets = {}  # item -> row offset in the flat files (same for every tap)
    cursor = 0
    index_rows = [None] * len(items)
    overflow = {name: 0 for name in TAPS}
    order = sorted(range(len(items)), key=lambda i: -len(encoded[i].input_ids))
    batch_size = args.batch_size
    start = time.time()
    done = 0
    for b in range(0, len(order), batch_size):
        batch = order[b : b + batch_size]
        pairs = [encoded[i] for i in batch]
        ids, attention = scorer.collate(pairs)
        captured = {}
        scorer.run_backbone(ids, attention, taps, captured.__setitem__)
        for row, (i, e) in enumerate(zip(batch, pairs)):
            n = len(e.input_ids)
            for name in TAPS:
                states = captured[name][row, :n].float()
                overflow[name] += int((states.abs() > 65000).sum())
                files[name].write(states.clamp(-65000, 65000).to(torch.float16).numpy().tobytes())
            # mean log-prob of the response tokens, predicted from positions [rs-1, re-1)
            rs, re_ = e.response_start, e.response_end
            lp = sc = ent = math.nan
            if e.problem is None and re_ > max(rs - 1, 0):
                first = max(rs - 1, 0)
                with torch.inference_mode():
                    logp, cert, entr = next_token_stats(lm_head(captured["final_norm"][row, first : re_ - 1]))
                targets = ids[row, first + 1 : re_]
                lp = logp.gather(1, targets[:, None]).mean().item()
                sc, ent = cert.mean().item(), entr.mean().item()
            it = items[i]
            index_rows[i] = {
                "set": it["set"], "pair": it["pair"], "side": it["side"], "subset": it["subset"], "id": it["id"],
                "offset": cursor, "length": n, "response_start": rs, "response_end": re_,
                "truncated": e.truncated, "problem": e.problem,
                "mean_logprob": lp, "self_certainty": sc, "mean_entropy": ent,
                "input_ids": e.input_ids,
            }
            cursor += n
        done += len(batch)
        if (b // batch_size) % 10 == 0:
            el = time.time() - start
            print(f"{done}/{len(items)} items, {el:.0f} s, eta {el / done * (len(items) - done):.0f} s", flush=True)
    for f in files.values():
        f.close()
    with open(out / "index.jsonl", "w") as f:
        for r in index_rows:
            f.write(json.dumps(r) + "\n")
    meta = {"taps": TAPS, "d": int(model.config.hidden_size), "rows": cursor, "overflow": overflow,
            "options": vars(options) if hasattr(options, "__dict__") else str(options),
            "neutral": args.neutral, "seconds": time.time() - start, "threads": torch.get_num_threads()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    print("done", meta, flush=True)


# ----------------------------------------------------------------------------------------------
# features: every base metric of every item, computed once from the cache


def _load_cache(cache_dir: Path):
    meta = json.loads((cache_dir / "meta.json").read_text())
    index = [json.loads(line) for line in (cache_dir / "index.jsonl").read_text().splitlines()]
    d = meta["d"]
    states = {name: np.memmap(cache_dir / f"states_{name}.f16", dtype=np.float16, mode="r").reshape(-1, d)
              for name in meta["taps"]}
    return meta, index, states


def _rows(states, item, lo, hi) -> torch.Tensor:
    o = item["offset"]
    return torch.from_numpy(np.asarray(states[o + lo : o + hi], dtype=np.float32))


def _top_eig(h: torch.Tensor) -> float:
    t, d = h.shape
    gram = h @ h.T if t <= d else h.T @ h
    return float(torch.linalg.eigvalsh(gram.double())[-1])


def _sr(h: torch.Tensor) -> float:
    if h.shape[0] == 0:
        return math.nan
    top = _top_eig(h)
    return float(h.double().square().sum()) / top if top > 0 else math.nan


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


def _prompt_basis(p: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k right singular vectors of the prompt's states (d x k); fewer if the prompt is shorter."""
    k = min(k, p.shape[0])
    if k == 0:
        return torch.zeros(p.shape[1], 0)
    _, _, vh = torch.linalg.svd(p.double(), full_matrices=False)
    return vh[:k].T.float()


PREFIX_LENGTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
PROMPT_KS = (1, 4, 16)
WHITEN_SHRINK = 0.1
FULL_TAPS = ("final_norm", "last_block")  # every base metric; other taps get the cheap ones


def _base_metrics(tap: str, r: torch.Tensor, eot: torch.Tensor | None, p: torch.Tensor, whiten) -> dict:
    from srgrpo import metrics

    out = {"sr": _sr(r), "sr_c": _sr(r - r.mean(0)) if r.shape[0] > 1 else math.nan}
    mu, w = whiten
    z = (r - mu) @ w
    out["sr_w"] = _sr(z)
    if tap in FULL_TAPS:
        out["sr_eot"] = _sr(torch.cat([r, eot]) if eot is not None else r)
        out["sr_wc"] = _sr(z - z.mean(0)) if r.shape[0] > 1 else math.nan
        out["sr_win64"] = float(metrics.windowed_stable_rank(r, None, torch.float64, window=64))
        pu = p[1:] if p.shape[0] > 1 else p  # skip the first token (attention sink)
        for k in PROMPT_KS:
            v = _prompt_basis(pu, k)
            out[f"sr_p{k}"] = _sr(r - (r @ v) @ v.T)
    return out


def stage_features(args):
    cache_dir = Path(args.cache_dir)
    meta, index, states = _load_cache(cache_dir)
    torch.set_num_threads(1)
    neutral = [it for it in index if it["set"] == "neutral" and it["problem"] is None]
    # Per-model state, from neutral text only: whitening (mean, Sigma^-1/2) per tap.
    whiten = {}
    for tap in meta["taps"]:
        rows = torch.cat([_rows(states[tap], it, it["response_start"], it["response_end"]) for it in neutral])
        whiten[tap] = _whitener(rows, WHITEN_SHRINK)
    torch.save({tap: {"mean": m, "whitener": w} for tap, (m, w) in whiten.items()}, cache_dir / "whiten.pt")
    out = []
    start = time.time()
    todo = [it for it in index if it["problem"] is None]
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
    with open(cache_dir / "features.jsonl", "w") as f:
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
    """E[SR] of a T x d matrix of iid Gaussian entries (Marchenko-Pastur edge):
    ||H||_F^2 ~ T d, ||H||_2^2 ~ (sqrt T + sqrt d)^2."""
    t = np.maximum(tokens, 1).astype(float)
    return t * d / (np.sqrt(t) + math.sqrt(d)) ** 2


def _evaluate(name: str, scores: dict, pairs: list[dict], tokens: dict) -> dict:
    from scipy.stats import spearmanr

    from srgrpo.evaluation.rewardbench import PairOutcome, summarize

    result = {}
    for split in SPLITS:
        chosen = [p for p in pairs if split == "all" or _split_of(p["pair"]) == split]
        outcomes = [PairOutcome(str(p["pair"]), p["subset"], scores.get((p["pair"], "chosen"), math.nan),
                                scores.get((p["pair"], "rejected"), math.nan),
                                tokens[(p["pair"], "chosen")], tokens[(p["pair"], "rejected")]) for p in chosen]
        summary = summarize(outcomes, n_bootstrap=1000, seed=0)
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


def build_scores(features: list[dict], index: list[dict]) -> tuple[dict, dict, dict]:
    """All variant and baseline scores: name -> {(pair, side): value}, plus their descriptions and
    the neutral calibration used."""
    rb = [r for r in features if r["set"] == "rb"]
    neutral = [r for r in features if r["set"] == "neutral"]
    logit = {(it["pair"], it["side"]): it for it in index if it["set"] == "rb"}
    keys = [(r["pair"], r["side"]) for r in rb]
    tokens = np.array([r["tokens"] for r in rb], dtype=float)
    base_keys = sorted(k for k in rb[0] if "/" in k)
    curves = _neutral_curves(neutral, base_keys)
    scores, help_ = {}, {}

    def add(name, values, text):
        scores[name] = {k: float(v) for k, v in zip(keys, values)}
        help_[name] = text

    # baselines
    add("mean_logprob", [logit[k]["mean_logprob"] for k in keys], "mean log-probability of the response tokens")
    add("self_certainty", [logit[k]["self_certainty"] for k in keys], "mean KL(uniform || next-token distribution)")
    add("negative_entropy", [-logit[k]["mean_entropy"] for k in keys], "minus mean next-token entropy")
    add("length", tokens, "response tokens (longer wins)")
    add("shorter", -tokens, "minus response tokens (shorter wins)")
    rng = np.random.default_rng(0)
    add("random", rng.random(len(keys)), "seeded uniform scores")
    # every base metric, raw and length-normalised
    for key in base_keys:
        raw = np.array([r.get(key, math.nan) for r in rb], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            logv = np.log(raw)
        add(key, raw, f"{key} as it is")
        add(f"{key}/gauss", raw / _gauss_null(tokens), f"{key} over E[SR] of an iid Gaussian T x d matrix")
        if key in curves:
            add(f"{key}/neutral", logv - _null_log(curves[key], tokens),
                f"log {key} minus its mean on neutral-text prefixes of the same length")
            add(f"{key}/pow", logv - curves[key]["beta"] * np.log(tokens),
                f"log {key} - beta log T, beta = {curves[key]['beta']:.3f} fitted on neutral-text prefixes")
    return scores, help_, curves


def _zscore_from_neutral(values: dict, neutral_values: np.ndarray) -> dict:
    ok = neutral_values[np.isfinite(neutral_values)]
    mu, sd = float(ok.mean()), float(ok.std()) or 1.0
    return {k: (v - mu) / sd for k, v in values.items()}


def stage_report(args):
    cache_dir = Path(args.cache_dir)
    index = [json.loads(line) for line in (cache_dir / "index.jsonl").read_text().splitlines()]
    features = [json.loads(line) for line in (cache_dir / "features.jsonl").read_text().splitlines()]
    rb_rows = [it for it in index if it["set"] == "rb" and it["side"] == "chosen"]
    pairs = [{"pair": it["pair"], "subset": it["subset"]} for it in rb_rows]
    tokens = {(it["pair"], it["side"]): it["response_end"] - it["response_start"] for it in index if it["set"] == "rb"}
    scores, help_, curves = build_scores(features, index)

    results = {name: _evaluate(name, s, pairs, tokens) for name, s in scores.items()}
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
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:60]))
# ----------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["cache", "features", "report"])
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--neutral", type=int, default=300, help="GSM8K-train items for the neutral-text statistics")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output-dir", default=None, help="report folder (default: the cache dir)")
    parser.add_argument("--limit", type=int, default=None, help="first N RewardBench pairs only (smoke test)")
    args = parser.parse_args(argv)
    if args.stage == "cache":
        stage_cache(args)
    elif args.stage == "features":
        stage_features(args)
    else:
        stage_report(args)


if __name__ == "__main__":
    main()
