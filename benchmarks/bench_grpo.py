"""What the stable-rank reward costs inside a GRPO step, and what the disabled-adapter trick saves.

One run, three variants, each in its own subprocess so that peak RSS is clean:
  (a) srgrpo's StableRankReward on the policy with its LoRA adapter disabled (no second model),
  (b) the same reward from a separately loaded frozen copy of the base model,
  (c) a constant reward (no scoring): the baseline step.
Each variant runs the same GRPO steps (same seed, prompts, LoRA, K) through TRL's GRPOTrainer; the
first step is a warm-up and is not timed. Printed: peak RSS and seconds per step of each, the
ratios (a)/(c) and (b)/(c) of peak memory, and the reward's share of the step time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_grpo.py            # embedded model, CPU
    .venv/bin/python benchmarks/bench_grpo.py --model qwen2.5-1.5b-config --dtype bfloat16   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED_DATA, load_bench_model

VARIANTS = {"a": "SR reward, disabled adapter", "b": "SR reward, separate frozen copy", "c": "constant reward"}

def load(model_name: str | None, dtype: str):
    return load_bench_model(model_name, dtype=dtype)


def reset_peak_rss() -> None:
    """Forget the peak so far (Linux): loading transients (a state dict beside the model) must not
    count, only what stays resident and what training adds."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_variant(variant: str, args) -> dict:
    """One variant in this process; returns its measurements."""
    import torch
    from transformers import TrainerCallback
    from trl import get_peft_config

    from srgrpo.training.config import make_run
    from srgrpo.training.sr_reward import StableRankReward
    from srgrpo.training.trainer import build_trainer, load_prompt_dataset

    torch.set_num_threads(args.threads)
    model, tokenizer = load(args.model, args.dtype)
    frozen = load(args.model, args.dtype)[0] if variant == "b" else None
    prompts = load_prompt_dataset(str(args.prompts)).select(range(args.steps + 1))
    run = make_run(
        dataset=str(args.prompts), output_dir=tempfile.mkdtemp(prefix=f"bench-grpo-{variant}-"),
        max_steps=args.steps + 1, num_generations=args.k, per_device_train_batch_size=args.k,
        gradient_accumulation_steps=1, max_completion_length=args.max_completion_length,
        learning_rate=1e-6, save_steps=10_000, seed=0, shuffle_dataset=False,
    )
    reward_seconds = []

    def timed(fn):
        def call(*a, **kw):
            started = time.perf_counter()
            out = fn(*a, **kw)
            if device.type == "cuda":
                torch.cuda.synchronize()
            reward_seconds.append(time.perf_counter() - started)
            return out
        call.__name__ = getattr(fn, "__name__", "reward")
        return call

    def constant_reward(prompts, completions, **_):
        return [1.0] * len(prompts)

    step_seconds, step_started = [], []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            step_started.append(time.perf_counter())

        def on_step_end(self, *a, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_seconds.append(time.perf_counter() - step_started[-1])

    device = next(model.parameters()).device
    from trl import GRPOTrainer

    if variant == "a":
        trainer, reward = build_trainer(run, model, tokenizer, prompts, [StepTimer()])
        trainer.reward_funcs[0] = timed(reward)
    else:
        reward = StableRankReward(frozen, tokenizer, options=run.reward.scoring_options()) if variant == "b" else constant_reward
        trainer = GRPOTrainer(model=model, reward_funcs=[timed(reward)], args=run.grpo,
                              train_dataset=prompts, processing_class=tokenizer, peft_config=get_peft_config(run.model),
                              callbacks=[StepTimer()])
        if variant == "b":
            reward.bind(trainer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    trainer.train()
    measured = slice(1, None)  # step 1 warms up
    result = {
        "variant": variant, "steps": len(step_seconds[measured]),
        "step_s": sum(step_seconds[measured]) / max(len(step_seconds[measured]), 1),
        "reward_s": sum(reward_seconds[measured]) / max(len(reward_seconds[measured]), 1),
        "peak_rss_mib": peak_rss_mib(),
        "mean_completion_tokens": trainer.state.log_history[-2].get("completions/mean_length"),
    }
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: embedded SmolLM2-135M-Instruct; "
                        "'qwen2.5-1.5b-config' builds Qwen2.5-1.5B-Instruct's architecture with random weights")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--prompts", type=Path, default=SHARED_DATA / "eval" / "gsm8k_train.jsonl")
    parser.add_argument("--steps", type=int, default=3, help="timed GRPO steps (one more runs first as warm-up)")
    parser.add_argument("--k", type=int, default=8, help="completions per prompt (one prompt per step)")
    parser.add_argument("--max-completion-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--variants", default="cab")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args()

    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args)), flush=True)
        return 0

    results = {}
    for v in args.variants:
        cmd = [sys.executable, __file__, "--variant", v] + sys.argv[1:]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"variant {v} failed")
        results[v] = json.loads(lines[-1][7:])
        r = results[v]
        print(f"({v}) {VARIANTS[v]:<34} {r['step_s']:7.2f} s/step  reward {r['reward_s']:6.2f} s/step  "
              f"peak RSS {r['peak_rss_mib']:7.0f} MiB" + (f"  peak GPU {r['peak_gpu_mib']:7.0f} MiB" if "peak_gpu_mib" in r else "")
              + f"  ({time.perf_counter() - started:.0f} s wall)", flush=True)

    a, b, c = results.get("a"), results.get("b"), results.get("c")
    key = "peak_gpu_mib" if c and "peak_gpu_mib" in c else "peak_rss_mib"
    print(f"\nsettings: model={args.model or 'embedded SmolLM2-135M-Instruct'} dtype={args.dtype} K={args.k} "
          f"max_completion_length={args.max_completion_length} timed steps={args.steps} threads={args.threads}")
    if a and c:
        print(f"memory (a)/(c) = {a[key] / c[key]:.3f}   (target < 1.1)")
    if b and c:
        print(f"memory (b)/(c) = {b[key] / c[key]:.3f}")
    if a and b:
        print(f"memory (a)/(b) = {a[key] / b[key]:.3f}")
    for v in "ab":
        if v in results:
            r = results[v]
            print(f"reward share of step time ({v}) = {r['reward_s'] / r['step_s']:.3f}   (target < 0.15)")
    if a and c:
        print(f"step time (a)/(c) = {a['step_s'] / c['step_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
