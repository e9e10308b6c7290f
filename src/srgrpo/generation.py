"""Generation with every candidate scored on the way: Best-of-N's candidates, training's greedy check.

Two generation backends share one interface (`generate(prompts, n, sampling, seed) -> [[Sample]]`):
- `HFGenerator`: transformers `generate`, batched with left padding. By default it scores for free:
  forward hooks keep the hidden states (at the scorer's layer) and next-token distributions that the
  generator computes anyway, so no second forward pass runs. With causal attention these equal a
  fresh forward pass over prompt+response up to float noise (tested).
- `VLLMGenerator`: vLLM sampling for GPU users (optional extra `srgrpo[vllm]`); vLLM does not expose
  hidden states, so its candidates are scored by a re-forward pass.

The re-forward route (`scoring="reforward"`) scores the exact token ids that were generated (no
re-tokenisation of the decoded text); it also serves scoring with a different model than the generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

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


def _cut_at_stop(generated: list[int], stop_ids: set[int], max_new_tokens: int) -> tuple[list[int], bool]:
    for j, token in enumerate(generated):
        if token in stop_ids:
            return generated[:j], True
    return generated[:max_new_tokens], False


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
    """Forward hooks that keep, for every generation step, the hidden states at the scorer's layer
    and the statistics of the next-token distribution (log-prob of the token then chosen,
    self-certainty, entropy). Only (batch, vocab) log-probs of the latest step are held at a time."""

    def __init__(self, scorer: StableRankScorer):
        self.scorer = scorer
        self.states: list[torch.Tensor] = []  # per forward call: (B, t, d); call 0 is the prompt
        self.certainty: list[torch.Tensor] = []  # per call: (B,) for the distribution of the next token
        self.entropy: list[torch.Tensor] = []
        self.chosen_logprob: list[torch.Tensor] = []  # per call k >= 1: log p(token fed at call k)
        self._last_logp: torch.Tensor | None = None
        self._handles = []

    def __enter__(self):
        engine = self.scorer.engine
        tap = engine.layer_module(self.scorer.options.layer)
        module = engine.backbone if tap is None else tap

        def keep_states(_module, _inputs, output):
            if isinstance(output, tuple):
                states = output[0]
            else:
                states = getattr(output, "last_hidden_state", output)
            self.states.append(states.detach())

        def keep_logits(_module, _args, kwargs, output):
            fed = kwargs.get("input_ids")
            if self._last_logp is not None and fed is not None:
                self.chosen_logprob.append(self._last_logp.gather(1, fed[:, -1:]).squeeze(1))
            logp, certainty, entropy = next_token_stats(output.logits[:, -1, :])
            self._last_logp = logp
            self.certainty.append(certainty)
            self.entropy.append(entropy)

        self._handles = [module.register_forward_hook(keep_states),
                         self.scorer.model.register_forward_hook(keep_logits, with_kwargs=True)]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def finish(self, last_tokens: torch.Tensor) -> None:
        """The generator never feeds its last token back: take its log-prob from the last step."""
        if self._last_logp is not None:
            self.chosen_logprob.append(self._last_logp.gather(1, last_tokens[:, None]).squeeze(1))
            self._last_logp = None


class HFGenerator:
    """Batched sampling with transformers `generate`; scores every candidate on the way (see module doc)."""

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
        width = max(map(len, prompt_ids))
        ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, p in enumerate(prompt_ids):  # left padding: every prompt ends where generation starts
            ids[row, width - len(p):] = torch.tensor(p)
            attention[row, width - len(p):] = 1
        decoding = dict(do_sample=False, temperature=None, top_p=None, top_k=None) if sampling.greedy else \
            dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        # Free scoring asks for one token more: a response cut at max_new_tokens then has its last
        # token fed back once, so its hidden state exists; the extra token is dropped.
        extra = 1 if self.scoring == "free" else 0
        kwargs = dict(input_ids=ids.to(self.device), attention_mask=attention.to(self.device),
                      max_new_tokens=sampling.max_new_tokens + extra, pad_token_id=self.pad_id,
                      eos_token_id=sorted(self.stop_ids) or None, **decoding)
        self.model.eval()
        with torch.inference_mode():
            if self.scoring == "free":
                with _GenerationRecorder(self.scorer) as recorder:
                    sequences = self.model.generate(**kwargs)
                recorder.finish(sequences[:, -1])
            else:
                sequences = self.model.generate(**kwargs)
        generated = sequences[:, width:].tolist()
        responses, finished = zip(*(_cut_at_stop(g, self.stop_ids, sampling.max_new_tokens) for g in generated))
        if self.scoring == "free":
            features = self._free_features(recorder, prompt_ids, list(responses), width)
        elif self.scoring == "reforward":
            features = reforward_features(self.scorer, prompt_ids, responses)
        else:
            features = [{} for _ in responses]
        texts = self.tokenizer.batch_decode(list(responses), skip_special_tokens=True)
        contexts = context_tokens(self.scorer, prompt_ids, responses)
        return [Sample(t, list(r), f, feats, c)
                for t, r, f, feats, c in zip(texts, responses, finished, features, contexts)]

    def _free_features(self, rec: _GenerationRecorder, prompt_ids, responses, width) -> list[dict[str, float]]:
        options = self.scorer.options
        prompt_states = rec.states[0]  # (B, width, d), left-padded
        decode_states = torch.cat(rec.states[1:], dim=1) if len(rec.states) > 1 else prompt_states[:, :0]
        certainty = torch.stack(rec.certainty, 1).tolist()  # (B, steps): step s predicts response token s
        entropy = torch.stack(rec.entropy, 1).tolist()
        chosen = torch.stack(rec.chosen_logprob, 1).tolist()
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
            states = decode_states[row, :m]
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
