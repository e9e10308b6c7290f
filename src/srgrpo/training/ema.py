"""The EMA scorer: a second LoRA adapter ("ema") in the policy's PeftModel holding an exponential
moving average of the trained adapter (Co-rewarding, arXiv 2508.00410, scores with such a slowly
updated teacher). No second copy of the base weights: both adapters sit on the same layers.

After every optimizer step (`EMACallback.on_step_end`), for every LoRA tensor:

    ema <- decay * ema + (1 - decay) * policy

so after n steps the EMA weights the policy's adapter of k steps ago by (1 - decay) decay^k; it
starts as a copy of the trained adapter (LoRA B = 0, so the EMA scorer starts as the frozen base).
TRL saves every adapter of the PeftModel in a checkpoint (the EMA one in `checkpoint-N/ema/`);
`EMACallback(resume_from=checkpoint)` loads it back when a run resumes.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from transformers import TrainerCallback

from srgrpo.training.sr_reward import EMA_ADAPTER

logger = logging.getLogger("srgrpo.train")


def ema_pairs(policy, adapter: str | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ema tensor, trained tensor) for every LoRA tensor of the trained adapter."""
    adapter = adapter or policy.active_adapter
    params = dict(policy.named_parameters())
    pairs = []
    for name, param in params.items():
        if f".{adapter}." in name and "lora_" in name:
            ema_name = name.replace(f".{adapter}.", f".{EMA_ADAPTER}.")
            pairs.append((params[ema_name], param))
    if not pairs:
        raise ValueError(f"the policy has no LoRA tensors of adapter {adapter!r} (is it a LoRA PeftModel?)")
    return pairs


def add_ema_adapter(policy) -> None:
    """Add the "ema" adapter to a LoRA PeftModel as a frozen copy of the trained (active) adapter;
    the trained adapter stays active and trainable."""
    if not hasattr(policy, "peft_config"):
        raise ValueError("reward_scorer ema needs a LoRA policy (use_peft): the EMA is a second adapter")
    if EMA_ADAPTER in policy.peft_config:
        return
    active = policy.active_adapter
    config = copy.deepcopy(policy.peft_config[active])
    config.inference_mode = True
    policy.add_adapter(EMA_ADAPTER, config)
    policy.set_adapter(active)  # keeps the trained adapter active and trainable, the new one frozen
    with torch.no_grad():
        for ema, param in ema_pairs(policy, active):
            ema.copy_(param.detach().to(ema.dtype))
            ema.requires_grad_(False)


@torch.no_grad()
def update_ema(policy, decay: float) -> None:
    """One EMA step: ema <- decay * ema + (1 - decay) * trained adapter."""
    for ema, param in ema_pairs(policy):
        ema.mul_(decay).add_(param.detach().to(ema.dtype), alpha=1.0 - decay)


def load_ema(policy, checkpoint: str | Path) -> bool:
    """Load the EMA adapter saved in `checkpoint/ema/`; False (with a warning) if there is none."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(checkpoint) / EMA_ADAPTER / "adapter_model.safetensors"
    if not path.is_file():
        logger.warning("no EMA adapter in %s: the EMA restarts from the resumed policy's adapter", checkpoint)
        with torch.no_grad():
            for ema, param in ema_pairs(policy):
                ema.copy_(param.detach().to(ema.dtype))
        return False
    set_peft_model_state_dict(policy, load_file(str(path)), adapter_name=EMA_ADAPTER)
    return True


class EMACallback(TrainerCallback):
    """Updates the policy's EMA adapter after each optimizer step; restores it on resume."""

    def __init__(self, policy, decay: float = 0.99, resume_from: str | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"reward_ema_decay must be in [0, 1), got {decay!r}")
        self.policy, self.decay, self.resume_from = policy, decay, resume_from

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from:
            load_ema(self.policy, self.resume_from)

    def on_step_end(self, args, state, control, **kwargs):
        update_ema(self.policy, self.decay)
