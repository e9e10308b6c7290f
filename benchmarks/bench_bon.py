"""Best-of-N selection overhead: stable rank scored for free during generation vs a re-forward pass.

Three routes generate the same samples (same prompts, same seed, same batches):

  (a) generate   HFGenerator(scoring="none"): transformers `generate` alone, no scores.
  (b) free       HFGenerator(scoring="free"): the same generation with forward hooks that keep the
                 hidden states and next-token statistics; SR, self-certainty and log-prob computed
                 from them after each batch.
  (c) reforward  HFGenerator(scoring="reforward"): the same generation, then a second forward pass
                 over the exact generated ids (StableRankScorer) for the same features.

Overhead of a route = (its time - time of (a)) / time of (a). Target: (b) under 5% of generation
time. The routes run interleaved, `--repeats` times each, and the best time of each is kept, so a
busy machine slows all three alike. The samples of (b) and (c) must be identical token for token
and their SR must agree (the free-scoring equivalence, measured on real data here).

    python benchmarks/bench_bon.py                         # 8 GSM8K questions x 8 samples, embedded model
    python benchmarks/bench_bon.py --questions 2 --n 2     # quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from common import QWEN25_15B_NAME, load_bench_model

from srgrpo.generation import HFGenerator, Sampling
from srgrpo.evaluation.datasets import load_problems

ROUTES = ("none", "free", "reforward")
OVERHEAD_TARGET = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct; "
                        f"{QWEN25_15B_NAME}: Qwen2.5-1.5B's architecture with random weights (GPU timing)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="samples per question")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "bench_bon.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_bench_model(args.model, dtype=args.dtype, device=args.device)
    prompts = [p.messages() for p in load_problems(args.dataset, limit=args.questions)]
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    generators = {route: HFGenerator(model, tokenizer, batch_size=args.batch_size, scoring=route) for route in ROUTES}
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)

    generators["none"].generate(prompts[:1], 1, Sampling(max_new_tokens=4))  # warm-up
    times = {route: [] for route in ROUTES}
    outputs = {}
    for repeat in range(args.repeats):
        for route in ROUTES:
            sync()
            start = time.perf_counter()
            outputs[route] = generators[route].generate(prompts, args.n, sampling, seed=0)
            sync()
            times[route].append(time.perf_counter() - start)
            print(f"repeat {repeat + 1}: {route:<9} {times[route][-1]:8.1f} s", flush=True)

    best = {route: min(t) for route, t in times.items()}
    tokens = sum(len(s.token_ids) for q in outputs["none"] for s in q)
    same_samples = all(s.token_ids == t.token_ids for route in ("free", "reforward")
                       for q, r in zip(outputs["none"], outputs[route]) for s, t in zip(q, r))
    pairs = [(s.features["stable_rank"], t.features["stable_rank"])
             for q, r in zip(outputs["free"], outputs["reforward"]) for s, t in zip(q, r) if s.token_ids]
    max_rel = max(abs(a - b) / abs(b) for a, b in pairs if b == b)
    overhead = {route: (best[route] - best["none"]) / best["none"] for route in ("free", "reforward")}
    result = {
        "model": args.model or "embedded SmolLM2-135M-Instruct", "dtype": str(model.dtype),
        "device": str(next(model.parameters()).device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "questions": args.questions, "n": args.n,
        "max_new_tokens": args.max_new_tokens, "generated_tokens": tokens, "seconds": best,
        "overhead": overhead, "free_vs_reforward_speedup_of_scoring":
            (best["reforward"] - best["none"]) / max(best["free"] - best["none"], 1e-9),
        "identical_samples": same_samples, "max_relative_sr_difference_free_vs_reforward": max_rel,
    }
    print(f"\n{tokens} generated tokens; best of {args.repeats}:")
    for route in ROUTES:
        extra = "" if route == "none" else f"  overhead {100 * overhead[route]:+.2f}% of generation"
        print(f"  ({'abc'[ROUTES.index(route)]}) {route:<9} {best[route]:8.1f} s{extra}")
    verdict = "meets" if overhead["free"] < OVERHEAD_TARGET else "misses"
    print(f"free-scoring overhead {100 * overhead['free']:.2f}% {verdict} the {100 * OVERHEAD_TARGET:.0f}% target; "
          f"re-forward {100 * overhead['reforward']:.2f}%")
    print(f"samples identical across routes: {same_samples}; max relative SR difference free vs re-forward: {max_rel:.1e}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
