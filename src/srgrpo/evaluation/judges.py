"""The LLM judges moved to `srgrpo.judges` (layer 4), so that training's rewards (ipo, self_reward)
and RewardBench's scorers share one implementation; this name stays importable."""

from srgrpo.judges import *  # noqa: F401,F403
from srgrpo.judges import __all__  # noqa: F401
