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

Who scores (`scorer`): `frozen` (the paper: adapter disabled, or the separate frozen model), `online`
(the current policy, adapter on, as Intuitor), `ema` (the policy's second LoRA adapter "ema",
an exponential moving average of the trained adapter kept by `srgrpo.training.ema`).

This module deliberately imports neither trl nor peft: `import srgrpo` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Sequence

from srgrpo.features import FEATURES
from srgrpo.options import ScoringOptions
from srgrpo.records import json_float
from srgrpo.registry import Registry
from srgrpo.scoring import StableRankScorer
from srgrpo.text import EncodedPair, encode_ids
from srgrpo.training.hacking import completion_metrics
from srgrpo.training.watch import batch_watch_stats, strip_trailing

__all__ = ["StableRankReward", "TrainerReward", "REWARD_SCORERS", "EMA_ADAPTER"]

# Who scores a model-based reward (`--reward_scorer`): name -> what it runs.
REWARD_SCORERS: Registry[str] = Registry("reward scorer", [
    ("frozen", "the base weights: the policy with its adapter off, or a separately loaded frozen model"),
    ("online", "the current policy, adapter on (as Intuitor)"),
    ("ema", "the policy's 'ema' adapter, an exponential moving average of the trained one"),
])
EMA_ADAPTER = "ema"  # the name of the EMA adapter beside the trained one


class BatchMonitor:
    """Shared by the rewards of one trainer: the completion-level metrics (`completions/*`,
    `hacking/*`) of a batch are logged once, by the first reward that sees it (TRL hands every
    reward of one call the same completion_ids list). `dataset_ngrams`: the training prompts'
    n-grams (`srgrpo.training.hacking.PromptNgrams`) for the dataset-overlap measure."""

    def __init__(self, dataset_ngrams=None, completions_path=None):
        self.dataset_ngrams = dataset_ngrams
        self.completions_path = completions_path  # append every completion with its rewards (JSONL), or None
        self._last = None
        self._batch: dict | None = None

    def first_to_see(self, completion_ids) -> bool:
        if self._last is completion_ids:
            return False
        self._last = completion_ids
        return True

    def record(self, completion_ids, step, prompts, texts, name: str, rewards) -> None:
        """Keep a batch's rewards per reward name; a new batch writes the previous one out."""
        if self.completions_path is None:
            return
        if self._batch is None or self._batch["ids"] is not completion_ids:
            self.flush()
            self._batch = {"ids": completion_ids, "step": step, "prompts": prompts, "texts": texts, "rewards": {}}
        self._batch["rewards"][name] = list(rewards)

    def flush(self) -> None:
        """Append the batch held to `completions_path`: one line per completion, {step, prompt,
        completion, rewards: {name: value}}."""
        import json
        from pathlib import Path

        batch, self._batch = self._batch, None
        if batch is None or self.completions_path is None:
            return
        with Path(self.completions_path).open("a") as out:
            for i, (prompt, text) in enumerate(zip(batch["prompts"], batch["texts"])):
                content = prompt if isinstance(prompt, str) else prompt[-1]["content"]
                out.write(json.dumps({"step": batch["step"], "prompt": content, "completion": text,
                                      "rewards": {n: v[i] for n, v in batch["rewards"].items()}}) + "\n")


def _has_adapter(model) -> bool:
    """A PEFT model (duck-typed, so peft need not be imported): it can switch its adapter off."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class TrainerReward:
    """What every srgrpo TRL reward shares: binding to the trainer (policy, tokenizer, chat template,
    group size), the scorer choice (`scorer`: frozen / online / ema) and the per-batch watch metrics.
    Subclasses implement `compute(prompts, completions, prompt_ids, completion_ids, **columns)`."""

    uses_model = True  # False: a reward that reads no model (accuracy), so `scorer` does not apply

    def __init__(self, model=None, tokenizer=None, *, name: str, scorer: str = "frozen",
                 monitor: BatchMonitor | None = None):
        REWARD_SCORERS.lookup(scorer)
        if model is not None and scorer != "frozen":
            raise ValueError(f"scorer {scorer!r} reads the policy; a separately given model can only be the frozen scorer")
        self.model = model
        self.tokenizer = tokenizer
        self.scorer_mode = scorer
        self.__name__ = name  # TRL logs a reward under its callable's __name__
        self.group_size: int | None = None  # completions per prompt, for the watch metrics (bind sets it)
        self.monitor = monitor
        self.trainer = None
        self.chat_template = None
        self.chat_template_kwargs: dict = {}
        self._prompt_cache: dict[str, list[int]] = {}
        self._user_cache: dict[str, list[int]] = {}
        # Per completion of the last batch: context tokens the short-span rule added (empty where the
        # reward has no such rule or it is off); logged as <name>/short_span_frac.
        self.last_context_tokens: list[int] = []

    # ------------------------------------------------------------------ binding
    def bind(self, trainer) -> "TrainerReward":
        """Take the model (when none was given), tokenizer, chat template and group size from a
        TRL trainer. Raises ValueError for full fine-tuning without a separate frozen model."""
        self.trainer = trainer
        if self.tokenizer is None:
            self.tokenizer = getattr(trainer, "_tokenizer", None) or trainer.processing_class
        self.chat_template = getattr(trainer, "chat_template", None)
        self.chat_template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        self.group_size = getattr(trainer, "num_generations", None) or self.group_size
        policy = self._policy()
        if self.uses_model and self.scorer_mode == "frozen" and self.model is None and not _has_adapter(policy):
            raise ValueError(
                "the policy has no PEFT adapter (full fine-tuning), so its weights move during training and "
                "cannot serve as the frozen base: pass a separately loaded frozen model, "
                f"{type(self).__name__}(frozen_model, tokenizer)"
            )
        if self.uses_model and self.model is not None and self.model is policy and not _has_adapter(policy):
            raise ValueError("the reward's model is the policy being fully fine-tuned; give it a separate frozen copy")
        if self.uses_model and self.scorer_mode == "ema" and EMA_ADAPTER not in getattr(policy, "peft_config", {}):
            raise ValueError(f"scorer 'ema' needs the policy's {EMA_ADAPTER!r} adapter: "
                             "call srgrpo.training.ema.add_ema_adapter(policy) before binding")
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
                f"{type(self).__name__} has no model: pass one, or call reward.bind(trainer) after building the GRPOTrainer"
            )
        return self._policy()

    @contextlib.contextmanager
    def scoring_model(self):
        """The model that scores, per `scorer`, in eval mode (no dropout, no gradient checkpointing):
        frozen = any adapter switched off; online = the policy as it is; ema = the policy with its
        EMA adapter active instead of the trained one. The adapter and training mode are restored."""
        model = self._scoring_model()
        was_training = model.training
        model.eval()
        try:
            if self.scorer_mode == "frozen":
                with model.disable_adapter() if _has_adapter(model) else contextlib.nullcontext():
                    yield model
            elif self.scorer_mode == "online":
                yield model
            else:
                active = model.active_adapter
                model.set_adapter(EMA_ADAPTER, inference_mode=True)
                try:
                    yield model
                finally:
                    model.set_adapter(active)  # the trained adapter is trainable again, the EMA one frozen
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

    def user_token_ids(self, prompt) -> list[int]:
        """The token ids of a prompt's text without the chat template (the user turns' contents):
        what the prompt-echo measure compares a completion with."""
        key = repr(prompt)
        if key not in self._user_cache:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt if m["role"] != "assistant")
            self._user_cache[key] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._user_cache) > 4096:
                self._user_cache.pop(next(iter(self._user_cache)))
        return self._user_cache[key]

    def _completion_token_ids(self, completion) -> list[int]:
        """Only for callers outside TRL that pass no completion_ids: tokenise the completion text."""
        return list(self.tokenizer(completion_text(completion), add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ the call
    def compute(self, prompts, completions, prompt_ids, completion_ids, **columns) -> list[float | None]:
        raise NotImplementedError

    def check_ready(self) -> None:
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__} has no tokenizer: pass one, or call reward.bind(trainer)")
        if self.uses_model:
            self._scoring_model()

    def __call__(self, prompts, completions, completion_ids=None, prompt_ids=None, log_metric=None, **columns: Any):
        self.check_ready()  # an unbound reward says so before anything else
        if completion_ids is None:
            completion_ids = [self._completion_token_ids(c) for c in completions]
        if prompt_ids is None:
            prompt_ids = [self.prompt_token_ids(p) for p in prompts]
        rewards = self.compute(prompts, completions, prompt_ids, completion_ids, **columns)
        if self.monitor is not None:
            state = columns.get("trainer_state")
            step = state.global_step + 1 if state is not None else None  # the optimizer step these train
            self.monitor.record(completion_ids, step, prompts, [completion_text(c) for c in completions],
                                self.__name__, rewards)
        if log_metric is not None:
            special = set(self.tokenizer.all_special_ids)
            first = self.monitor is None or self.monitor.first_to_see(completion_ids)
            stats = batch_watch_stats(rewards, completion_ids, self.group_size or len(rewards), special,
                                      prefix=self.__name__, completions=first)
            if first:
                ids = [strip_trailing(c, special) for c in completion_ids]
                stats.update(completion_metrics([completion_text(c) for c in completions], ids,
                                                [self.user_token_ids(p) for p in prompts],
                                                self.monitor.dataset_ngrams if self.monitor else None))
            if self.last_context_tokens:
                stats[f"{self.__name__}/short_span_frac"] = (
                    sum(c > 0 for c in self.last_context_tokens) / len(self.last_context_tokens))
            for name, value in stats.items():
                log_metric(name, value)
        return rewards


def completion_text(completion) -> str:
    """A TRL completion's text: a string, or the content of its (last) assistant message."""
    return completion[-1]["content"] if isinstance(completion, (list, tuple)) else completion


class StableRankReward(TrainerReward):
    """A TRL reward function: the stable rank of each completion's hidden states under the frozen base.

    `model`: None (bind to a trainer's PEFT policy with `bind(trainer)`), a PEFT model (scored with
    its adapter disabled), or a frozen model separate from the policy (full fine-tuning).
    `tokenizer`: the model's tokenizer (taken from the trainer by `bind` when not given).
    `options` / keyword overrides: `ScoringOptions` (span, layer, max_length, truncation_side,
    batch_size, compute_dtype, window_size). `feature`: which hidden-state score to use
    (`stable_rank` by default; any name of the registry `srgrpo.features.FEATURES`). `scorer`: who
    scores, frozen (default), online or ema (module docstring). `name`: what TRL logs it as.

    Returns one float per completion, or None where it cannot be scored (empty completion, no
    response token inside the window, only special tokens, non-finite hidden states); TRL gives
    such a completion zero advantage. When TRL passes `log_metric`, per-batch watch metrics (spread
    and length correlation within groups, repetition, group diversity, the `hacking/*` measures of
    `srgrpo.training.hacking`) are logged beside the reward.
    """

    def __init__(
        self,
        model=None,
        tokenizer=None,
        options: ScoringOptions | None = None,
        *,
        feature: str = "stable_rank",
        name: str = "stable_rank",
        scorer: str = "frozen",
        monitor: BatchMonitor | None = None,
        **option_overrides,
    ):
        self._feature = FEATURES.lookup(feature)  # an unknown name fails here, listing the known ones
        super().__init__(model, tokenizer, name=name, scorer=scorer, monitor=monitor)
        self.options = dataclasses.replace(options or ScoringOptions(), **option_overrides)
        self.feature = feature
        self._scorer: StableRankScorer | None = None

    def bind(self, trainer) -> "StableRankReward":
        super().bind(trainer)
        self._scorer = None
        return self

    def scorer(self) -> StableRankScorer:
        model = self._scoring_model()
        if self.tokenizer is None:
            raise RuntimeError("StableRankReward has no tokenizer: pass one, or call reward.bind(trainer)")
        if self._scorer is None or self._scorer.model is not model:
            self._scorer = StableRankScorer(model, self.tokenizer, self.options)
        return self._scorer

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
        self.last_context_tokens = [e.context_tokens for e in encoded] if self.options.min_span_tokens else []
        values: list[float | None] = [None] * len(encoded)
        with self.scoring_model():
            for item in scorer.iter_encoded_features(encoded, (self.feature,)):
                value = self._feature.oriented(item.values[self.feature])  # a reward is higher-is-better
                values[item.index] = json_float(value)  # TRL takes None for an unscorable completion
        return values

    def check_ready(self) -> None:
        self.scorer()

    def compute(self, prompts, completions, prompt_ids, completion_ids, **columns) -> list[float | None]:
        return self.score_ids(prompt_ids, completion_ids)
