"""Time the srgrpo scorer against a naive route and against the bare backbone, in one run, at
several batch sizes, and show where the scorer's time goes.

Three routes score the same (prompt, response) pairs:

  (a) scorer    `StableRankScorer(model, tokenizer, batch_size=B).score(prompts, responses)` with its
                default options (span=response, layer=final_norm, max_length=512). Starts from
                text, so its time includes templating and tokenisation.
  (b) naive     the full causal LM with `output_hidden_states=True`, one pair at a time (LM head
                and every layer's states included), `hidden_states[-1]` sliced to the response
                tokens, SR = sum(s^2) / s[0]^2 from a float32 `torch.linalg.svdvals`.
  (c) backbone  `model.get_decoder()(...)` alone over exactly the right-padded batches the scorer
                builds (same `engine.plan` order and composition, same pad id), pre-tokenised and
                already on the device: no SR, no gather. A lower bound on the scorer's time.

Routes (b) and (c) take their input_ids and [start, end) spans from the scorer's own `encode()`,
so all three see identical tokens. Pairs the scorer cannot score (empty response, response cut
away by the window) are dropped up front so that every route processes the same pairs.

Data: (prompt, chosen) pairs from RewardBench (`rewardbench_offline.jsonl`, read in place). The
file is grouped by subset (llmbar-*, then hep-<language>), so the first N rows would all be
llmbar-natural; we take every k-th row with k = rows // N, which spreads the N pairs evenly over
the file and covers every subset (for N = 200 of 1403 rows: k = 7).

Figures: seconds (time.perf_counter, with torch.cuda.synchronize on a GPU), tokens/s (the
non-pad tokens of all pairs, the same count for every route, divided by the route's seconds),
and peak memory above the route's start (CUDA: max_memory_allocated; CPU: process RSS sampled
every 5 ms by a background thread). Per batch size it prints (a)/(c) = time_c / time_a (target
>= 0.9 on a GPU, >= 1.0 on a CPU, where (a) also runs SR but overlaps it) and (a)/(b) = time_b /
time_a (target >= 4 on a GPU), and a breakdown of the scorer's work, each part timed alone:
templating + tokenisation, collation (padding, host->device copy), forward (= route c), SR
arithmetic on the captured states, host transfer of the results. The parts add up to more than
(a) where the pipeline overlaps them.

Correctness: SR from the scorer vs a float64 SVD of the very hidden states it used (target <= 1e-5
relative with float32 arithmetic), and vs route (b) (differs by the forward's own float noise: bf16
on a GPU).

    python benchmarks/bench_scoring.py                      # 200 pairs, embedded SmolLM2, auto device
    python benchmarks/bench_scoring.py --n-pairs 16          # quick check
    python benchmarks/bench_scoring.py --config-model qwen2.5-1.5b-config --n-pairs 400 \\
        --batch-sizes 8,32 --output bench.json       # Qwen2.5-1.5B's architecture, random weights, bf16 on a GPU
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch
from common import QWEN25_15B_NAME, load_bench_model
from common import REWARDBENCH_OFFLINE as DEFAULT_DATA

import srgrpo
from srgrpo import metrics
from srgrpo.engine import gather_spans
from srgrpo.models import resolve_device, resolve_dtype

SPEED_TARGET = {"cuda": 4.0, "cpu": 1.0}  # (a) vs (b): time_b / time_a
OVERHEAD_TARGET = {"cuda": 0.9, "cpu": 1.0}  # (a) vs (c): time_c / time_a
SR_EXACT_TOLERANCE = 1e-5  # max relative difference, scorer vs float64 SVD of the same states
SR_NAIVE_TOLERANCE = 1e-3  # max relative difference between (a) and (b)
WARMUP_PAIRS = 2


# ----------------------------------------------------------------------------- data and model


def load_pairs(path: Path, n_pairs: int) -> tuple[list[str], list[str], list[str]]:
    """(prompts, chosen responses, subsets) of n_pairs rows spread evenly over the file."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    step = max(1, len(rows) // n_pairs)
    picked = rows[::step][:n_pairs]
    return [r["prompt"] for r in picked], [r["chosen"] for r in picked], [r["subset"] for r in picked]


def build_model(args) -> tuple[torch.nn.Module, object, str]:
    """(model, tokenizer, description). --config-model gives random weights from a config
    (a folder, a config.json, or qwen2.5-1.5b-config for Qwen2.5-1.5B's architecture)."""
    if args.config_model is None:
        model, tokenizer = load_bench_model(args.model, dtype=args.dtype, device=args.device)
        return model, tokenizer, args.model or srgrpo.models.EMBEDDED_NAME
    if args.config_model == QWEN25_15B_NAME:
        model, tokenizer = load_bench_model(QWEN25_15B_NAME, dtype=args.dtype, device=args.device,
                                            tokenizer=args.tokenizer, layers=args.layers)
        return model, tokenizer, "Qwen2.5-1.5B architecture (random weights)"
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if args.tokenizer is None:
        _, tokenizer = srgrpo.load_model(None, device="cpu")  # only its tokenizer is kept
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = AutoConfig.from_pretrained(args.config_model)
    if len(tokenizer) > config.get_text_config().vocab_size:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, more than the config's vocab_size")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    torch.manual_seed(0)
    # Build the weights directly on the device: a 1.5B model would take minutes to init on a CPU.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval(), tokenizer, f"{args.config_model} (random weights)"


# ----------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_cpu_memory() -> None:
    """Give freed heap pages back to the OS, so one route's RSS peak is not hidden by the
    memory a previous route left in the allocator. Best effort: glibc only."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssSampler:
    """Background thread recording the process's peak RSS (torch ops release the GIL)."""

    def __init__(self, interval_s: float = 0.005):
        self.process = psutil.Process()
        self.interval_s = interval_s
        self.start_rss = self.peak_rss = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)


@contextmanager
def measure(device: torch.device, result: dict):
    """Fill result['seconds'] and result['peak_mem_bytes'] (peak above the memory at the start)."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        start_mem = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        yield
        synchronize(device)
        result["seconds"] = time.perf_counter() - t0
        result["peak_mem_bytes"] = torch.cuda.max_memory_allocated(device) - start_mem
    else:
        release_cpu_memory()
        with RssSampler() as rss:
            t0 = time.perf_counter()
            yield
            result["seconds"] = time.perf_counter() - t0
        result["peak_mem_bytes"] = rss.peak_rss - rss.start_rss


# ----------------------------------------------------------------------------- the three routes


def naive_stable_rank(model, pair, device) -> float:
    """SR of one pair the straightforward way: full LM, all hidden states, SVD."""
    ids = torch.tensor([pair.input_ids], device=device)
    # Called as users usually write it: logits, every layer's states and the KV cache all built.
    out = model(input_ids=ids, output_hidden_states=True)
    span = out.hidden_states[-1][0, pair.start : pair.end].float()
    s = torch.linalg.svdvals(span)
    return ((s**2).sum() / s[0] ** 2).item()


def run_naive(model, encoded, device) -> list[float]:
    return [naive_stable_rank(model, pair, device) for pair in encoded]


def padded_batches(scorer, encoded) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The scorer's own batches (same order, composition and padding), on its device."""
    return [scorer.engine.collate([encoded[i] for i in batch]) for batch in scorer.engine.plan(encoded)]


def run_backbone(backbone, batches) -> None:
    for ids, attention in batches:
        backbone(input_ids=ids, attention_mask=attention, use_cache=False)


def captured_spans(scorer, encoded) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (span states, mask) the scorer computes SR from, batch by batch."""
    out = []
    for batch in scorer.engine.plan(encoded):
        items = [encoded[i] for i in batch]
        ids, attention = scorer.engine.collate(items)
        states = scorer.hidden_states(ids, attention)
        out.append(gather_spans(states, [p.start for p in items], [p.end for p in items]))
    return out


def timed(device, fn) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def breakdown(scorer, prompts, responses, encoded, device, repeats: int) -> dict:
    """Seconds of each part of the scorer's work, each timed alone (best of `repeats`)."""
    plan = scorer.engine.plan(encoded)
    spans = captured_spans(scorer, encoded)
    compute_dtype = getattr(torch, scorer.options.compute_dtype)
    results = [metrics.stable_rank(h, m, compute_dtype) for h, m in spans]
    parts = {
        "templating + tokenisation": lambda: scorer.encode(prompts, responses),
        "collation + copy to device": lambda: [scorer.engine.collate([encoded[i] for i in b]) for b in plan],
        "SR arithmetic": lambda: [metrics.stable_rank(h, m, compute_dtype) for h, m in spans],
        "host transfer of results": lambda: [r.to(torch.float64).cpu() for r in results],
    }
    return {name: min(timed(device, fn) for _ in range(repeats)) for name, fn in parts.items()}


def exact_sr_difference(scorer, encoded, sr_scorer) -> float:
    """Max relative difference between the scorer's SR and a float64 SVD of the same states."""
    worst, k = 0.0, 0
    order = [i for batch in scorer.engine.plan(encoded) for i in batch]
    by_index = dict(zip(range(len(encoded)), sr_scorer))
    for (h, m), batch in zip(captured_spans(scorer, encoded), scorer.engine.plan(encoded)):
        for row, i in enumerate(batch):
            s = torch.linalg.svdvals(h[row][m[row]].double())
            reference = ((s**2).sum() / s[0] ** 2).item()
            worst = max(worst, abs(by_index[i] - reference) / reference)
            k += 1
    assert k == len(order)
    return worst


# ----------------------------------------------------------------------------- report


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f}"


def print_report(info: dict, naive: dict, per_batch: dict, accuracy: dict) -> None:
    print()
    print(f"model {info['model']} | device {info['device']} ({info['device_name']}) | dtype {info['dtype']} | "
          f"torch threads {info['threads']} | best of {info['repeats']} runs")
    print(f"{info['pairs']} pairs ({info['dropped']} unscorable dropped, {info['truncated']} cut to "
          f"{info['max_length']} tokens), {info['tokens']:,} tokens; subsets: {info['subsets']}")
    mem_note = ("peak CUDA memory allocated above the route's start" if info["device"].startswith("cuda")
                else "peak process RSS above the route's start, sampled every 5 ms")
    print(f"(b) naive, one pair at a time: {naive['seconds']:.3f} s, {naive['tokens_per_s']:,.0f} tokens/s, "
          f"peak {mib(naive['peak_mem_bytes'])} MiB ({mem_note})")
    print()
    header = f"{'batch':>5} {'(a) tok/s':>11} {'(c) tok/s':>11} {'(a)/(c)':>8} {'(a)/(b)':>8} {'(a) MiB':>9} {'(c) MiB':>9}"
    print(header)
    for bs, r in per_batch.items():
        a, c = r["routes"]["(a) srgrpo scorer"], r["routes"]["(c) bare backbone forward"]
        print(f"{bs:>5} {a['tokens_per_s']:>11,.0f} {c['tokens_per_s']:>11,.0f} {r['a_over_c']:>8.3f} "
              f"{r['a_over_b']:>8.2f} {mib(a['peak_mem_bytes']):>9} {mib(c['peak_mem_bytes']):>9}")
    print()
    print("where the scorer's time goes (each part timed alone, seconds; forward = route (c)):")
    names = ["forward"] + list(next(iter(per_batch.values()))["breakdown"])
    print(f"{'batch':>5} " + " ".join(f"{n[:26]:>27}" for n in names) + f" {'(a) total':>10}")
    for bs, r in per_batch.items():
        parts = {"forward": r["routes"]["(c) bare backbone forward"]["seconds"], **r["breakdown"]}
        print(f"{bs:>5} " + " ".join(f"{parts[n]:>27.4f}" for n in names)
              + f" {r['routes']['(a) srgrpo scorer']['seconds']:>10.4f}")
    print()
    kind = "cuda" if info["device"].startswith("cuda") else "cpu"
    for bs, r in per_batch.items():
        print(f"batch {bs}: (a)/(c) {r['a_over_c']:.3f} target >= {OVERHEAD_TARGET[kind]} "
              f"{'PASS' if r['a_over_c'] >= OVERHEAD_TARGET[kind] else 'FAIL'}; "
              f"(a)/(b) {r['a_over_b']:.2f} target >= {SPEED_TARGET[kind]} "
              f"{'PASS' if r['a_over_b'] >= SPEED_TARGET[kind] else 'FAIL'}")
    print(f"SR vs float64 SVD of the same states: max relative difference {accuracy['exact']:.3g} "
          f"(target <= {SR_EXACT_TOLERANCE}) {'PASS' if accuracy['exact'] <= SR_EXACT_TOLERANCE else 'FAIL'}")
    print(f"SR (a) vs (b): max relative difference {accuracy['naive']:.3g} "
          f"(target <= {SR_NAIVE_TOLERANCE}) {'PASS' if accuracy['naive'] <= SR_NAIVE_TOLERANCE else 'FAIL'}")
    print(f"SR batch invariance across batch sizes: max relative difference {accuracy['batch_invariance']:.3g}")


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RewardBench jsonl (default: %(default)s)")
    p.add_argument("--n-pairs", type=int, default=200, help="pairs to score, spread over the file")
    p.add_argument("--model", default=None, help="HF id, folder or .gguf file (converted once into the model cache); default: the embedded SmolLM2")
    p.add_argument("--config-model", default=None, metavar="PATH_OR_ID",
                   help="build a model with random weights from this config (folder, config.json or id)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer for --config-model; default: the embedded model's tokenizer")
    p.add_argument("--layers", type=int, default=None, help=f"with --config-model {QWEN25_15B_NAME}: only the "
                   "first N layers (a quick dry run on a CPU)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 ...")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-sizes", default="8,32", help="comma-separated batch sizes, all measured in this run")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per route (interleaved); the fastest counts")
    p.add_argument("--output", type=Path, default=None, help="write the figures to this JSON file")
    return p.parse_args(argv)


@torch.inference_mode()
def main(argv=None) -> dict:
    args = parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    model, tokenizer, model_name = build_model(args)
    device = next(model.parameters()).device
    scorers = {bs: srgrpo.StableRankScorer(model, tokenizer, batch_size=bs) for bs in batch_sizes}
    scorer = scorers[batch_sizes[0]]

    prompts, responses, subsets = load_pairs(args.data, args.n_pairs)
    n_loaded = len(prompts)
    encoded = scorer.encode(prompts, responses)
    keep = [i for i, e in enumerate(encoded) if e.problem is None]
    prompts, responses = [prompts[i] for i in keep], [responses[i] for i in keep]
    encoded, subsets = [encoded[i] for i in keep], [subsets[i] for i in keep]
    tokens = sum(len(e.input_ids) for e in encoded)

    # Warm-up: one small call per route (kernel selection, allocator, lazy inits).
    for s in scorers.values():
        s.score(prompts[:WARMUP_PAIRS], responses[:WARMUP_PAIRS])
        run_backbone(s.engine.backbone, padded_batches(s, encoded[:WARMUP_PAIRS]))
    run_naive(model, encoded[:WARMUP_PAIRS], device)

    # Routes run `repeats` times, interleaved, and keep their fastest time: CPU kernels are built
    # per new input shape on first use, so a single pass would charge whichever route runs first
    # for work the others then reuse.
    runs = {"(b) naive, one pair at a time": lambda: run_naive(model, encoded, device)}
    for bs, s in scorers.items():
        batches = padded_batches(s, encoded)
        runs[(bs, "(a) srgrpo scorer")] = lambda s=s: s.score(prompts, responses)
        runs[(bs, "(c) bare backbone forward")] = lambda s=s, batches=batches: run_backbone(s.engine.backbone, batches)
    routes = {name: {"seconds": float("inf"), "peak_mem_bytes": 0} for name in runs}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            result = {}
            with measure(device, result):
                outputs[name] = run()
            routes[name]["seconds"] = min(routes[name]["seconds"], result["seconds"])
            routes[name]["peak_mem_bytes"] = max(routes[name]["peak_mem_bytes"], result["peak_mem_bytes"])
    for r in routes.values():
        r["tokens_per_s"] = tokens / r["seconds"]
    naive = routes["(b) naive, one pair at a time"]
    sr_naive = outputs["(b) naive, one pair at a time"]

    per_batch = {}
    for bs, s in scorers.items():
        a, c = routes[(bs, "(a) srgrpo scorer")], routes[(bs, "(c) bare backbone forward")]
        per_batch[bs] = {
            "routes": {"(a) srgrpo scorer": a, "(c) bare backbone forward": c},
            "a_over_c": c["seconds"] / a["seconds"],
            "a_over_b": naive["seconds"] / a["seconds"],
            "breakdown": breakdown(s, prompts, responses, encoded, device, args.repeats),
        }
    sr_first = outputs[(batch_sizes[0], "(a) srgrpo scorer")]
    accuracy = {
        "exact": exact_sr_difference(scorer, encoded, sr_first),
        "naive": max(abs(a - b) / abs(b) for a, b in zip(sr_first, sr_naive)),
        "batch_invariance": max(abs(a - b) / abs(b) for bs in batch_sizes
                                for a, b in zip(outputs[(bs, "(a) srgrpo scorer")], sr_first)),
    }
    info = {
        "model": model_name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "batch_sizes": batch_sizes,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "pairs": len(encoded),
        "dropped": n_loaded - len(encoded),
        "truncated": sum(e.truncated for e in encoded),
        "max_length": scorer.options.max_length,
        "tokens": tokens,
        "subsets": dict(Counter(subsets)),
    }
    print_report(info, naive, per_batch, accuracy)
    figures = {"info": info, "naive": naive, "per_batch": {str(k): v for k, v in per_batch.items()},
               "accuracy": accuracy}
    if args.output is not None:
        args.output.write_text(json.dumps(figures, indent=2))
        print(f"\nfigures written to {args.output}")
    return figures


if __name__ == "__main__":
    main()
