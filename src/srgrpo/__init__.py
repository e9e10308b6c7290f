"""srgrpo: stable rank of a language model's hidden states as a label-free reward.

    model, tokenizer = srgrpo.load_model()            # embedded SmolLM2-135M-Instruct, or any id/folder
    scorer = srgrpo.StableRankScorer(model, tokenizer)
    scorer.score(["What is 2+2?"], ["2 + 2 = 4."])     # -> [stable rank]

The public names load on first use: `import srgrpo.serving.client` (what verl loads) must not pull in
torch, and the TRL reward pulls in transformers' Trainer machinery (~3 s). Type checkers and IDEs
see them through the `TYPE_CHECKING` imports below (as TRL's own `trl/__init__.py` does), which
never run; a test checks that they and `_PUBLIC` name the same things.
"""

import importlib
from typing import TYPE_CHECKING

from srgrpo.version import __version__

# public name -> the module that defines it
_PUBLIC = {
    "load_model": "srgrpo.models",
    "ModelLoadError": "srgrpo.models",
    "StableRankScorer": "srgrpo.scoring",
    "PairScore": "srgrpo.scoring",
    "ScoringOptions": "srgrpo.options",
    "stable_rank": "srgrpo.metrics",
    "effective_rank": "srgrpo.metrics",
    "condition_number": "srgrpo.metrics",
    "pca_dimension": "srgrpo.metrics",
    "StableRankReward": "srgrpo.training.sr_reward",
}

__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover - read by type checkers only
    from srgrpo.metrics import condition_number, effective_rank, pca_dimension, stable_rank
    from srgrpo.models import ModelLoadError, load_model
    from srgrpo.options import ScoringOptions
    from srgrpo.scoring import PairScore, StableRankScorer
    from srgrpo.training.sr_reward import StableRankReward


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'srgrpo' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
