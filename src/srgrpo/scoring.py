"""From (prompt, response) text to stable rank: templating, token spans, batching, hidden states.

Data flows one way: `encode_pair` turns a pair into token ids and the span of positions to score;
`StableRankScorer` groups encoded pairs of similar length into right-padded batches, runs the
model's backbone (never the LM head, never keeping every layer) up to the chosen layer, and applies
a metric from `srgrpo.metrics` to the span's hidden states.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch

from srgrpo import metrics as metric_fns

Message = dict
Prompt = str | Sequence[Message]

FALLBACK_TEMPLATE = "{prompt}\n\nAnswer:{response}"
SPANS = ("response", "full")
NAMED_LAYERS = ("final_norm", "last_block")
TRUNCATION_SIDES = ("right", "left")
COMPUTE_DTYPES = ("float32", "float64")


@dataclass
class ScoringOptions:
    """How a pair becomes a hidden-state matrix. Each field is also a CLI flag (`--max-length` ...)."""

    span: str = field(
        default="response",
        metadata={
            "choices": SPANS,
            "help": "which tokens form H: 'response' = only the response's tokens (the paper's "
            "RewardBench setting); 'full' = the whole templated prompt+response sequence",
        },
    )
    layer: str = field(
        default="final_norm",
        metadata={
            "help": "which hidden states: 'final_norm' = last layer after the final norm "
            "(hidden_states[-1] in transformers); 'last_block' = raw output of the last decoder "
            "block, before the norm; an integer N = hidden_states[N] (0 = embeddings, "
            "negative counts from the end)",
        },
    )
    max_length: int = field(
        default=512,
        metadata={
            "help": "token window: longer templated sequences are cut to this many tokens "
            "(the paper: 512 is enough)"
        },
    )
    truncation_side: str = field(
        default="right",
        metadata={
            "choices": TRUNCATION_SIDES,
            "help": "which end a long sequence loses: 'right' keeps the first max_length tokens "
            "(the response's end is cut); 'left' keeps the last ones (the prompt's start is cut)",
        },
    )
    batch_size: int = field(default=8, metadata={"help": "pairs per forward pass"})
    window_size: int = field(
        default=64,
        metadata={"help": "tokens per window of the windowed SR variant (stable_rank_windowed)"},
    )
    compute_dtype: str = field(
        default="float32",
        metadata={
            "choices": COMPUTE_DTYPES,
            "help": "dtype of the SR arithmetic, whatever the model's dtype",
        },
    )

    def __post_init__(self):
        if self.span not in SPANS:
            raise ValueError(f"span must be one of {SPANS}, got {self.span!r}")
        if self.truncation_side not in TRUNCATION_SIDES:
            raise ValueError(f"truncation_side must be one of {TRUNCATION_SIDES}, got {self.truncation_side!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        if isinstance(self.layer, str) and self.layer not in NAMED_LAYERS:
            try:
                self.layer = int(self.layer)
            except ValueError:
                raise ValueError(
                    f"layer must be one of {NAMED_LAYERS} or an integer, got {self.layer!r}"
                ) from None
        if isinstance(self.layer, bool) or not isinstance(self.layer, (str, int)):
            raise ValueError(f"layer must be one of {NAMED_LAYERS} or an integer, got {self.layer!r}")
        for name in ("max_length", "batch_size", "window_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class EncodedPair:
    """Token ids of one templated pair (already cut to the window) and the positions to score."""

    input_ids: list[int]
    start: int  # first scored position
    end: int  # one past the last scored position
    truncated: bool
    problem: str | None = None  # why the pair cannot be scored; it then gets NaN
    response_start: int = 0  # the response's tokens inside the window (equal to start/end for span=response)
    response_end: int = 0


@dataclass
class PairScore:
    """The result for one pair; `value` is NaN when `warning` says why."""

    index: int
    value: float
    n_tokens: int  # tokens in the scored span
    truncated: bool
    warning: str | None = None


def check_pair(prompt, response, where: str = "pair") -> None:
    """Raise TypeError, naming `where`, unless prompt is a string or a list of chat messages and
    response is a string."""
    if not (
        isinstance(prompt, str)
        or isinstance(prompt, (list, tuple))
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt
        )
    ):
        raise TypeError(
            f"{where}: prompt must be a string or a list of {{'role': str, 'content': str}} "
            f"messages, got {type(prompt).__name__}"
        )
    if not isinstance(response, str):
        raise TypeError(f"{where}: response must be a string, got {type(response).__name__}")


def render_prompt(tokenizer, prompt: Prompt) -> tuple[str, bool]:
    """The text a model is prompted with, up to where its response starts, and whether it came from
    the chat template (which writes its own BOS; plain text needs the tokenizer's special tokens).
    With a chat template: the messages plus the generation prompt. Without: `{prompt}\\n\\nAnswer:`,
    message contents joined by blank lines."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), True
    prompt_text = prompt if isinstance(prompt, str) else "\n\n".join(m["content"] for m in messages)
    return FALLBACK_TEMPLATE.format(prompt=prompt_text, response=""), False


def render_pair(tokenizer, prompt: Prompt, response: str) -> tuple[str, int, int, bool]:
    """Template a pair as the model sees it. Returns (text, response_char_start, response_char_end,
    uses_chat_template).

    With a chat template: the prompt's messages plus an assistant turn holding the response. Where
    the template rewrites the response (some strip reasoning or whitespace), the text is the
    generation prompt followed by the response verbatim, as the model saw it when generating.
    Without a chat template: `render_prompt`'s text followed by the response.
    """
    prefix, templated = render_prompt(tokenizer, prompt)
    full = prefix + response
    if templated:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        templated_full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": response}], tokenize=False
        )
        if templated_full.startswith(prefix) and templated_full[len(prefix):].startswith(response):
            full = templated_full
    return full, len(prefix), len(prefix) + len(response), templated


def response_token_span(tokenizer, text, char_start, char_end, with_special) -> tuple[list[int], int, int]:
    """Token ids of `text` and the [start, end) token positions covering the response characters."""
    if tokenizer.is_fast:
        enc = tokenizer(text, add_special_tokens=with_special, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        # A token belongs to the response if it overlaps the response's characters (a token
        # straddling the boundary, e.g. a merged leading space, counts as response).
        inside = [i for i, (s, e) in enumerate(offsets) if e > char_start and s < char_end and e > s]
        if not inside:
            return ids, len(ids), len(ids)
        return ids, inside[0], inside[-1] + 1
    # Slow tokenizers have no offsets: count the tokens of the text before and through the response.
    ids = tokenizer(text, add_special_tokens=with_special)["input_ids"]
    start = len(tokenizer(text[:char_start], add_special_tokens=with_special)["input_ids"])
    end = len(tokenizer(text[:char_end], add_special_tokens=with_special)["input_ids"])
    return ids, min(start, len(ids)), min(end, len(ids))


def encode_pair(tokenizer, prompt: Prompt, response: str, options: ScoringOptions, index: int = 0) -> EncodedPair:
    """Template, tokenise and cut one pair; raises TypeError for a non-string field."""
    check_pair(prompt, response, f"pair {index}")
    text, char_start, char_end, templated = render_pair(tokenizer, prompt, response)
    # A chat template writes its own BOS where the model wants one; plain text needs the tokenizer's.
    ids, start, end = response_token_span(tokenizer, text, char_start, char_end, with_special=not templated)
    problem = "empty or whitespace-only response" if not response.strip() else None
    return _windowed(tokenizer, ids, start, end, options, problem)


def encode_ids(tokenizer, prompt_ids: Sequence[int], response_ids: Sequence[int], options: ScoringOptions) -> EncodedPair:
    """A pair given as token ids (e.g. what a generator produced), cut to the window like
    `encode_pair`, with no re-tokenisation: the scored tokens are exactly `response_ids`."""
    ids = list(prompt_ids) + list(response_ids)
    problem = "empty response" if not response_ids else None
    return _windowed(tokenizer, ids, len(prompt_ids), len(ids), options, problem)


def _windowed(tokenizer, ids: list[int], start: int, end: int, options: ScoringOptions, problem: str | None) -> EncodedPair:
    """Cut `ids` to the options' window, move the response span [start, end) with it, and say why
    the pair cannot be scored, if it cannot."""
    n = len(ids)
    truncated = n > options.max_length
    if truncated:
        if options.truncation_side == "right":
            ids, shift = ids[: options.max_length], 0
        else:
            ids, shift = ids[n - options.max_length:], n - options.max_length
        start, end = max(start - shift, 0), max(min(end - shift, len(ids)), 0)
        start = min(start, end)
    response_start, response_end = start, end

    if problem is not None:
        pass
    elif end <= start:
        problem = f"no response token inside the {options.max_length}-token window ({options.truncation_side} side cut)"
    elif set(ids[start:end]) <= set(tokenizer.all_special_ids):
        problem = "response consists only of special tokens"
    if options.span == "full":
        start, end = 0, len(ids)
    return EncodedPair(ids, start, end, truncated, problem, response_start, response_end)


class _StopForward(Exception):
    """Raised by a forward hook once the deepest wanted layer has run, so later layers are skipped."""


def _decoder_layers(backbone, num_layers: int) -> torch.nn.ModuleList:
    for attr in ("layers", "h", "blocks", "layer"):
        candidate = getattr(backbone, attr, None)
        if isinstance(candidate, torch.nn.ModuleList) and len(candidate) == num_layers:
            return candidate
    lists = [m for m in backbone.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == num_layers]
    if not lists:
        raise ValueError(f"cannot find the {num_layers} decoder layers of {type(backbone).__name__}")
    return lists[0]


# Scores read off the span's hidden states at the chosen layer: name -> f(states, mask, options).
HIDDEN_FEATURES: dict[str, Callable[[torch.Tensor, torch.Tensor, ScoringOptions], torch.Tensor]] = {
    "stable_rank": lambda h, m, o: metric_fns.stable_rank(h, m, getattr(torch, o.compute_dtype)),
    "stable_rank_centered": lambda h, m, o: metric_fns.stable_rank(h, m, getattr(torch, o.compute_dtype), center=True),
    "stable_rank_normalized": lambda h, m, o: metric_fns.stable_rank(
        h, m, getattr(torch, o.compute_dtype), normalize_rows=True
    ),
    "stable_rank_windowed": lambda h, m, o: metric_fns.windowed_stable_rank(
        h, m, getattr(torch, o.compute_dtype), window=o.window_size
    ),
    # The full spectrum needs float64 to resolve small singular values.
    "effective_rank": lambda h, m, o: metric_fns.effective_rank(h, m),
    "condition_number": lambda h, m, o: metric_fns.condition_number(h, m),
    "pca_dimension": lambda h, m, o: metric_fns.pca_dimension(h, m),
}
# Scores read off the LM's next-token distributions over the response's tokens (final layer).
LOGIT_FEATURES = ("mean_logprob", "self_certainty", "mean_entropy")
FEATURES = tuple(HIDDEN_FEATURES) + LOGIT_FEATURES


@dataclass
class ItemFeatures:
    """Every requested score of one (prompt, response) item; NaN where `warning` says why."""

    index: int
    values: dict[str, float]
    n_tokens: int  # tokens in the scored span
    response_tokens: int  # response tokens inside the window
    truncated: bool
    warning: str | None = None
    layer_values: dict[int, float] = field(default_factory=dict)  # SR per hidden_states index (sweep)


def _span_states(hidden: torch.Tensor, starts: list[int], ends: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather rows [start, end) of each sequence into (B, S, d) with a (B, S) mask, so that the
    Gram matrices are only as large as the spans."""
    width = max(max(e - s for s, e in zip(starts, ends)), 1)
    offsets = torch.arange(width, device=hidden.device)
    starts_t = torch.tensor(starts, device=hidden.device)
    lengths = torch.tensor([e - s for s, e in zip(starts, ends)], device=hidden.device)
    positions = (starts_t[:, None] + offsets).clamp(max=hidden.shape[1] - 1)
    index = positions[..., None].expand(-1, -1, hidden.shape[-1])
    return hidden.gather(1, index), offsets[None, :] < lengths[:, None]


def next_token_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: log-softmax over the vocabulary, self-certainty (KL(uniform || p), arXiv
    2502.18581: logsumexp(z) - mean(z) - log V) and entropy. One place for both the re-forward
    scorer and free scoring during generation, so the two agree."""
    logits = logits.float()
    logp = logits.log_softmax(dim=-1)
    certainty = logits.logsumexp(dim=-1) - logits.mean(dim=-1) - math.log(logits.shape[-1])
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return logp, certainty, entropy


def _logit_features(lm_head, final_states, input_ids, pair: EncodedPair, chunk: int = 128) -> dict[str, float]:
    """Mean log-probability of the response tokens, self-certainty and mean entropy of the
    next-token distributions that predict them. The logits at position t predict token t+1, so the
    response's tokens are predicted from [start-1, end-1)."""
    first = max(pair.response_start - 1, 0)
    last = pair.response_end - 1
    if last <= first:
        return {name: math.nan for name in LOGIT_FEATURES}
    logprob_sum = certainty_sum = entropy_sum = 0.0
    for lo in range(first, last, chunk):  # in chunks: a full (n, vocab) float32 block can be large
        hi = min(lo + chunk, last)
        logp, certainty, entropy = next_token_stats(lm_head(final_states[lo:hi]))
        targets = input_ids[lo + 1 : hi + 1]
        logprob_sum += logp.gather(1, targets[:, None]).sum().item()
        certainty_sum += certainty.sum().item()
        entropy_sum += entropy.sum().item()
    n = last - first
    return {"mean_logprob": logprob_sum / n, "self_certainty": certainty_sum / n, "mean_entropy": entropy_sum / n}


class StableRankScorer:
    """Scores (prompt, response) pairs with the stable rank of their hidden states.

    >>> model, tokenizer = srgrpo.load_model()
    >>> StableRankScorer(model, tokenizer, span="response").score(["Hi!"], ["Hello, how can I help?"])

    Options are the fields of `ScoringOptions`. The model stays on its device and dtype (choose them
    in `load_model`); the SR arithmetic runs in `compute_dtype`. `iter_features` computes other
    scores (SR variants, spectrum ablations, log-probabilities, a layer sweep) in the same pass.
    """

    def __init__(self, model, tokenizer, options: ScoringOptions | None = None, **overrides):
        self.model = model
        self.tokenizer = tokenizer
        self.options = dataclasses.replace(options or ScoringOptions(), **overrides)
        self.backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        self.num_layers = model.config.get_text_config().num_hidden_layers
        self.layers = _decoder_layers(self.backbone, self.num_layers)
        # Depth in the forward pass: the embeddings come first, then block j at j + 1.
        self._depth = {self.backbone.get_input_embeddings(): 0}
        self._depth.update({layer: j + 1 for j, layer in enumerate(self.layers)})
        self._tap = self.layer_module(self.options.layer)

    def layer_module(self, layer) -> torch.nn.Module | None:
        """The module whose output is H at `layer`, or None for the backbone's own output (after
        the final norm)."""
        if layer == "final_norm":
            return None
        if layer == "last_block":
            return self.layers[-1]
        n_states = self.num_layers + 1  # hidden_states[0..L]: embeddings, then each block's output
        if not -n_states <= layer < n_states:
            raise ValueError(f"layer {layer} out of range for a model with {self.num_layers} layers "
                             f"(valid: {-n_states}..{n_states - 1})")
        index = layer % n_states
        if index == self.num_layers:
            return None  # hidden_states[L] is taken after the final norm
        return self.backbone.get_input_embeddings() if index == 0 else self.layers[index - 1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[EncodedPair]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [encode_pair(self.tokenizer, p, r, self.options, i) for i, (p, r) in enumerate(zip(prompts, responses))]

    def run_backbone(self, input_ids, attention_mask, taps: dict, on_output: Callable) -> None:
        """One forward pass that hands `on_output(key, states)` the output of each tapped module
        (`taps`: key -> module, or None for the backbone's final output). Stops after the deepest
        tapped block when the final output is not wanted; never runs the LM head."""
        by_module: dict[torch.nn.Module, list] = {}
        for key, module in taps.items():
            if module is not None:
                by_module.setdefault(module, []).append(key)
        deepest = None if any(m is None for m in taps.values()) else max(by_module, key=self._depth.__getitem__)
        handles = []
        for module, keys in by_module.items():
            def hook(_module, _inputs, output, keys=keys, stop=module is deepest):
                states = output[0] if isinstance(output, tuple) else output
                for key in keys:
                    on_output(key, states)
                if stop:
                    raise _StopForward

            handles.append(module.register_forward_hook(hook))
        with torch.inference_mode():
            try:
                out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            except _StopForward:
                return
            finally:
                for handle in handles:
                    handle.remove()
            for key, module in taps.items():
                if module is None:
                    on_output(key, out.last_hidden_state)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) hidden states at the chosen layer; layers after it are not run."""
        captured = {}
        self.run_backbone(input_ids, attention_mask, {"h": self._tap}, captured.__setitem__)
        return captured["h"]

    def length_batches(self, encoded: list[EncodedPair]) -> Iterator[list[int]]:
        """Indices of scorable pairs, longest first, so each batch holds pairs of similar length."""
        order = sorted((i for i, e in enumerate(encoded) if e.problem is None), key=lambda i: -len(encoded[i].input_ids))
        for k in range(0, len(order), self.options.batch_size):
            yield order[k : k + self.options.batch_size]

    def collate(self, pairs: Sequence[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) on the model's device, right-padded: real tokens keep
        positions 0..n-1, so a pair's hidden states do not depend on its batch."""
        pad_id = self.tokenizer.pad_token_id
        width = max(len(p.input_ids) for p in pairs)
        ids = torch.full((len(pairs), width), 0 if pad_id is None else pad_id, dtype=torch.long)
        attention = torch.zeros((len(pairs), width), dtype=torch.long)
        for row, p in enumerate(pairs):
            ids[row, : len(p.input_ids)] = torch.tensor(p.input_ids)
            attention[row, : len(p.input_ids)] = 1
        return ids.to(self.device), attention.to(self.device)

    def iter_features(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        features: Sequence[str] = ("stable_rank",),
        sweep_layers: Sequence[int] = (),
        progress: bool = False,
    ) -> Iterator[ItemFeatures]:
        """Yield every requested feature of each pair as soon as its batch is done (unscorable
        pairs first, all NaN). All features and the layer sweep (SR at each listed hidden_states
        index) share one forward pass per batch."""
        yield from self.iter_encoded_features(self.encode(prompts, responses), features, sweep_layers, progress)

    def iter_encoded_features(
        self,
        encoded: Sequence[EncodedPair],
        features: Sequence[str] = ("stable_rank",),
        sweep_layers: Sequence[int] = (),
        progress: bool = False,
    ) -> Iterator[ItemFeatures]:
        """`iter_features` for pairs already encoded (`encode_pair`, or `encode_ids` for exact token ids)."""
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {', '.join(FEATURES)}")
        hidden_names = [f for f in features if f in HIDDEN_FEATURES]
        logit_names = [f for f in features if f in LOGIT_FEATURES]
        taps = {("layer", k): self.layer_module(k) for k in sweep_layers}
        if hidden_names:
            taps["main"] = self._tap
        if logit_names:
            taps["final"] = None
        lm_head = self.model.get_output_embeddings()

        for i, e in enumerate(encoded):
            if e.problem is not None:
                yield ItemFeatures(i, {f: math.nan for f in features}, e.end - e.start,
                                   e.response_end - e.response_start, e.truncated, e.problem,
                                   {k: math.nan for k in sweep_layers})
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(e.problem is None for e in encoded), unit="pair", desc="scoring")
        try:
            for batch in self.length_batches(encoded):
                pairs = [encoded[i] for i in batch]
                ids, attention = self.collate(pairs)
                starts, ends = [p.start for p in pairs], [p.end for p in pairs]
                values = [dict() for _ in pairs]
                layer_values = [dict() for _ in pairs]
                broken = [None] * len(pairs)

                def on_output(key, states):
                    if key == "final":
                        for row, p in enumerate(pairs):
                            values[row].update(_logit_features(lm_head, states[row], ids[row], p))
                        return
                    span, mask = _span_states(states, starts, ends)
                    if key == "main":
                        for name in hidden_names:
                            for row, v in enumerate(HIDDEN_FEATURES[name](span, mask, self.options).tolist()):
                                values[row][name] = v
                        real = span.float().where(mask[..., None], 0.0)
                        finite = torch.isfinite(real).flatten(1).all(1).tolist()
                        nonzero = (real.flatten(1).abs().amax(1) > 0).tolist()
                        for row, (ok, any_signal) in enumerate(zip(finite, nonzero)):
                            if not ok:
                                broken[row] = "hidden states contain NaN or inf"
                            elif not any_signal:
                                broken[row] = "hidden states are all zero"
                    else:
                        sr = metric_fns.stable_rank(span, mask, getattr(torch, self.options.compute_dtype))
                        for row, v in enumerate(sr.tolist()):
                            layer_values[row][key[1]] = v

                self.run_backbone(ids, attention, taps, on_output)
                for row, (i, p) in enumerate(zip(batch, pairs)):
                    yield ItemFeatures(i, {f: values[row][f] for f in features}, p.end - p.start,
                                       p.response_end - p.response_start, p.truncated, broken[row],
                                       layer_values[row])
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()

    def iter_scores(self, prompts: Sequence[Prompt], responses: Sequence[str], progress: bool = False) -> Iterator[PairScore]:
        """Yield one PairScore (stable rank) per pair as soon as its batch is done."""
        for item in self.iter_features(prompts, responses, ("stable_rank",), progress=progress):
            yield PairScore(item.index, item.values["stable_rank"], item.n_tokens, item.truncated, item.warning)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], progress: bool = False) -> list[float]:
        """One stable rank per pair, in input order; NaN (with a warning) where a pair cannot be scored."""
        results = sorted(self.iter_scores(prompts, responses, progress=progress), key=lambda r: r.index)
        warn_unscored(results)
        return [r.value for r in results]


def warn_unscored(results: Iterable) -> None:
    """One warning per reason, naming the pairs (results: anything with .index and .warning)."""
    reasons: dict[str, list[int]] = {}
    for r in results:
        if r.warning is not None:
            reasons.setdefault(r.warning, []).append(r.index)
    for reason, indices in reasons.items():
        shown = ", ".join(map(str, indices[:10])) + (" ..." if len(indices) > 10 else "")
        warnings.warn(f"{len(indices)} pair(s) scored NaN ({reason}): pair {shown}", stacklevel=3)
