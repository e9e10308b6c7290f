"""Time the reward server against in-process scoring of the same texts, in one run.

  in-process  the server's own encoding (`BatchingWorker.encode`: the query tokenised as a whole,
              split at its prompt) then `StableRankScorer.iter_encoded_features` over all texts at
              once (length-sorted batches of `--batch-size`): no HTTP, no queue. Run
              right before each served level (the server idle meanwhile), so that a busy machine's
              drift does not bias the ratio.
  served      `srgrpo serve` in a subprocess on 127.0.0.1; C concurrent clients (asyncio +
              aiohttp, keep-alive) send one text per request, as OpenRLHF does, until
              `--n-texts` texts are scored; C in `--concurrency` (1..256).
  fairness    one client sends `--big` texts in one request; 0.5 s later another sends one text.
              Its latency is compared with the same one-text request on an idle server (its own
              compute); target: at most 2 s more.

Figures: texts/s and tokens/s (the tokens the model reads), p50/p99 request latency, the ratio
served / in-process texts/s (target at 64 clients: >= 0.8), and the largest relative difference
between served and in-process rewards (target 1e-5). Loopback only; every loop is bounded.

    python benchmarks/bench_server.py                                   # embedded SmolLM2, CPU
    python benchmarks/bench_server.py --n-texts 64 --concurrency 1,16,64 --big 200   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from srgrpo.serving import launch

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT_TARGET = 0.8  # served / in-process texts/s at 64 clients
FAIRNESS_TARGET_S = 2.0  # extra latency of a 1-text request behind a big one


def example_pairs() -> list[tuple[str, str]]:
    with resources.as_file(resources.files("srgrpo") / "examples" / "pairs.jsonl") as path:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [(r["prompt"], r["response"]) for r in rows]


def build_texts(tokenizer, n: int, words: int | None = None) -> tuple[list[str], list[str]]:
    """(prompts, queries): the chat-templated prompt, and prompt + response + end of turn, cycling
    through the example pairs shipped with srgrpo."""
    pairs = example_pairs()
    prompts, queries = [], []
    for i in range(n):
        question, answer = pairs[i % len(pairs)]
        if words:
            answer = " ".join(answer.split()[:words])
        messages = question if isinstance(question, list) else [{"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompts.append(prompt)
        queries.append(prompt + answer + (tokenizer.eos_token or ""))
    return prompts, queries


def in_process(scorer, prompts, queries) -> tuple[float, list[float], int]:
    """(seconds, rewards, tokens) for scoring the texts in-process with the server's encoding."""
    from srgrpo.serving.worker import BatchingWorker, Job

    worker = BatchingWorker(scorer)  # only its encoder is used: no thread is started
    started = time.perf_counter()
    job = Job(queries, prompts)
    encoded = [worker.encode(job, i)[0] for i in range(len(queries))]
    values = [0.0] * len(queries)
    for item in scorer.iter_encoded_features(encoded, ("stable_rank",)):
        values[item.index] = item.values["stable_rank"]
    return time.perf_counter() - started, values, sum(len(e.input_ids) for e in encoded)


def start_server(args) -> tuple[subprocess.Popen, str, list[str]]:
    argv = ["--port", "0", "--dtype", args.dtype, "--device", args.device, "--batch-size", str(args.batch_size),
            "--max-batch-texts", str(args.max_batch_texts)] + (["--model", args.model] if args.model else [])
    env = {"PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc, url, lines = launch.start_server(argv, env=env, timeout=300)
    except RuntimeError as err:
        raise SystemExit(str(err)) from None
    return proc, url + "/get_reward", lines


async def served(url, prompts, queries, concurrency: int) -> dict:
    import aiohttp

    latencies, rewards, errors = [], [None] * len(queries), []
    next_index = iter(range(len(queries)))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def client():
            for i in next_index:  # shared iterator: each text is sent once, the loop is bounded
                t0 = time.perf_counter()
                try:
                    async with session.post(url, json={"query": [queries[i]], "prompts": [prompts[i]], "labels": [""]}) as r:
                        r.raise_for_status()
                        rewards[i] = (await r.json())["rewards"][0]
                except Exception as err:
                    errors.append(repr(err))
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "latencies": latencies, "rewards": rewards, "errors": errors}


async def fairness(url, prompts, queries, big: int) -> dict:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        async def post(qs, ps):
            t0 = time.perf_counter()
            async with session.post(url, json={"query": qs, "prompts": ps}) as r:
                r.raise_for_status()
                await r.json()
            return time.perf_counter() - t0

        alone = min([await post(queries[:1], prompts[:1]) for _ in range(3)])
        big_queries = [queries[i % len(queries)] for i in range(big)]
        big_prompts = [prompts[i % len(prompts)] for i in range(big)]
        big_task = asyncio.ensure_future(post(big_queries, big_prompts))
        await asyncio.sleep(0.5)
        small = await post(queries[:1], prompts[:1])
        big_seconds = await big_task
    return {"alone": alone, "behind_big": small, "big_seconds": big_seconds}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model id or folder (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-texts", type=int, default=256, help="texts per concurrency level (default: 256)")
    parser.add_argument("--concurrency", default="1,4,16,64,256", help="client counts (default: 1,4,16,64,256)")
    parser.add_argument("--big", type=int, default=1000, help="texts in the fairness check's big request (0: skip)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass (both routes)")
    parser.add_argument("--max-batch-texts", type=int, default=64, help="the server's --max-batch-texts")
    parser.add_argument("--response-words", type=int, default=None,
                        help="cut each example response to its first N words (default: whole)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in both routes (default: torch's choice; 1 is steadier on a busy machine)")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    if not all(1 <= c <= 256 for c in levels) or args.n_texts < max(levels):
        raise SystemExit("concurrency must be within 1..256 and --n-texts at least the largest level")

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the server process
    import torch

    import srgrpo
    from srgrpo.options import ScoringOptions
    from srgrpo.scoring import StableRankScorer

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = srgrpo.load_model(args.model, dtype=args.dtype, device=args.device)
    scorer = StableRankScorer(model, tokenizer, ScoringOptions(batch_size=args.batch_size))
    prompts, queries = build_texts(tokenizer, args.n_texts, args.response_words)
    print(f"{args.n_texts} texts per level, torch threads {torch.get_num_threads()}, device {scorer.device}, "
          f"dtype {next(model.parameters()).dtype}", flush=True)
    in_process(scorer, prompts[:8], queries[:8])  # warm-up
    _, expected, n_tokens = in_process(scorer, prompts, queries)

    proc, url, log = start_server(args)
    results = {}
    try:
        asyncio.run(served(url, prompts[:8], queries[:8], 8))  # warm-up
        for c in levels:
            # In-process right before each served run (the server idle meanwhile): a busy shared
            # machine drifts, so each level is compared with its neighbour in time.
            base_s, _, _ = in_process(scorer, prompts, queries)
            r = asyncio.run(served(url, prompts, queries, c))
            diffs = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(r["rewards"], expected) if a is not None]
            results[c] = {"in_process_s": base_s, "in_process_texts_per_s": args.n_texts / base_s,
                          "seconds": r["seconds"], "texts_per_s": args.n_texts / r["seconds"],
                          "tokens_per_s": n_tokens / r["seconds"], "ratio": base_s / r["seconds"],
                          "p50_s": pct(r["latencies"], 0.5), "p99_s": pct(r["latencies"], 0.99),
                          "errors": len(r["errors"]), "max_rel_diff": max(diffs) if diffs else None}
            print(f"{c:3d} clients: in-process {base_s:.2f} s, served {r['seconds']:.2f} s "
                  f"({results[c]['ratio']:.2f}x), p50 {results[c]['p50_s']:.3f} s, p99 {results[c]['p99_s']:.3f} s, "
                  f"{len(r['errors'])} errors, max rel diff {results[c]['max_rel_diff']:.1e}", flush=True)
        fair = asyncio.run(fairness(url, prompts, queries, args.big)) if args.big else None
    finally:
        proc.terminate()
        proc.wait(600)

    print(f"\n{args.n_texts} texts ({n_tokens} tokens) per level, one text per request")
    print("| clients | in-process texts/s | served texts/s | served tokens/s | served / in-process "
          "| p50 latency (s) | p99 latency (s) | errors | max rel. diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, r in results.items():
        print(f"| {c} | {r['in_process_texts_per_s']:.1f} | {r['texts_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
              f"{r['ratio']:.2f} | {r['p50_s']:.3f} | {r['p99_s']:.3f} | {r['errors']} | {r['max_rel_diff']:.1e} |")
    if 64 in results:
        ok = results[64]["ratio"] >= THROUGHPUT_TARGET
        print(f"\nthroughput at 64 clients: {results[64]['ratio']:.2f}x in-process "
              f"(target >= {THROUGHPUT_TARGET}): {'met' if ok else 'NOT met'}")
    if fair:
        extra = fair["behind_big"] - fair["alone"]
        print(f"fairness: a 1-text request took {fair['behind_big']:.2f} s behind a {args.big}-text request "
              f"({fair['big_seconds']:.1f} s), {fair['alone']:.2f} s alone: {extra:+.2f} s "
              f"(target <= {FAIRNESS_TARGET_S:.0f} s): {'met' if extra <= FAIRNESS_TARGET_S else 'NOT met'}")
    if args.output:
        args.output.write_text(json.dumps({"n_texts": args.n_texts, "tokens": n_tokens, "served": results,
                                           "fairness": fair}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
