"""Best-of-N generation speed, and the selection overhead: stable rank scored for free during
generation vs a re-forward pass.

Four routes generate from the same prompts with the same seed and batches:

  (0) hf-generate transformers `generate` over the same left-padded batches, cut at the stop ids:
                 the baseline of the decoding loop, which drops finished rows from the batch.
  (a) generate   HFGenerator(scoring="none"): srgrpo's decoding loop alone, no scores.
  (b) free       HFGenerator(scoring="free"): the same generation with forward hooks that keep the
                 hidden states and next-token statistics; SR, self-certainty and log-prob computed
                 from them after each batch.
  (c) reforward  HFGenerator(scoring="reforward"): the same generation, then a second forward pass
                 over the exact generated ids (StableRankScorer) for the same features.

Overhead of a route = (its time - time of (a)) / time of (a). Target: (b) under 5% of generation
time. The routes run interleaved, `--repeats` times each, and the best time of each is kept, so a
busy machine slows all alike. The samples of (a), (b) and (c) must be identical token for token
and the SR of (b) and (c) must agree (the free-scoring equivalence, measured on real data here).
(0) draws the same distribution but not the same tokens (its random stream parts from (a)'s at the
first row that stops), so it is compared in generated tokens per second: speedup = (a)'s rate over (0)'s.

    python benchmarks/bench_bon.py                         # 8 GSM8K questions x 8 samples, embedded model
    python benchmarks/bench_bon.py --questions 2 --n 2     # quick check
    python benchmarks/bench_bon.py --routes hf-generate none --threads 1   # decoding speed only
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from common import add_model_arguments, load_bench_model

from srgrpo.generation import HFGenerator, Sampling, cut_at_stop, left_pad, prompt_token_ids
from srgrpo.evaluation.datasets import load_problems

ROUTES = ("hf-generate", "none", "free", "reforward")
OVERHEAD_TARGET = 0.05


def hf_generate(generator: HFGenerator, prompts, n: int, sampling: Sampling, seed: int) -> list[list[list[int]]]:
    """transformers `generate` over the batches HFGenerator would run, seeded the same way: per
    prompt, n lists of generated ids cut at the first stop id."""
    prompt_ids = [prompt_token_ids(generator.tokenizer, m) for m in prompts]
    rows = [q for q in range(len(prompts)) for _ in range(n)]
    out: list[list[int]] = []
    for lo in range(0, len(rows), generator.batch_size):
        torch.manual_seed(seed * 1_000_003 + lo)
        batch = [prompt_ids[q] for q in rows[lo:lo + generator.batch_size]]
        ids, mask = left_pad(batch, generator.pad_id)
        width = ids.shape[1]
        with torch.inference_mode():
            generated = generator.model.generate(
                input_ids=ids.to(generator.device), attention_mask=mask.to(generator.device), max_new_tokens=sampling.max_new_tokens, do_sample=True,
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=0, pad_token_id=generator.pad_id,
                eos_token_id=sorted(generator.stop_ids))
        for g in generated[:, width:].tolist():
            out.append(cut_at_stop(g, generator.stop_ids)[0])
    return [out[q * n:(q + 1) * n] for q in range(len(prompts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="samples per question")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES),
                        help="routes to time; 'none' (a) is always timed, as every figure is relative to it")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "bench_bon.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_bench_model(args.model, dtype=args.dtype, device=args.device, tokenizer=args.tokenizer,
                                        layers=args.layers)
    prompts = [p.messages() for p in load_problems(args.dataset, limit=args.questions)]
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    routes = [r for r in ROUTES if r in args.routes or r == "none"]
    generators = {route: HFGenerator(model, tokenizer, batch_size=args.batch_size,
                                     scoring="none" if route == "hf-generate" else route) for route in routes}
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)

    generators["none"].generate(prompts[:1], 1, Sampling(max_new_tokens=4))  # warm-up
    times = {route: [] for route in routes}
    tokens: dict[str, list[list[list[int]]]] = {}
    outputs = {}
    for repeat in range(args.repeats):
        for route in routes:
            sync()
            start = time.perf_counter()
            if route == "hf-generate":
                tokens[route] = hf_generate(generators[route], prompts, args.n, sampling, seed=0)
            else:
                outputs[route] = generators[route].generate(prompts, args.n, sampling, seed=0)
                tokens[route] = [[s.token_ids for s in q] for q in outputs[route]]
            sync()
            times[route].append(time.perf_counter() - start)
            print(f"repeat {repeat + 1}: {route:<11} {times[route][-1]:8.1f} s", flush=True)

    best = {route: min(t) for route, t in times.items()}
    counts = {route: sum(len(t) for q in rows for t in q) for route, rows in tokens.items()}
    rate = {route: counts[route] / best[route] for route in routes}
    result = {
        "model": args.model or "embedded SmolLM2-135M-Instruct", "dtype": str(model.dtype),
        "device": str(next(model.parameters()).device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "questions": args.questions, "n": args.n,
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "generated_tokens": counts,
        "seconds": best, "tokens_per_second": rate,
    }
    print(f"\nbest of {args.repeats}:")
    for route in routes:
        print(f"  {route:<11} {best[route]:8.1f} s  {counts[route]:6d} tokens  {rate[route]:7.1f} tokens/s")
    if "hf-generate" in routes:
        result["decoding_speedup_over_hf_generate"] = rate["none"] / rate["hf-generate"]
        print(f"decoding loop vs transformers generate: {result['decoding_speedup_over_hf_generate']:.2f}x "
              "generated tokens per second")
    scored = [r for r in ("free", "reforward") if r in routes]
    if scored:
        overhead = {route: (best[route] - best["none"]) / best["none"] for route in scored}
        same = all(tokens[route] == tokens["none"] for route in scored)
        result.update(overhead=overhead, identical_samples=same)
        for route in scored:
            print(f"  {route} scoring overhead {100 * overhead[route]:+.2f}% of generation")
        if "free" in overhead:
            verdict = "meets" if overhead["free"] < OVERHEAD_TARGET else "misses"
            print(f"free-scoring overhead {verdict} the {100 * OVERHEAD_TARGET:.0f}% target")
        print(f"samples identical across the srgrpo routes: {same}")
    if len(scored) == 2:
        pairs = [(s.features["stable_rank"], t.features["stable_rank"])
                 for q, r in zip(outputs["free"], outputs["reforward"]) for s, t in zip(q, r) if s.token_ids]
        result["max_relative_sr_difference_free_vs_reforward"] = max_rel = \
            max(abs(a - b) / abs(b) for a, b in pairs if b == b)
        result["free_vs_reforward_speedup_of_scoring"] = \
            (best["reforward"] - best["none"]) / max(best["free"] - best["none"], 1e-9)
        print(f"max relative SR difference free vs re-forward: {max_rel:.1e}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
