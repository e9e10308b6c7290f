"""srgrpo: stable rank of a language model's hidden states as a label-free reward.

    model, tokenizer = srgrpo.load_model()            # embedded SmolLM2-135M-Instruct, or any id/folder
    scorer = srgrpo.StableRankScorer(model, tokenizer)
    scorer.score(["What is 2+2?"], ["2 + 2 = 4."])     # -> [stable rank]
"""

from srgrpo.metrics import condition_number, effective_rank, pca_dimension, stable_rank
from srgrpo.models import ModelLoadError, load_model
from srgrpo.options import ScoringOptions
from srgrpo.scoring import PairScore, StableRankScorer

__version__ = "0.1.0"

__all__ = [
    "load_model",
    "ModelLoadError",
    "StableRankScorer",
    "ScoringOptions",
    "PairScore",
    "stable_rank",
    "effective_rank",
    "condition_number",
    "pca_dimension",
    "StableRankReward",
]


def __getattr__(name):
    # The TRL reward pulls in transformers' Trainer machinery (~3 s): import it only when asked for.
    if name == "StableRankReward":
        from srgrpo.training.reward import StableRankReward

        return StableRankReward
    raise AttributeError(f"module 'srgrpo' has no attribute {name!r}")
