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


# The short-span rule as the README defines it (default min_span_tokens = 16): a span of fewer than
# N rows that does not start at row 0 is extended backwards to N rows, never taking row 0.
MIN_SPAN_TOKENS = 16


def short_span(start: int, end: int, min_tokens: int = MIN_SPAN_TOKENS) -> tuple[int, int]:
    if min_tokens and start > 0 and end - start < min_tokens:
        start = max(1, end - min_tokens)
    return start, end


def span_stable_rank(model, ids: Sequence[int], start: int, end: int, layer="final_norm",
                     min_span_tokens: int = MIN_SPAN_TOKENS) -> float:
    """Stable rank of rows [start, end) of `ids`'s hidden states at `layer` (one forward pass), the
    span first extended by the short-span rule (`min_span_tokens` 0: exactly [start, end))."""
    start, end = short_span(start, end, min_span_tokens)
    return stable_rank(hidden_states(model, ids, layer)[start:end])


def chat_prompt_ids(tokenizer, messages) -> list[int]:
    """The prompt's ids as TRL and vLLM template it: the chat template with a generation prompt."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def pair_ids(tokenizer, prompt, response: str) -> tuple[list[int], int, int]:
    """(ids, start, end) of a (prompt, response) pair as a chat model reads it: the chat-templated
    prompt (a string is one user message) with its generation prompt, then the response's own
    tokens at [start, end). With causal attention, the tokens a template adds after the response
    cannot change the response's rows, so they are left out."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    prompt_ids = chat_prompt_ids(tokenizer, messages)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return prompt_ids + response_ids, len(prompt_ids), len(prompt_ids) + len(response_ids)


def pair_stable_rank(model, tokenizer, prompt, response: str, layer="final_norm",
                     min_span_tokens: int = MIN_SPAN_TOKENS) -> float:
    """Stable rank of the response's rows of a (prompt, response) pair (`pair_ids`), NaN for an
    empty response."""
    ids, start, end = pair_ids(tokenizer, prompt, response)
    if end == start:
        return float("nan")
    return span_stable_rank(model, ids, start, end, layer, min_span_tokens)


def pair_stable_ranks(model, tokenizer, pairs, **options) -> list[float]:
    return [pair_stable_rank(model, tokenizer, p, r, **options) for p, r in pairs]


def prompt_projected(h: torch.Tensor, prompt: torch.Tensor, k: int, length_exponent: float = 0.0) -> float:
    """SR of the response rows `h` after removing the top-k right singular directions of the prompt
    rows `prompt` (as many as it has, when fewer), divided by T^length_exponent (T = rows of `h`)."""
    h = h.double()
    v = torch.linalg.svd(prompt.double(), full_matrices=False).Vh[:k].T  # (d, <=k)
    return stable_rank(h - (h @ v) @ v.T) / h.shape[0] ** length_exponent


def mean_logprob(model, ids: Sequence[int], start: int, end: int) -> float:
    """Mean log p(ids[t] | ids[:t]) over the tokens t in [start, end), from the model's own logits
    (float64 log-softmax)."""
    with torch.no_grad():
        logits = model(torch.tensor([list(ids)], device=model.device)).logits[0].double()
    logp = logits.log_softmax(-1)
    return float(torch.stack([logp[t - 1, ids[t]] for t in range(max(start, 1), end)]).mean())
