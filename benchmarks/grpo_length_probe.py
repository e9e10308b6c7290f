"""GRPO length probe (issue 13): does the completion length run away with a reward?

Same seed, prompts and settings for each reward; only the reward differs. Prints and writes (json)
the mean completion length and mean reward per step of each run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/grpo_length_probe.py \
        --rewards stable_rank,<variant> --steps 4 --output studies/length/results/grpo_probe.json

Rewards: any registered feature (srgrpo.features.FEATURES), e.g. `stable_rank` (the paper's) or
`stable_rank_prompt_adjusted`, through srgrpo's StableRankReward on the same frozen base (LoRA adapter
disabled).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import REPO
from common import SHARED_DATA as SHARED

# Short open-ended chat prompts (written for this probe): a reply can be a few words or a page, so
# the reward, not the prompt, decides how long completions become.
SHORT_PROMPTS = [
    "What is the capital of France?", "Say hello.", "Write a haiku about rain.", "Add 1/3 and 1/4.",
    "Name a primary colour.", "What is 7 times 8?", "Give me a synonym for happy.", "Who wrote Hamlet?",
]


def run(reward_name: str, args) -> dict:

    from srgrpo.models import load_model
    from srgrpo.training.config import make_run
    from srgrpo.training.trainer import build_trainer, load_prompt_dataset

    torch.manual_seed(args.seed)
    model, tokenizer = load_model(None, dtype="float32")
    source = args.prompts
    if source in ("short", "fixed"):
        # fixed: one prompt at every step, so a change in length is the policy's, not the prompt's
        texts = [args.fixed_prompt] if source == "fixed" else SHORT_PROMPTS
        source = Path(tempfile.mkdtemp(prefix="grpo-probe-prompts-")) / "prompts.jsonl"
        source.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in texts))
    prompts = load_prompt_dataset(str(source))
    prompts = prompts.select([i % len(prompts) for i in range(args.steps * args.prompts_per_step)])
    # Same settings for every reward; only the registered feature that rewards differs.
    run_config = make_run(
        dataset=str(source), output_dir=tempfile.mkdtemp(prefix=f"grpo-probe-{reward_name}-"),
        max_steps=args.steps, num_generations=args.k, per_device_train_batch_size=args.k * args.prompts_per_step,
        gradient_accumulation_steps=1, max_completion_length=args.max_completion_length,
        learning_rate=args.lr, save_steps=10_000, seed=args.seed, gradient_checkpointing=False,
        shuffle_dataset=False, rewards=reward_name,
    )
    trainer, _ = build_trainer(run_config, model, tokenizer, prompts)
    start = time.time()
    trainer.train()
    steps = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    return {
        "reward": reward_name,
        "mean_length": [h["completions/mean_length"] for h in steps],
        "clipped_ratio": [h.get("completions/clipped_ratio") for h in steps],
        "reward_mean": [h.get("reward") for h in steps],
        "seconds": time.time() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewards", default="stable_rank")
    parser.add_argument("--prompts", default="short", help="'short' (built-in short chat prompts, one per step), 'fixed' (--fixed-prompt at every "
                        "step) or a prompt file, "
                        f"e.g. {SHARED / 'eval' / 'gsm8k_train.jsonl'}")
    parser.add_argument("--fixed-prompt", default="Tell me about the moon.", help="the prompt of --prompts fixed")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--k", type=int, default=4, help="completions per prompt")
    parser.add_argument("--prompts-per-step", type=int, default=1)
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(REPO / "studies" / "length" / "results" / "grpo_probe.json"),
                        help="where the length study's report reads it (studies/length/study.py report)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name in args.rewards.split(","):
        result = run(name, args)
        results.append(result)
        lengths = " -> ".join(f"{x:.1f}" for x in result["mean_length"])
        growth = result["mean_length"][-1] / result["mean_length"][0] - 1
        print(f"{name}: mean completion length per step {lengths} ({100 * growth:+.0f}%), "
              f"{result['seconds']:.0f} s", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
