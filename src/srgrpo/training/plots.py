"""What the training curves show, as data: one panel per entry, (title, [(metrics.jsonl column,
line label)]). The drawing is the training report's (`srgrpo.reports.training`), with the figure
helpers every report shares; `srgrpo train` writes it after training.
"""

from __future__ import annotations

# (panel title, [(metrics.jsonl column, line label)])
PANELS = [
    ("reward", [("reward_mean", "total reward"), ("sr_mean", "mean SR"), ("sr_group_std", "SR std within groups")]),
    ("completion length (tokens)", [("completion_length", "mean length")]),
    ("repetition and diversity", [("repetition", "repeated 3-grams in a completion"),
                                  ("group_diversity", "distinct 2-grams across a group"),
                                  ("zero_spread_frac", "groups with zero SR spread")]),
]
