"""The training rewards by name: `srgrpo train --rewards stable_rank,accuracy --reward_weights 1.0,0.5`.

One registry (`REWARDS`) of what `--rewards` accepts:

- every registered feature (`srgrpo.features.FEATURES`: `stable_rank`, its variants,
  `mean_logprob` = the paper's Perplexity arm, ...): `StableRankReward`;
- `ipo`: P(Yes) / (P(Yes) + P(No)) of the scoring model to the verification question (the
  RewardBench judge `srgrpo.judges.ipo_scores`, question of the "other" section), one forward pass;
- `self_reward`: the paper's Self-Reward arm, the expected 1-5 score of the pointwise judge
  (`srgrpo.judges.pointwise_scores`), scored by the policy itself (scorer `online` by default);
- `accuracy`: TRL's own `trl.rewards.accuracy_reward` (math-verify; None where the gold answer cannot
  be parsed) against the dataset's answer column (`solution`, else `answer`; a GSM8K answer's
  "#### N" is reduced to N first);
- `random`: a control, not a reward: a uniform number in [0, 1) per completion, drawn from the run's
  seed, the step, the completion's place in the batch and its text (so a resumed run draws the same
  numbers). It carries no information about quality; a gain it produces is what GRPO's update does
  on its own (Spurious Rewards, arXiv 2506.10947, saw +21 points on MATH-500 for a Qwen model), the
  baseline any intrinsic reward must beat;
- `reward_model`: a trained sequence-classification reward model, `--reward_model ID_OR_FOLDER`,
  handed to TRL as the string, so TRL loads it (`AutoModelForSequenceClassification`, num_labels=1)
  and scores it on its own path; logged under the model folder's last name, as TRL does.

Every model-based reward (features, ipo, self_reward) takes a scorer (`--reward_scorer`): frozen,
online or ema (`srgrpo.training.sr_reward`); a non-default one is logged under `name@scorer`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from srgrpo.features import FEATURES
from srgrpo.judges import ipo_scores, pointwise_scores
from srgrpo.options import ScoringOptions
from srgrpo.registry import Registry
from srgrpo.training.sr_reward import REWARD_SCORERS, BatchMonitor, StableRankReward, TrainerReward, completion_text

JUDGE_MAX_LENGTH = 2048  # tokens of a judge text (the judge's instruction, prompt and completion)


@dataclass(frozen=True)
class RewardSpec:
    name: str
    kind: str  # feature | ipo | self_reward | accuracy | reward_model
    help: str
    uses_model: bool = True  # scored by the policy's weights (frozen/online/ema apply)
    default_scorer: str = "frozen"


REWARDS: Registry[RewardSpec] = Registry("reward", [
    (f.name, RewardSpec(f.name, "feature", f.help)) for f in FEATURES.values()
])
for _spec in (
    RewardSpec("ipo", "ipo", "P(Yes) of the scoring model to a yes/no verification question (IPO)"),
    RewardSpec("self_reward", "self_reward", "the pointwise 1-5 judge, expected score; the paper scores it with the "
               "policy (scorer online by default)", default_scorer="online"),
    RewardSpec("accuracy", "accuracy", "math-verify against the dataset's answer column (TRL's accuracy_reward)",
               uses_model=False),
    RewardSpec("random", "random", "control: uniform in [0, 1) per completion, seeded (--seed); the baseline an "
               "intrinsic reward must beat", uses_model=False),
    RewardSpec("reward_model", "reward_model", "a trained reward model (--reward_model ID_OR_FOLDER), loaded and run "
               "by TRL", uses_model=False),
):
    REWARDS.add(_spec.name, _spec)


def parse_names(text: str) -> list[str]:
    """'a,b' -> reward names, each checked against the registry (the message lists them all)."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise REWARDS.unknown([str(text)], "--rewards")
    REWARDS.check(names, "--rewards")
    if len(set(names)) != len(names):
        raise ValueError(f"--rewards names a reward twice: {text!r}")
    return names


def resolve_scorers(names: list[str], scorers: str | None) -> list[str | None]:
    """One scorer per reward (None for model-free ones): `scorers` unset = each reward's default,
    one value = every model-based reward, a comma list = one per reward in order."""
    given = [s.strip() for s in scorers.split(",")] if scorers else []
    if len(given) > 1 and len(given) != len(names):
        raise ValueError(f"--reward-scorer has {len(given)} values for {len(names)} rewards ({', '.join(names)}): "
                         "give one value for all, or one per reward")
    REWARD_SCORERS.check(given, "--reward-scorer")
    out = []
    for i, name in enumerate(names):
        spec = REWARDS[name]
        if not spec.uses_model:
            out.append(None)
        elif not given:
            out.append(spec.default_scorer)
        else:
            out.append(given[0] if len(given) == 1 else given[i])
    return out


def logged_name(name: str, scorer: str | None) -> str:
    """What TRL logs a reward as: its name, with `@scorer` unless that is the reward's default."""
    return name if scorer is None or scorer == REWARDS[name].default_scorer else f"{name}@{scorer}"


def gold_answer(text) -> str:
    """The gold answer as TRL's accuracy_reward parses it: a GSM8K solution's final "#### N" -> N."""
    text = "" if text is None else str(text)
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip().replace(",", "")
    return text


class JudgeReward(TrainerReward):
    """`ipo` or `self_reward`: an LLM judge of `srgrpo.judges` run by the scoring model (per `scorer`)
    over the prompt and the completion's text."""

    def __init__(self, kind: str, model=None, tokenizer=None, *, name: str | None = None, scorer: str = "frozen",
                 batch_size: int = 8, max_length: int = JUDGE_MAX_LENGTH, monitor: BatchMonitor | None = None):
        if kind not in ("ipo", "self_reward"):
            raise ValueError(f"judge reward kind must be ipo or self_reward, got {kind!r}")
        super().__init__(model, tokenizer, name=name or kind, scorer=scorer, monitor=monitor)
        self.kind, self.batch_size, self.max_length = kind, batch_size, max_length

    def compute(self, prompts, completions, prompt_ids, completion_ids, **columns):
        texts = [completion_text(c) for c in completions]
        prompts = [p if isinstance(p, str) else [m for m in p if m["role"] != "system"] or p for p in prompts]
        with self.scoring_model() as model, _quiet():
            if self.kind == "ipo":
                scores = ipo_scores(model, self.tokenizer, prompts, texts, batch_size=self.batch_size,
                                    max_length=self.max_length)
            else:
                scores = pointwise_scores(model, self.tokenizer, prompts, texts, batch_size=self.batch_size,
                                          max_length=self.max_length)
        return [float(s) if s == s else None for s in scores]  # NaN (text too long to judge) -> None


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unjudgeable item is None, counted in <name>/unscored_frac
        yield


class AccuracyReward(TrainerReward):
    """`accuracy`: TRL's `accuracy_reward` against the dataset's answer column, which TRL passes as a
    keyword (`solution`, prepared by srgrpo train from `solution` or `answer`)."""

    uses_model = False

    def __init__(self, tokenizer=None, *, name: str = "accuracy", monitor: BatchMonitor | None = None):
        super().__init__(None, tokenizer, name=name, monitor=monitor)

    def compute(self, prompts, completions, prompt_ids, completion_ids, solution=None, **columns):
        from trl.rewards import accuracy_reward

        if solution is None:
            raise ValueError("the accuracy reward needs the dataset's answer column ('solution' or 'answer')")
        messages = [c if isinstance(c, (list, tuple)) else [{"role": "assistant", "content": c}] for c in completions]
        return accuracy_reward(messages, [gold_answer(s) for s in solution])


class RandomReward(TrainerReward):
    """`random`: the control arm. Each completion gets a uniform number in [0, 1) from a hash of the
    seed (the trainer's `args.seed` once bound), the step, its index in the batch and its text:
    reproducible, and the same after a resume, yet independent of anything a policy could learn."""

    uses_model = False

    def __init__(self, seed: int | None = None, *, name: str = "random", monitor: BatchMonitor | None = None):
        super().__init__(None, None, name=name, monitor=monitor)
        self.seed = seed

    def bind(self, trainer) -> "RandomReward":
        super().bind(trainer)
        if self.seed is None:
            self.seed = int(getattr(trainer.args, "seed", 0))
        return self

    def check_ready(self) -> None:
        pass  # reads neither model nor tokenizer (the watch metrics use the tokenizer bind() gives)

    def compute(self, prompts, completions, prompt_ids, completion_ids, **columns):
        import hashlib

        state = columns.get("trainer_state") or getattr(self.trainer, "state", None)
        step = getattr(state, "global_step", 0)
        out = []
        for i, completion in enumerate(completions):
            key = f"{self.seed or 0}|{step}|{i}|{completion_text(completion)}".encode()
            out.append(int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64)
        return out


def build_rewards(names: list[str], scorers: list[str | None], options: ScoringOptions,
                  reward_model: str | None = None, monitor: BatchMonitor | None = None) -> list:
    """TRL `reward_funcs` for the names (srgrpo rewards, still to be bound with `.bind(trainer)`, and
    the reward model as its id/path string for TRL to load)."""
    monitor = monitor or BatchMonitor()
    funcs = []
    for name, scorer in zip(names, scorers, strict=True):
        spec = REWARDS[name]
        label = logged_name(name, scorer)
        if spec.kind == "feature":
            funcs.append(StableRankReward(options=options, feature=name, name=label, scorer=scorer, monitor=monitor))
        elif spec.kind in ("ipo", "self_reward"):
            funcs.append(JudgeReward(spec.kind, name=label, scorer=scorer, batch_size=options.batch_size,
                                     monitor=monitor))
        elif spec.kind == "accuracy":
            funcs.append(AccuracyReward(name=label, monitor=monitor))
        elif spec.kind == "random":
            funcs.append(RandomReward(name=label, monitor=monitor))
        else:
            if not reward_model:
                raise ValueError("--rewards reward_model needs --reward_model ID_OR_FOLDER")
            funcs.append(reward_model)
    return funcs
