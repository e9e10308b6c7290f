"""Reports: Markdown tables and PNG figures of each app's results, in one place.

- `srgrpo.reports.rewardbench`: the RewardBench report (tables, section/score/layer/length plots);
- `srgrpo.reports.best_of_n`: the Best-of-N report (accuracy and gains tables, accuracy-vs-N plot);
- `srgrpo.reports.training`: the training curves (reward, length, repetition);
- `srgrpo.reports.figures` / `tables`: the figure and table helpers they share.
"""
