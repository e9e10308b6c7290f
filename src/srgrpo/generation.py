"""Generation with every candidate scored on the way: Best-of-N's candidates, training's greedy check.

Two generation backends share one interface (`generate(prompts, n, sampling, seed) -> [[Sample]]`):
- `HFGenerator`: a transformers model decoding batches with left padding, as `generate` does but
  dropping each row from the batch as soon as it stops. By default it scores for free: a forward
  hook keeps the hidden states (at the scorer's layer), and the loop the next-token distributions,
  that generation computes anyway, so no second forward pass runs. With causal attention these
  equal a fresh forward pass over prompt+response up to float noise (tested).
- `VLLMGenerator`: vLLM sampling for GPU users (optional extra `srgrpo[vllm]`); vLLM does not expose
  hidden states, so its candidates are scored by a re-forward pass.

The re-forward route (`scoring="reforward"`) scores the exact token ids that were generated (no
re-tokenisation of the decoded text); it also serves scoring with a different model than the generator.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from srgrpo.engine import gather_spans
from srgrpo.features import FEATURES, LogitStats, SpanStates, next_token_stats
from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer
from srgrpo.text import encode_ids, render_prompt

# Every candidate carries every registered feature, whatever the backend, so that any feature can
# select among candidates later without generating again; except the full-spectrum ablations,
# whose float64 eigendecompositions would cost more than selection is allowed to (2% of generation).
SAMPLE_FEATURES = tuple(name for name, f in FEATURES.items() if not f.full_spectrum)
SCORING_ROUTES = ("free", "reforward", "none")  # none: samples only (a timing baseline)


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. The paper's Best-of-N: temperature 0.7, top-p 0.9 (no top-k)."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    greedy: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if not self.greedy and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    finished: bool  # ended with an end-of-sequence token; False: cut at max_new_tokens
    features: dict[str, float] = field(default_factory=dict)  # SAMPLE_FEATURES, NaN where unscorable
    context_tokens: int = 0  # tokens before the response in its scored span (the short-span rule)


def prompt_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The ids the model is prompted with, rendered exactly as the scorer renders a prompt."""
    text, templated = render_prompt(tokenizer, messages)
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def stop_token_ids(model, tokenizer) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        if eos is not None:
            ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return ids


def cut_at_stop(generated: list[int], stop_ids: set[int]) -> tuple[list[int], bool]:
    """The ids before the first stop id, and whether one was found (False: the budget cut the row)."""
    for j, token in enumerate(generated):
        if token in stop_ids:
            return generated[:j], True
    return generated, False


def left_pad(prompt_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of a prompt batch padded on the left, so every prompt ends where
    generation starts."""
    width = max(map(len, prompt_ids))
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, p in enumerate(prompt_ids):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        attention[row, width - len(p):] = 1
    return ids, attention


def reforward_features(scorer: StableRankScorer, prompt_ids: Sequence[Sequence[int]],
                       response_ids: Sequence[Sequence[int]]) -> list[dict[str, float]]:
    """SAMPLE_FEATURES of each (prompt ids, response ids) from a fresh forward pass over exactly those ids."""
    encoded = [encode_ids(scorer.tokenizer, p, r, scorer.options) for p, r in zip(prompt_ids, response_ids)]
    out = [{} for _ in encoded]
    for item in scorer.iter_encoded_features(encoded, SAMPLE_FEATURES):
        out[item.index] = {k: (math.nan if item.warning else v) for k, v in item.values.items()}
    return out


def context_tokens(scorer: StableRankScorer | None, prompt_ids: Sequence[Sequence[int]],
                   response_ids: Sequence[Sequence[int]]) -> list[int]:
    """Per (prompt ids, response ids): the tokens before the response that the short-span rule adds
    to its scored span (0 when the rule is off or the response is long enough)."""
    if scorer is None or not scorer.options.min_span_tokens:
        return [0] * len(response_ids)
    return [encode_ids(scorer.tokenizer, p, r, scorer.options).context_tokens for p, r in zip(prompt_ids, response_ids)]


class _GenerationRecorder:
    """Free scoring's memory of one batch: a forward hook keeps the hidden states at the scorer's
    layer for every call, and the decode loop adds the statistics of every next-token distribution
    (log-prob of the token then chosen, self-certainty, entropy). The loop drops rows as they finish,
    so each call is stored with the batch rows it ran."""

    def __init__(self, scorer: StableRankScorer):
        self.scorer = scorer
        self.prompt_states: torch.Tensor | None = None  # call 0: (B, width, d), left-padded
        self.rows: list[int] = []  # the batch rows of the call now running
        self._fed: list[tuple[list[int], torch.Tensor]] = []  # per later call: (rows, (b, 1, d))
        self._stats: list[tuple[list[int], list[float], list[float], list[float]]] = []
        self._handles = []

    def __enter__(self):
        engine = self.scorer.engine
        tap = engine.layer_module(self.scorer.options.layer)
        module = engine.backbone if tap is None else tap

        def keep_states(_module, _inputs, output):
            states = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
            if self.prompt_states is None:
                self.prompt_states = states.detach()
            else:
                self._fed.append((self.rows, states.detach()))

        self._handles = [module.register_forward_hook(keep_states)]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def keep_stats(self, logits: torch.Tensor, chosen: torch.Tensor) -> None:
        logp, certainty, entropy = next_token_stats(logits)
        self._stats.append((self.rows, logp.gather(1, chosen[:, None]).squeeze(1).tolist(),
                            certainty.tolist(), entropy.tolist()))

    def per_row(self, n_rows: int):
        """Per row: the states of its fed response tokens (m, d), and per response position s the
        chosen token's log-prob, self-certainty and entropy of the distribution that predicted it."""
        fed = [[] for _ in range(n_rows)]
        for rows, states in self._fed:
            for j, row in enumerate(rows):
                fed[row].append(states[j])
        d = self.prompt_states.shape[-1]
        states = [torch.cat(f) if f else self.prompt_states.new_zeros((0, d)) for f in fed]
        chosen, certainty, entropy = ([[] for _ in range(n_rows)] for _ in range(3))
        for rows, *columns in self._stats:
            for j, row in enumerate(rows):
                for out, column in zip((chosen, certainty, entropy), columns):
                    out[row].append(column[j])
        return states, chosen, certainty, entropy


class HFGenerator:
    """Batched sampling with a transformers model; scores every candidate on the way (see module doc)."""

    name = "hf"

    def __init__(self, model, tokenizer, options: ScoringOptions | None = None, batch_size: int = 16,
                 scoring: str = "free", scorer: StableRankScorer | None = None):
        if scoring not in SCORING_ROUTES:
            raise ValueError(f"scoring must be one of {SCORING_ROUTES}, got {scoring!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.scoring = scoring
        # The scorer reads the generator's own states (free route) or re-runs a model (re-forward;
        # pass a scorer built on another model to score with a different model than the generator).
        if scorer is None and scoring != "none":
            scorer = StableRankScorer(model, tokenizer, options)
        self.scorer = scorer
        if scoring == "free" and self.scorer.model is not model:
            raise ValueError("free scoring reads the generator's own hidden states: use scoring='reforward' "
                             "to score with a different model")
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids, default=0)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: Sequence[list[dict]], n: int, sampling: Sampling, seed: int = 0,
                 progress: bool = False) -> list[list[Sample]]:
        """n samples per prompt (messages), in prompt order. Greedy sampling ignores n > 1."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        n = 1 if sampling.greedy else n
        prompt_ids = [prompt_token_ids(self.tokenizer, m) for m in prompts]
        rows = [q for q in range(len(prompts)) for _ in range(n)]
        samples: list[Sample] = []
        with tqdm(total=len(rows), unit="sample", desc="generating", leave=False, disable=not progress) as bar:
            for lo in range(0, len(rows), self.batch_size):
                # Seeded per batch, so a batch's samples do not depend on how many random draws the
                # batches before it took (e.g. free scoring's one extra token).
                torch.manual_seed(seed * 1_000_003 + lo)
                batch = [prompt_ids[q] for q in rows[lo:lo + self.batch_size]]
                samples.extend(self._generate_batch(batch, sampling))
                bar.update(len(batch))
        return [samples[q * n:(q + 1) * n] for q in range(len(prompts))]

    def _generate_batch(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[Sample]:
        ids, attention = left_pad(prompt_ids, self.pad_id)
        width = ids.shape[1]
        self.model.eval()
        with torch.inference_mode():
            if self.scoring == "free":
                with _GenerationRecorder(self.scorer) as recorder:
                    responses, finished = self._decode(ids.to(self.device), attention.to(self.device), sampling, recorder)
            else:
                responses, finished = self._decode(ids.to(self.device), attention.to(self.device), sampling)
        if self.scoring == "free":
            features = self._free_features(recorder, prompt_ids, responses, width)
        elif self.scoring == "reforward":
            features = reforward_features(self.scorer, prompt_ids, responses)
        else:
            features = [{} for _ in responses]
        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        contexts = context_tokens(self.scorer, prompt_ids, responses)
        return [Sample(t, list(r), f, feats, c)
                for t, r, f, feats, c in zip(texts, responses, finished, features, contexts)]

    def _decode(self, ids: torch.Tensor, attention: torch.Tensor, sampling: Sampling,
                recorder: _GenerationRecorder | None = None) -> tuple[list[list[int]], list[bool]]:
        """Per row: the generated ids (stop token excluded) and whether a stop token ended them.

        transformers' `generate` decoding (same positions, masks, warpers and random draws), except
        that a row leaves the batch, and its cache, as soon as it stops: `generate` keeps finished rows
        computing until the longest ends, which on a CPU cost a third of a Best-of-N run's time.
        Until the first row stops, the tokens equal `generate`'s draw for draw (tested)."""
        n_rows, steps = len(ids), sampling.max_new_tokens
        rows = torch.arange(n_rows, device=ids.device)
        tokens: list[list[int]] = [[] for _ in range(n_rows)]
        finished = [False] * n_rows
        stop = torch.tensor(sorted(self.stop_ids), dtype=torch.long, device=ids.device)
        warpers = LogitsProcessorList()
        if not sampling.greedy:  # generate's order, and its rule of leaving out identity warpers
            if sampling.temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                warpers.append(TopPLogitsWarper(sampling.top_p))
        fed, mask = ids, attention
        positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
        cache, (cache_name, last_only) = None, self._forward_names
        # Free scoring runs one call more: a response cut at the budget then has its last token fed
        # back once, so that its hidden state exists.
        for step in range(steps + (recorder is not None)):
            if recorder is not None:
                recorder.rows = rows.tolist()
            out = self.model(input_ids=fed, attention_mask=mask, position_ids=positions, use_cache=True,
                             **{cache_name: cache}, **last_only)
            if step == steps:
                break
            cache = out[cache_name]
            logits = out.logits[:, -1, :].float()
            if sampling.greedy:
                chosen = logits.argmax(-1)
            else:
                chosen = torch.multinomial(warpers(fed, logits).softmax(-1), num_samples=1).squeeze(1)
            if recorder is not None:
                recorder.keep_stats(logits, chosen)
            stopped = torch.isin(chosen, stop)
            for row, token, ended in zip(rows.tolist(), chosen.tolist(), stopped.tolist()):
                finished[row] = ended
                if not ended:
                    tokens[row].append(token)
            keep = ~stopped
            rows, chosen = rows[keep], chosen[keep]
            if not len(rows) or (step == steps - 1 and recorder is None):
                break
            if not keep.all():
                cache.batch_select_indices(keep.nonzero().squeeze(1))
                mask, positions = mask[keep], positions[keep]
            fed = chosen[:, None]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = positions[:, -1:] + 1
        return tokens, finished

    @property
    def _forward_names(self) -> tuple[str, dict]:
        """The model's name for its key/value cache argument (`cache` from transformers 5.2x,
        `past_key_values` before), and `logits_to_keep=1` where the model takes it, as `generate`
        does: a prompt's (batch, width, vocab) logits would otherwise be computed and thrown away."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        names = inspect.signature(base.forward).parameters
        return ("cache" if "cache" in names else "past_key_values",
                {"logits_to_keep": 1} if "logits_to_keep" in names else {})

    def _free_features(self, rec: _GenerationRecorder, prompt_ids, responses, width) -> list[dict[str, float]]:
        options = self.scorer.options
        prompt_states = rec.prompt_states  # (B, width, d), left-padded
        decode_states, chosen, certainty, entropy = rec.per_row(len(responses))
        out: list[dict[str, float] | None] = [None] * len(responses)
        spans, prompts, rows, reforward, logit_means = [], [], [], [], []
        for row, (p, r) in enumerate(zip(prompt_ids, responses)):
            encoded = encode_ids(self.tokenizer, p, r, options)
            if encoded.problem is not None:
                out[row] = {k: math.nan for k in SAMPLE_FEATURES}
                continue
            if encoded.truncated and options.truncation_side == "left":
                # The window would cut the prompt's start, which the generator did see: only a
                # fresh forward over the cut window gives the scorer's numbers.
                reforward.append(row)
                continue
            m = encoded.response_end - encoded.response_start  # response tokens inside the window
            states = decode_states[row][:m]
            if options.span == "full":
                states = torch.cat([prompt_states[row, width - len(p):], states])
            elif encoded.context_tokens:  # the short-span rule: the prompt's last tokens join the span
                states = torch.cat([prompt_states[row, width - encoded.context_tokens:], states])
            spans.append(states)
            prompts.append(prompt_states[row, width - len(p):][: encoded.response_start])
            rows.append(row)
            logit_means.append([sum(chosen[row][:m]) / m, sum(certainty[row][:m]) / m, sum(entropy[row][:m]) / m])
        if spans:
            lengths = [len(s) for s in spans]
            padded, mask = gather_spans(torch.nn.utils.rnn.pad_sequence(spans, batch_first=True), [0] * len(spans), lengths)
            prompt = (gather_spans(torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True), [0] * len(prompts),
                                   [len(q) for q in prompts])
                      if any(FEATURES[name].needs_prompt for name in SAMPLE_FEATURES) else (None, None))
            span_states = SpanStates(padded, mask, options, *prompt)
            means = torch.tensor(logit_means, dtype=torch.float64)
            stats = LogitStats(means[:, 0], means[:, 1], means[:, 2])
            columns = {name: FEATURES[name].compute(span_states if FEATURES[name].source == "hidden" else stats).tolist()
                       for name in SAMPLE_FEATURES}
            for k, row in enumerate(rows):
                out[row] = {name: values[k] for name, values in columns.items()}
        if reforward:
            for row, feats in zip(reforward, reforward_features(
                    self.scorer, [prompt_ids[r] for r in reforward], [responses[r] for r in reforward])):
                out[row] = feats
        return out


class VLLMGenerator:
    """vLLM sampling (GPU, optional extra `pip install srgrpo[vllm]`). Candidates are scored by a
    re-forward pass of `scorer` over the exact token ids vLLM produced."""

    name = "vllm"

    def __init__(self, model_name: str, scorer: StableRankScorer | None = None, tokenizer=None,
                 adapter: str | None = None, **llm_kwargs):
        """`scorer=None` (with `tokenizer`): answers only, no features (policy evaluation).
        `adapter`: a LoRA adapter folder, applied to every request (vLLM's LoRARequest)."""
        try:
            import vllm  # here, not at the top: vLLM is an optional GPU-only package
        except ImportError:
            raise RuntimeError("the vLLM backend needs vLLM: pip install 'srgrpo[vllm]' (GPU machines only)") from None
        if scorer is None and tokenizer is None:
            raise ValueError("VLLMGenerator needs a scorer or a tokenizer")
        self._vllm = vllm
        if adapter is not None:
            llm_kwargs.setdefault("enable_lora", True)
        self.llm = vllm.LLM(model=model_name, **llm_kwargs)
        self.scorer = scorer
        self.tokenizer = scorer.tokenizer if scorer is not None else tokenizer
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(Path(adapter).name, 1, str(adapter))

    def generate(self, prompts: Sequence[list[dict]], n: int, sampling: Sampling, seed: int = 0,
                 progress: bool = False) -> list[list[Sample]]:
        n = 1 if sampling.greedy else n
        params = self._vllm.SamplingParams(
            n=n, seed=seed, max_tokens=sampling.max_new_tokens,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
        )
        prompt_ids = [prompt_token_ids(self.tokenizer, m) for m in prompts]
        results = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=progress,
                                    lora_request=self.lora_request)
        stop_ids = stop_token_ids(self.scorer.model if self.scorer is not None else None, self.tokenizer)
        flat_prompts, flat_responses, finished = [], [], []
        for p, result in zip(prompt_ids, results):
            for completion in result.outputs:
                flat_prompts.append(p)
                # vLLM keeps the end-of-sequence token in token_ids; the scorer's span excludes it.
                flat_responses.append([t for t in completion.token_ids if t not in stop_ids])
                finished.append(completion.finish_reason == "stop")
        features = (reforward_features(self.scorer, flat_prompts, flat_responses) if self.scorer is not None
                    else [{} for _ in flat_responses])
        texts = self.tokenizer.batch_decode(flat_responses, skip_special_tokens=True)
        contexts = context_tokens(self.scorer, flat_prompts, flat_responses)
        samples = [Sample(t, r, f, feats, c)
                   for t, r, f, feats, c in zip(texts, flat_responses, finished, features, contexts)]
        return [samples[q * n:(q + 1) * n] for q in range(len(prompts))]
