"""SR-GRPO settings: the paper's defaults in one dataclass that a YAML/JSON file can override.

Every field carries its help text. `load_config(path)` reads a file of `field: value` pairs; an
unknown key is an error (a typo must not silently train with a default). Any further GRPOConfig
argument of TRL goes under the `grpo` key and is checked against GRPOConfig's fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srgrpo.scoring import ScoringOptions

# All attention and MLP projections of Llama/Qwen/Mistral-style decoders (the paper's LoRA targets).
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    """What `srgrpo train` runs. Defaults follow SR-GRPO (arXiv 2512.02807, appendix)."""

    # --- data and model
    dataset: str | None = field(default=None, metadata={
        "help": "prompt dataset: a JSONL/JSON file or a Hugging Face dataset id/folder with a 'prompt' column "
        "(a string or chat messages) or a 'question' column (GSM8K-style)"})
    dataset_split: str = field(default="train", metadata={"help": "split of a Hugging Face dataset"})
    model: str | None = field(default=None, metadata={
        "help": "policy (and frozen reward base): HF id, local folder or .gguf (default: embedded SmolLM2-135M-Instruct)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16"})
    output_dir: str | None = field(default=None, metadata={"help": "checkpoints, logs, metrics.jsonl, curves"})

    # --- LoRA (paper: r=16, alpha=32, dropout 0.1 on every attention and MLP projection)
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] = field(default_factory=lambda: list(ALL_PROJECTIONS), metadata={
        "help": "module names LoRA adapts; each must exist in the model"})

    # --- GRPO (paper: K=8, lr 1e-6 cosine with 10% warm-up, effective batch 128 completions)
    num_generations: int = field(default=8, metadata={"help": "completions per prompt (K): one group"})
    per_device_train_batch_size: int = field(default=8, metadata={
        "help": "completions per device per micro-batch (a multiple of num_generations is simplest)"})
    gradient_accumulation_steps: int = field(default=16, metadata={
        "help": "micro-batches per optimizer step: 8 x 16 = 128 completions (16 prompts) per step on one device"})
    learning_rate: float = field(default=1e-6, metadata={"help": "peak learning rate"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps spent warming up"})
    # The paper's appendix says 0.04, its main text 0.01; TRL's own default is 0.0 (no KL term).
    beta: float = field(default=0.04, metadata={"help": "KL coefficient against the frozen base (paper: 0.04; main text says 0.01)"})
    scale_rewards: str = field(default="group", metadata={
        "help": "advantage scaling: group (standardise within each group, the paper), batch or none"})
    max_steps: int = field(default=400, metadata={"help": "optimizer steps (paper: 300-400)"})
    max_completion_length: int = field(default=512, metadata={"help": "tokens per completion"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the policy"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; None = on GPU only"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "trade compute for memory"})
    logging_steps: int = field(default=1, metadata={"help": "log (and write metrics.jsonl) every N steps"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps"})
    save_total_limit: int | None = field(default=3, metadata={"help": "checkpoints kept"})
    use_vllm: bool = field(default=False, metadata={"help": "generate with vLLM (GPU only; needs the vllm extra)"})
    vllm_mode: str = field(default="colocate", metadata={"help": "vLLM mode: colocate or server (see TRL)"})

    # --- the reward (ScoringOptions; the paper's training section scores the whole sequence)
    span: str = field(default="response", metadata={"help": "SR over the 'response' tokens or the 'full' prompt+response"})
    layer: str = field(default="final_norm", metadata={"help": "final_norm, last_block or a hidden_states index"})
    max_length: int = field(default=512, metadata={"help": "token window the reward sees"})
    reward_batch_size: int = field(default=8, metadata={"help": "completions per reward forward pass"})

    # --- watch
    watch_window: int = field(default=5, metadata={"help": "logged steps compared at the start and the end"})
    stop_on_collapse: bool = field(default=False, metadata={"help": "stop when SR rises while length or diversity collapses"})

    # --- before/after evaluation (greedy accuracy, the Best-of-N grading with N=1)
    eval_dataset: str | None = field(default=None, metadata={
        "help": "held-out set evaluated greedily before and after training: gsm8k, math500, gpqa, mmlu, "
        "aime2025 or a JSONL of {question, answer}; None = no evaluation"})
    eval_limit: int = field(default=100, metadata={"help": "questions of the held-out set"})
    eval_max_new_tokens: int = field(default=256, metadata={"help": "greedy tokens per answer"})
    eval_batch_size: int = field(default=8, metadata={"help": "questions per generate call"})

    # --- anything else TRL's GRPOConfig takes (checked against its fields)
    grpo: dict[str, Any] = field(default_factory=dict, metadata={"help": "extra GRPOConfig arguments"})

    def __post_init__(self):
        # YAML 1.1 reads "1e-6" as a string; accept numbers written either way.
        for name in ("learning_rate", "warmup_ratio", "beta", "lora_dropout", "temperature"):
            value = getattr(self, name)
            try:
                setattr(self, name, float(value))
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {value!r}") from None
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"scale_rewards must be group, batch or none, got {self.scale_rewards!r}")
        for name in ("num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
                     "max_steps", "max_completion_length", "lora_r", "logging_steps", "save_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2: advantages are relative within a group")
        if not isinstance(self.lora_target_modules, list) or not all(isinstance(m, str) for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules must be a list of module names, got {self.lora_target_modules!r}")
        if not isinstance(self.grpo, dict):
            raise ValueError(f"grpo must be a mapping of GRPOConfig arguments, got {type(self.grpo).__name__}")
        self.scoring_options()  # validates span, layer and window now, before any compute

    def scoring_options(self) -> ScoringOptions:
        return ScoringOptions(span=self.span, layer=self.layer, max_length=self.max_length,
                              batch_size=self.reward_batch_size)

    def override(self, **values) -> "TrainConfig":
        """A copy with `values` set (None values are ignored: an unset CLI flag keeps the file's value)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


def read_config_file(path: str | Path) -> dict:
    """`field: value` pairs from a YAML (.yaml/.yml) or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of settings, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """The defaults, then the file's settings, then `overrides` (non-None only). Unknown keys are errors."""
    data = read_config_file(path) if path else {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        config = TrainConfig(**data)
    except TypeError as err:
        raise ValueError(f"{path}: {err}") from None
    return config.override(**overrides)
