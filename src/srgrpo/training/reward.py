"""The SR-GRPO reward: stable rank of each completion under the frozen base model, as a TRL reward.

TRL's `GRPOTrainer` calls a reward function with `prompts`, `completions` and `completion_ids` (the
token ids the policy sampled) but never hands it the model, so the reward is bound to the trainer
after construction:

    reward = StableRankReward()
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=GRPOConfig(...),
                          train_dataset=prompts, peft_config=LoraConfig(...))
    reward.bind(trainer)
    trainer.train()

With a PEFT policy the reward runs the policy's own weights with the adapter switched off (the
frozen base, no second copy in memory). With full fine-tuning the policy's weights move, so the
reward must be given a separately loaded frozen model: `StableRankReward(frozen_model, tokenizer)`.

This module deliberately imports neither trl nor peft: `import srgrpo` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Sequence

from srgrpo.features import get_feature
from srgrpo.options import ScoringOptions
from srgrpo.records import json_float
from srgrpo.scoring import StableRankScorer
from srgrpo.text import EncodedPair, encode_ids
from srgrpo.training.watch import batch_watch_stats, strip_trailing

__all__ = ["StableRankReward"]


def _has_adapter(model) -> bool:
    """A PEFT model (duck-typed, so peft need not be imported): it can switch its adapter off."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class StableRankReward:
    """A TRL reward function: the stable rank of each completion's hidden states under the frozen base.

    `model`: None (bind to a trainer's PEFT policy with `bind(trainer)`), a PEFT model (scored with
    its adapter disabled), or a frozen model separate from the policy (full fine-tuning).
    `tokenizer`: the model's tokenizer (taken from the trainer by `bind` when not given).
    `options` / keyword overrides: `ScoringOptions` (span, layer, max_length, truncation_side,
    batch_size, compute_dtype, window_size). `feature`: which hidden-state score to use
    (`stable_rank` by default; any name of the registry `srgrpo.features.FEATURES`).

    Returns one float per completion, or None where it cannot be scored (empty completion, no
    response token inside the window, only special tokens, non-finite hidden states); TRL gives
    such a completion zero advantage. When TRL passes `log_metric`, per-batch watch metrics (SR
    spread within groups, repetition, group diversity) are logged beside the reward.
    """

    def __init__(
        self,
        model=None,
        tokenizer=None,
        options: ScoringOptions | None = None,
        *,
        feature: str = "stable_rank",
        name: str = "stable_rank",
        group_size: int | None = None,
        **option_overrides,
    ):
        self._feature = get_feature(feature)  # an unknown name fails here, listing the known ones
        self.model = model
        self.tokenizer = tokenizer
        self.options = dataclasses.replace(options or ScoringOptions(), **option_overrides)
        self.feature = feature
        self.__name__ = name  # TRL logs a reward under its callable's __name__
        self.group_size = group_size  # completions per prompt, for the watch metrics (bind sets it)
        self.trainer = None
        self.chat_template = None
        self.chat_template_kwargs: dict = {}
        self._scorer: StableRankScorer | None = None
        self._prompt_cache: dict[str, list[int]] = {}
        self.last_context_tokens: list[int] = []

    # ------------------------------------------------------------------ binding
    def bind(self, trainer) -> "StableRankReward":
        """Take the model (when none was given), tokenizer, chat template and group size from a
        TRL trainer. Raises ValueError for full fine-tuning without a separate frozen model."""
        self.trainer = trainer
        if self.tokenizer is None:
            self.tokenizer = getattr(trainer, "_tokenizer", None) or trainer.processing_class
        self.chat_template = getattr(trainer, "chat_template", None)
        self.chat_template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        self.group_size = getattr(trainer, "num_generations", None) or self.group_size
        policy = self._policy()
        if self.model is None and not _has_adapter(policy):
            raise ValueError(
                "the policy has no PEFT adapter (full fine-tuning), so its weights move during training and "
                "cannot serve as the frozen base: pass a separately loaded frozen model, "
                "StableRankReward(frozen_model, tokenizer)"
            )
        if self.model is not None and self.model is policy and not _has_adapter(policy):
            raise ValueError("the reward's model is the policy being fully fine-tuned; give it a separate frozen copy")
        self._scorer = None
        self._prompt_cache.clear()  # the chat template may have changed
        return self

    def _policy(self):
        trainer = self.trainer
        model = trainer.model
        accelerator = getattr(trainer, "accelerator", None)
        return accelerator.unwrap_model(model) if accelerator is not None else model

    def _scoring_model(self):
        if self.model is not None:
            return self.model
        if self.trainer is None:
            raise RuntimeError(
                "StableRankReward has no model: pass one, or call reward.bind(trainer) after building the GRPOTrainer"
            )
        return self._policy()

    def scorer(self) -> StableRankScorer:
        model = self._scoring_model()
        if self.tokenizer is None:
            raise RuntimeError("StableRankReward has no tokenizer: pass one, or call reward.bind(trainer)")
        if self._scorer is None or self._scorer.model is not model:
            self._scorer = StableRankScorer(model, self.tokenizer, self.options)
        return self._scorer

    @contextlib.contextmanager
    def frozen_base(self):
        """The scoring model with any adapter switched off, in eval mode (no dropout, no gradient
        checkpointing); the previous training mode is restored afterwards."""
        model = self._scoring_model()
        was_training = model.training
        model.eval()
        try:
            with model.disable_adapter() if _has_adapter(model) else contextlib.nullcontext():
                yield model
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ token ids
    def prompt_token_ids(self, prompt) -> list[int]:
        """The prompt's token ids exactly as TRL builds them for generation: a chat prompt through
        the chat template with the generation prompt; a plain string through the tokenizer."""
        key = repr(prompt)
        if key not in self._prompt_cache:
            if isinstance(prompt, str):
                ids = self.tokenizer(text=prompt)["input_ids"]
            else:
                ids = self.tokenizer.apply_chat_template(
                    [list(prompt)], chat_template=self.chat_template, add_generation_prompt=True,
                    tokenize=True, return_dict=True, **self.chat_template_kwargs,
                )["input_ids"][0]
            self._prompt_cache[key] = list(ids)
            if len(self._prompt_cache) > 4096:  # prompts repeat within a batch, rarely across steps
                self._prompt_cache.pop(next(iter(self._prompt_cache)))
        return self._prompt_cache[key]

    def _completion_token_ids(self, completion) -> list[int]:
        """Only for callers outside TRL that pass no completion_ids: tokenise the completion text."""
        text = completion[-1]["content"] if isinstance(completion, (list, tuple)) else completion
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, prompt_ids: Sequence[int], completion_ids: Sequence[int],
               special_ids: set[int] | None = None) -> EncodedPair:
        """Window and span over prompt_ids + completion_ids, with no re-tokenisation. The trailing
        end-of-turn/padding ids that close a sampled completion are left out, as the text scorer
        leaves out the template's closing tokens: the response is the tokens the policy wrote."""
        if special_ids is None:
            special_ids = set(self.tokenizer.all_special_ids)
        return encode_ids(self.tokenizer, prompt_ids, strip_trailing(completion_ids, special_ids), self.options)

    # ------------------------------------------------------------------ scoring
    def score_ids(self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]]) -> list[float | None]:
        """One score per (prompt ids, completion ids), None where it cannot be scored."""
        scorer = self.scorer()
        special_ids = set(self.tokenizer.all_special_ids)  # once per batch, not once per completion
        encoded = [self.encode(p, c, special_ids) for p, c in zip(prompt_ids, completion_ids, strict=True)]
        # Per completion: context tokens the short-span rule added (logged as stable_rank/short_span_frac).
        self.last_context_tokens = [e.context_tokens for e in encoded]
        values: list[float | None] = [None] * len(encoded)
        with self.frozen_base():
            for item in scorer.iter_encoded_features(encoded, (self.feature,)):
                value = self._feature.oriented(item.values[self.feature])  # a reward is higher-is-better
                values[item.index] = json_float(value)  # TRL takes None for an unscorable completion
        return values

    def __call__(self, prompts, completions, completion_ids=None, prompt_ids=None, log_metric=None, **_: Any):
        self.scorer()  # an unbound reward says so before anything else
        if completion_ids is None:
            completion_ids = [self._completion_token_ids(c) for c in completions]
        if prompt_ids is None:
            prompt_ids = [self.prompt_token_ids(p) for p in prompts]
        rewards = self.score_ids(prompt_ids, completion_ids)
        if log_metric is not None:
            stats = batch_watch_stats(rewards, completion_ids, self.group_size or len(rewards),
                                      set(self.tokenizer.all_special_ids))
            for name, value in stats.items():
                log_metric(name, value)
            if self.options.min_span_tokens and rewards:
                log_metric("stable_rank/short_span_frac",
                           sum(c > 0 for c in self.last_context_tokens) / len(self.last_context_tokens))
        return rewards
