"""SR-GRPO settings, read by TRL's own parser.

`srgrpo train` is configured by four dataclasses, parsed together by `trl.TrlParser` (flags, and a
YAML file through `--config`; command-line flags win over the file):

- `TrainScriptArguments`: ours, what the run does around the trainer (prompts, before/after
  evaluation, the collapse watch, resuming);
- `RewardArguments`: every field of `srgrpo.scoring.ScoringOptions`, prefixed `reward_` (the
  reward's token window is not the generation's);
- `SRGRPOModelConfig`: `trl.ModelConfig` (model, dtype, LoRA through `trl.get_peft_config`);
- `SRGRPOConfig`: `trl.GRPOConfig` (every GRPO and Trainer argument).

The last two are TRL's classes with the paper's defaults set on a subclass (`with_defaults`): no
field is copied, so every option of the installed TRL is a flag as it is, and a field TRL renames
needs no edit here unless it is one of the defaults below (then importing this module says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field

from trl import GRPOConfig, ModelConfig, TrlParser

from srgrpo.options import ScoringOptions
from srgrpo.training.reward_registry import REWARDS, parse_names, resolve_scorers

# All attention and MLP projections of Llama/Qwen/Mistral-style decoders (the paper's LoRA targets).
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

REQUIRED = object()  # with_defaults: the field has no default, the user must set it


@dataclass(frozen=True)
class Default:
    """A default for `with_defaults` that also changes the field's argparse metadata (help, aliases)."""

    value: typing.Any
    metadata: dict = field(default_factory=dict)


def with_defaults(**defaults):
    """Class decorator: make `cls` a dataclass whose inherited fields `defaults` get new default
    values, keeping the parent's type and help text (a `Default` may change them). An unknown name
    (a field TRL renamed or removed) is an error at import time rather than a default that
    silently stops applying."""

    def apply(cls):
        parent = cls.__mro__[1]
        inherited = {f.name: f for f in dataclasses.fields(parent)}
        hints = typing.get_type_hints(parent)
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for name, value in defaults.items():
            if name not in inherited:
                raise TypeError(f"{parent.__name__} has no field {name!r} (renamed in this TRL version?): "
                                f"update srgrpo.training.config")
            metadata = dict(inherited[name].metadata)
            if isinstance(value, Default):
                metadata.update(value.metadata)
                value = value.value
            annotations[name] = hints[name]
            if value is REQUIRED:
                new = field(kw_only=True, metadata=metadata)
            elif isinstance(value, (list, dict)):
                new = field(default_factory=lambda value=value: type(value)(value), metadata=metadata)
            else:
                new = field(default=value, metadata=metadata)
            setattr(cls, name, new)
        cls.__annotations__ = annotations
        return dataclass(cls)

    return apply


# ---------------------------------------------------------------------------------------- ours
@dataclass
class TrainScriptArguments:
    """What `srgrpo train` does around TRL's trainer."""

    _argument_group_name = "srgrpo train: prompts, before/after evaluation, watch, resume"

    dataset: str = field(metadata={
        "help": "prompt dataset: a JSONL/JSON file or a Hugging Face dataset id/folder with a 'prompt' column "
        "(a string or chat messages) or a 'question' column (GSM8K-style); 'sample': 16 GSM8K questions "
        "shipped with srgrpo"})
    dataset_split: str = field(default="train", metadata={"help": "split of a Hugging Face dataset"})
    eval_dataset: str | None = field(default=None, metadata={
        "help": "held-out set evaluated greedily before and after training, as `srgrpo evaluate` does: gsm8k, "
        "math500, gpqa, mmlu, aime2025, mmlu_redux, olympiadbench, amc23 or a JSONL of {question, answer}; "
        "unset = no evaluation"})
    eval_limit: int = field(default=100, metadata={"help": "questions of the held-out set"})
    eval_max_new_tokens: int = field(default=256, metadata={"help": "greedy tokens per answer"})
    eval_batch_size: int = field(default=8, metadata={"help": "questions per generate call"})
    eval_every: int = field(default=0, metadata={
        "help": "also evaluate greedily on --eval-dataset every N optimizer steps (and at step 0), writing "
        "eval_curve.jsonl; 0 = only before and after"})
    probe_prompts: str | None = field(default=None, metadata={
        "help": "JSONL of {prompt} requests answered greedily at each --eval-every evaluation: refusal rate and "
        "length (e.g. ordinary requests that merely sound sensitive)"})
    save_completions: bool = field(default=False, metadata={
        "help": "append every sampled completion with its srgrpo rewards to completions.jsonl (main process's share)"})
    watch_window: int = field(default=5, metadata={"help": "logged steps the collapse watch compares at the start and the end"})
    collapse_window: int = field(default=10, metadata={
        "help": "W of the collapse step: the smoothed reward rose over W logged steps while smoothed group "
        "diversity fell by more than --collapse-diversity-drop or held-out accuracy fell (docs: srgrpo train, the collapse step)"})
    collapse_diversity_drop: float = field(default=0.1, metadata={"help": "relative fall of group diversity"})
    collapse_accuracy_drop: float = field(default=0.1, metadata={"help": "absolute fall of held-out accuracy below its best"})
    stop_on_collapse: bool = field(default=False, metadata={
        "help": "stop at the collapse step, or when SR rises while length or diversity collapses (off: only warn)"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in --output-dir"})
    overwrite: bool = field(default=False, metadata={"help": "discard a previous run in --output-dir"})

    def __post_init__(self):
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other")
        for name in ("eval_limit", "eval_max_new_tokens", "eval_batch_size", "watch_window", "collapse_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be 0 or a positive integer, got {self.eval_every!r}")
        if self.eval_every and not self.eval_dataset:
            raise ValueError("--eval-every needs --eval-dataset (the held-out questions to evaluate)")
        if self.probe_prompts and not self.eval_every:
            raise ValueError("--probe-prompts is answered at the --eval-every evaluations: set --eval-every N")
        if self.probe_prompts:
            from pathlib import Path

            if not Path(self.probe_prompts).is_file():
                raise ValueError(f"--probe-prompts: no such file {self.probe_prompts}")


ARGPARSE_KEYS = ("help", "choices", "aliases")  # ScoringOptions metadata that HfArgumentParser passes to argparse


def _reward_arguments() -> type:
    """`RewardArguments`: one `reward_<name>` field per ScoringOptions field, with its type, default,
    choices and help; built from ScoringOptions so that a new scoring option is a flag at once."""
    hints = typing.get_type_hints(ScoringOptions)
    # The parser hands a field's metadata to argparse: only argparse's keys (not the option's "kind").
    specs = [(f"reward_{f.name}", hints[f.name],
              field(default=f.default, metadata={k: v for k, v in f.metadata.items() if k in ARGPARSE_KEYS}))
             for f in dataclasses.fields(ScoringOptions)]
    specs[:0] = [
        ("rewards", str, field(default="stable_rank", metadata={
            "help": "comma-separated rewards, summed with GRPOConfig's --reward-weights under its "
                    f"--multi-objective-aggregation: {', '.join(REWARDS)} (stable_rank: the paper's; "
                    "mean_logprob: the paper's Perplexity arm)"})),
        ("reward_scorer", str | None, field(default=None, metadata={
            "help": "who scores the model-based rewards: frozen (the paper: the base, adapter disabled), online "
                    "(the current policy), ema (an EMA adapter of the policy's); one value for all or one per reward; "
                    "unset = frozen, except self_reward (online, as the paper)"})),
        ("reward_ema_decay", float, field(default=0.99, metadata={
            "help": "decay of the EMA scorer: ema <- decay * ema + (1 - decay) * policy after each optimizer step"})),
        ("reward_model", str | None, field(default=None, metadata={
            "help": "a trained reward model (Hugging Face id or local folder) for --rewards reward_model, loaded by "
                    "TRL as AutoModelForSequenceClassification"})),
    ]

    def scoring_options(self) -> ScoringOptions:
        return ScoringOptions(**{f.name: getattr(self, f"reward_{f.name}") for f in dataclasses.fields(ScoringOptions)})

    def reward_names(self) -> list[str]:
        return parse_names(self.rewards)

    def reward_scorers(self) -> list[str | None]:
        return resolve_scorers(self.reward_names(), self.reward_scorer)

    def __post_init__(self):
        self.scoring_options()  # an invalid span, layer or window fails now, before any compute
        names = self.reward_names()  # unknown names fail here
        self.reward_scorers()  # an unknown or misplaced scorer fails here
        if "reward_model" in names and not self.reward_model:
            raise ValueError("--rewards reward_model needs --reward-model ID_OR_FOLDER (a sequence-classification model)")
        if self.reward_model and "reward_model" not in names:
            raise ValueError(f"--reward-model {self.reward_model} is set but --rewards does not name it: "
                             "add reward_model to --rewards")
        if not 0.0 <= self.reward_ema_decay < 1.0:
            raise ValueError(f"--reward-ema-decay must be in [0, 1), got {self.reward_ema_decay!r}")


    return dataclasses.make_dataclass("RewardArguments", specs, namespace={
        "__doc__": "The stable-rank reward's scoring options (srgrpo.scoring.ScoringOptions), prefixed reward_.",
        "__module__": __name__,
        "_argument_group_name": "rewards: names, scorer, reward model, and the features' srgrpo.scoring.ScoringOptions",
        "scoring_options": scoring_options,
        "reward_names": reward_names,
        "reward_scorers": reward_scorers,
        "__post_init__": __post_init__,
    })


RewardArguments = _reward_arguments()


# ---------------------------------------------------------------------------------------- TRL's, with the paper's defaults
@with_defaults(
    model_name_or_path=Default(None, {"aliases": ["--model"], "help": "policy (and frozen reward base): HF id, local "
                                      "folder or .gguf (default: the embedded SmolLM2-135M-Instruct)"}),
    dtype=Default("auto", {"help": "model dtype: auto (float32 on CPU, bfloat16 on GPU), bfloat16, float16, float32"}),
    use_peft=True,            # the reward is the policy with its adapter switched off: LoRA is required
    lora_r=16, lora_alpha=32, lora_dropout=0.1, lora_target_modules=ALL_PROJECTIONS,
)
class SRGRPOModelConfig(ModelConfig):
    """trl.ModelConfig with SR-GRPO's defaults (LoRA r=16, alpha=32, dropout 0.1 on every attention
    and MLP projection)."""

    _argument_group_name = "model and LoRA: trl.ModelConfig"

    def __post_init__(self):
        super().__post_init__()
        # ModelConfig turns a one-name list into a string, which peft reads as a regular expression
        # over full module names ("q_proj" would match nothing): keep a bare module name a list.
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules != "all-linear" \
                and self.lora_target_modules.isidentifier():
            self.lora_target_modules = [self.lora_target_modules]



def launcher_world_size() -> int:
    """Processes started by a distributed launcher (torchrun, accelerate launch): WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@with_defaults(
    output_dir=REQUIRED,
    # The paper (arXiv 2512.02807, appendix): K=8, lr 1e-6 cosine with 10% warm-up, effective batch
    # 128 completions = 8 per device x 16 accumulation steps, KL beta 0.04 (its main text says 0.01;
    # TRL's default is 0), advantages standardised within each group, 300-400 steps.
    num_generations=8, per_device_train_batch_size=8, gradient_accumulation_steps=16,
    learning_rate=1e-6, lr_scheduler_type="cosine", warmup_steps=0.1,  # below 1: a share of the steps
    beta=0.04, scale_rewards="group", max_steps=400, max_completion_length=512, temperature=1.0,
    seed=0, logging_steps=1, save_steps=50, save_total_limit=3, report_to="none",
    gradient_checkpointing=None,  # TRL's True becomes activation_checkpointing in __post_init__
)
class SRGRPOConfig(GRPOConfig):
    """trl.GRPOConfig with SR-GRPO's defaults. Two settings follow the machine when left unset:
    `bf16` (on with a GPU, off on CPU) and, under a distributed launcher without a GPU, `use_cpu`
    with the gloo backend, so that `torchrun --nproc_per_node N` is data-parallel training."""

    _argument_group_name = "GRPO and training: trl.GRPOConfig"

    def __post_init__(self):
        import torch

        on_gpu = torch.cuda.is_available() and not self.use_cpu
        if launcher_world_size() > 1 and not on_gpu:
            self.use_cpu = True
            self.ddp_backend = self.ddp_backend or "gloo"
        if self.bf16 is None:
            self.bf16 = on_gpu and not self.fp16
        # TRL's default (checkpointing on) under transformers 5's name; a user's --gradient_checkpointing
        # still wins (with transformers' own deprecation warning: the user wrote the old name).
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        if not on_gpu:
            self.dataloader_pin_memory = False  # pinned memory needs an accelerator; torch warns on CPU
        super().__post_init__()


DATACLASSES = (TrainScriptArguments, RewardArguments, SRGRPOModelConfig, SRGRPOConfig)


@dataclass
class TrainRun:
    """Everything one `srgrpo train` run is configured with."""

    script: TrainScriptArguments
    reward: typing.Any  # RewardArguments
    model: SRGRPOModelConfig
    grpo: SRGRPOConfig

    def to_dict(self) -> dict:
        return {"script": dataclasses.asdict(self.script), "reward": dataclasses.asdict(self.reward),
                "model": dataclasses.asdict(self.model), "grpo": self.grpo.to_dict()}


# ---------------------------------------------------------------------------------------- parsing
USAGE = "%(prog)s --dataset DATASET --output-dir OUTPUT_DIR [--config FILE] [--model MODEL] [options]"

DESCRIPTION = """\
Fine-tune a model with TRL's GRPOTrainer and LoRA, rewarding each completion with its stable rank
under the frozen base (the same weights with the adapter switched off). Defaults follow the paper:
LoRA r=16 alpha=32 dropout 0.1 on all attention and MLP projections, K=8 completions per prompt,
lr 1e-6 cosine with 10% warm-up, KL beta 0.04, advantages standardised within groups, 8 completions
per device x 16 accumulation steps. Writes TRL checkpoints, metrics.jsonl (reward, SR spread,
length, repetition, zero-spread groups), training_curves.png and summary.json into --output-dir.

Every field of trl.GRPOConfig and trl.ModelConfig is a flag (--name-with-dashes, or --name_as_in_trl),
and so is every scoring option of the reward (--reward-span, --reward-max-length, ...). --config FILE
reads the same settings from YAML (`name: value`, unknown names are errors); flags win over the file."""

EPILOG = """\
examples:
  srgrpo train --dataset sample --output-dir runs/grpo --max-steps 2 --num-generations 4 \\
      --per-device-train-batch-size 4 --gradient-accumulation-steps 1 --max-completion-length 32
  srgrpo train --dataset prompts.jsonl --output-dir runs/grpo --config grpo.yaml --eval-dataset gsm8k
  srgrpo train --dataset prompts.jsonl --output-dir runs/grpo --resume
  torchrun --nproc_per_node 4 -m srgrpo.cli train --dataset prompts.jsonl --output-dir runs/grpo

One optimizer step takes per_device_train_batch_size x gradient_accumulation_steps x processes
completions, i.e. that / num_generations prompts (16 with the defaults on one device)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class TrainArgumentParser(TrlParser):
    """TrlParser over srgrpo train's dataclasses. Errors raise ValueError (the CLI turns them into
    exit status 2 with the message) instead of exiting; unknown keys of the config file are errors
    that name the closest setting."""

    def __init__(self, prog: str = "srgrpo train"):
        super().__init__(DATACLASSES, prog=prog, usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                         formatter_class=_HelpFormatter, allow_abbrev=False)
        self.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                          help="YAML file of settings (any flag's name without the dashes); flags win over it")

    def error(self, message):
        raise ValueError(f"{message} (see srgrpo train --help)")

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        known = {action.dest for action in self._actions}
        unknown = [key for key in kwargs if key not in known]
        if unknown:
            hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, known, 1))
                     else key for key in unknown]
            raise ValueError(f"--config: unknown setting(s) {', '.join(hints)}")
        return super().set_defaults_with_config(**kwargs)

    def parse(self, argv: list[str]) -> TrainRun:
        # TRL finds the config file as the token after a separate "--config"
        args, in_weights = [], False
        for token in argv:
            if token.startswith(("--reward_weights=", "--reward-weights=")):
                flag, value = token.split("=", 1)
                args += [flag, *[v for v in value.split(",") if v]]
                continue
            if in_weights and not token.startswith("--") and "," in token:
                args.extend(v for v in token.split(",") if v)  # --reward_weights 1.0,0.5 as TRL's 1.0 0.5
                continue
            in_weights = token in ("--reward_weights", "--reward-weights") or (in_weights and not token.startswith("--"))
            args.extend(token.split("=", 1) if token.startswith("--config=") else [token])
        *parsed, unknown = self.parse_args_and_config(args, return_remaining_strings=True)
        if unknown:
            flags = [s for action in self._actions for s in action.option_strings]
            hints = [f"{arg} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(arg, flags, 1)) else arg
                     for arg in unknown if arg.startswith("-")] or unknown
            raise ValueError(f"unknown flag(s) {', '.join(hints)} (see srgrpo train --help)")
        script, reward, model, grpo = parsed[:4]  # parsed[4], if any: the (consumed) --config namespace
        self._check_choices(script, reward, model, grpo)
        run = TrainRun(script=script, reward=reward, model=model, grpo=grpo)
        check_rewards(run)
        return run

    def _check_choices(self, *objects) -> None:
        """argparse checks `choices` on the command line only; values from the config file too."""
        values = {k: v for obj in objects for k, v in vars(obj).items()}
        for action in self._actions:
            value = values.get(action.dest)
            if action.choices and value is not None and not isinstance(value, list) and value not in action.choices \
                    and str(value) not in map(str, action.choices):
                raise ValueError(f"{action.dest} must be one of {', '.join(map(str, action.choices))}, got {value!r}")


def check_rewards(run: TrainRun) -> None:
    """The rewards' settings against the rest of the run (each dataclass checks its own fields):
    weights one per reward, the EMA scorer only with LoRA. Raised before any model loads."""
    names = run.reward.reward_names()
    weights = run.grpo.reward_weights
    if weights is not None and len(weights) != len(names):
        raise ValueError(f"--reward-weights has {len(weights)} value(s) for {len(names)} reward(s) "
                         f"({', '.join(names)}): give one weight per reward, in the order of --rewards")
    scorers = run.reward.reward_scorers()
    if "ema" in scorers and not run.model.use_peft:
        raise ValueError("--reward-scorer ema keeps the EMA as a second LoRA adapter, so it needs LoRA: "
                         "set --use-peft true (or choose --reward-scorer frozen or online)")
    if any(s == "frozen" for s in scorers) and not run.model.use_peft:
        raise ValueError("srgrpo train needs LoRA (use_peft) for the frozen scorer, the policy with its adapter "
                         "switched off (set --use-peft true, or --reward-scorer online); for full fine-tuning build the GRPOTrainer yourself with "
                         "StableRankReward(frozen_model, tokenizer)")


def parse_train_args(argv: list[str]) -> TrainRun:
    """`srgrpo train`'s arguments (flags and --config YAML) as a TrainRun."""
    return TrainArgumentParser().parse(argv)


def make_run(**settings) -> TrainRun:
    """A TrainRun from Python keyword arguments (any field of the four dataclasses, by name), for
    scripts and tests; an unknown name is an error."""
    parsed = TrainArgumentParser().parse_dict(settings)
    run = TrainRun(*parsed)
    check_rewards(run)
    return run
