"""Write a synthetic file in RewardBench 2's schema (no RB2 data is on the development machines).

Rows follow allenai/reward-bench-2 (split test): {id, prompt, chosen: [str], rejected: [str],
num_correct, num_incorrect, total_completions, models, subset, additional_metadata}, with the real
subset sizes times --scale; the five best-of-4 subsets get 1 chosen + 3 rejected completions, Ties
gets `ref:<n>` / `tied:<n>` row pairs. The texts are random short sentences: the file checks the
protocol's arithmetic (e.g. the random scorer's 25% chance line), not any model.

    python benchmarks/make_synthetic_rb2.py --out /tmp/rb2_synthetic.jsonl --scale 1
    srgrpo rewardbench --data /tmp/rb2_synthetic.jsonl --output-dir /tmp/rb2_run --scorers random,length
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SIZES = {"Factuality": 475, "Precise IF": 160, "Math": 183, "Safety": 450, "Focus": 495, "Ties": 102}
WORDS = "the a river city number answer seven blue quickly because north prime small large".split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))).capitalize() + "."


def row(row_id: str, subset: str, chosen: list[str], rejected: list[str], prompt: str) -> dict:
    return {"id": row_id, "prompt": prompt, "chosen": chosen, "rejected": rejected, "num_correct": len(chosen),
            "num_incorrect": len(rejected), "total_completions": len(chosen) + len(rejected), "models": [],
            "subset": subset, "additional_metadata": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="rows per subset = real size x scale")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for subset, size in SIZES.items():
        n = max(1, round(size * args.scale))
        if subset == "Ties":
            for k in range(max(1, n // 2)):
                prompt = f"Name one example, question {k}."
                rows.append(row(f"ref:{k}", subset, [sentence(rng)], [sentence(rng) for _ in range(3)], prompt))
                rows.append(row(f"tied:{k}", subset, [sentence(rng) for _ in range(rng.randint(2, 5))],
                                [sentence(rng) for _ in range(rng.randint(2, 6))], prompt))
            continue
        for k in range(n):
            rows.append(row(f"{subset}-{k}", subset, [sentence(rng)], [sentence(rng) for _ in range(3)],
                            f"{subset} question {k}?"))
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
