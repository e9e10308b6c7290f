"""SR-GRPO: GRPO fine-tuning whose only reward is the stable rank under the frozen base model.

`reward` holds the TRL reward (no trl import), `config` the paper's defaults, `watch` the
reward-hacking watch, `trainer` the end-to-end run behind `srgrpo train`, `plots` what the curves
show. Elsewhere: the command `srgrpo train` = `srgrpo.cli.train`; the results' type
`srgrpo.results.TrainingSummary` (summary.json); the curves `srgrpo.reports.training`.
"""

from srgrpo.training.sr_reward import StableRankReward

__all__ = ["StableRankReward"]
