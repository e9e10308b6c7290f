"""Independent references for the tests: what srgrpo computes, by another route.

Hidden states come from the transformers forward itself (`output_hidden_states=True`; the raw last
block through a forward hook written here), never through `srgrpo.engine`; singular values from
float64 `torch.linalg.svdvals`, never through `srgrpo.metrics`. A test that compares srgrpo's value
with one of these can catch a bug in srgrpo's route.
"""

from __future__ import annotations

from typing import Sequence

import torch


def hidden_states(model, ids: Sequence[int], layer="final_norm") -> torch.Tensor:
    """(T, d) float64 states of one unpadded sequence `ids`: `final_norm` = hidden_states[-1] (after
    the final norm), `last_block` = the last decoder block's raw output (before the norm), an int N =
    hidden_states[N]."""
    batch = torch.tensor([list(ids)], device=model.device)
    caught = {}
    handle = None
    if layer == "last_block":
        handle = model.model.layers[-1].register_forward_hook(
            lambda _m, _i, out: caught.setdefault("h", out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            out = model(batch, output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    h = caught["h"] if layer == "last_block" else out.hidden_states[-1 if layer == "final_norm" else int(layer)]
    return h[0].double()


def stable_rank(h: torch.Tensor) -> float:
    """||H||_F^2 / ||H||_2^2 from float64 singular values."""
    s = torch.linalg.svdvals(h.double())
    return float(s.square().sum() / s[0].square())


def span_stable_rank(model, ids: Sequence[int], start: int, end: int, layer="final_norm") -> float:
    """Stable rank of rows [start, end) of `ids`'s hidden states at `layer` (one forward pass)."""
    return stable_rank(hidden_states(model, ids, layer)[start:end])


def chat_prompt_ids(tokenizer, messages) -> list[int]:
    """The prompt's ids as TRL and vLLM template it: the chat template with a generation prompt."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])
