"""Time of one decoding step against the number of rows in the batch.

A decoding step feeds one token per row through the whole model with a key/value cache. On a CPU a
small batch is bound by reading the weights, which every step does once whatever the batch, so
tokens per second grow almost in proportion to the rows until the arithmetic catches up. This is
what sizes `srgrpo bon --gen-batch-size` and `srgrpo evaluate --batch-size` on a given machine.

Each batch size: a prefill of `--context` random tokens per row, then `--steps` greedy steps, timed;
the ratio is each size's tokens per second over the smallest size's, measured in the same run.

    python benchmarks/bench_decode_step.py                                   # embedded model
    python benchmarks/bench_decode_step.py --model FILE.gguf --batch-sizes 8 32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import add_model_arguments, load_bench_model


def step_seconds(model, rows: int, context: int, steps: int) -> float:
    """Mean seconds of one greedy decoding step for `rows` rows after a `context`-token prefill."""
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ids = torch.randint(100, 5000, (rows, context), device=device)
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache, token = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1)
            cache, token = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--context", type=int, default=300, help="tokens per row before the timed steps")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "bench_decode_step.json")
    args = parser.parse_args()
    if min(args.batch_sizes) < 1 or args.context < 1 or args.steps < 1:
        parser.error("batch sizes, --context and --steps must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = load_bench_model(args.model, dtype=args.dtype, device=args.device, tokenizer=args.tokenizer,
                                layers=args.layers)
    model.eval()

    rows = []
    for size in sorted(args.batch_sizes):
        seconds = step_seconds(model, size, args.context, args.steps)
        rows.append({"rows": size, "seconds_per_step": seconds, "tokens_per_second": size / seconds})
        base = rows[0]["tokens_per_second"]
        print(f"{size:4d} rows: {1000 * seconds:7.0f} ms per step  {size / seconds:7.1f} tokens/s  "
              f"{size / seconds / base:5.2f}x the {rows[0]['rows']}-row rate", flush=True)
    result = {"model": args.model or "embedded SmolLM2-135M-Instruct", "dtype": str(model.dtype),
              "device": str(next(model.parameters()).device), "threads": torch.get_num_threads(),
              "context": args.context, "steps": args.steps, "batches": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
