"""How a (prompt, response) pair becomes a score: the options every consumer shares.

One dataclass, so the CLI flags, training's config and the reward server all read the same fields,
defaults and help text. Its fields fall into three kinds by meaning (`metadata["kind"]`):

- "score" (the default: a field that says nothing is score-defining): what a score *is* (span,
  layer, max_length, truncation_side, compute_dtype). Changing one changes the numbers;
- "feature": a parameter of one feature, read only by the feature that names it in its declaration
  (`@feature(..., params=("window_size",))` in `srgrpo.features`): window_size, length_exponent;
- "runtime": how the work is done, never what it yields (batch_size).

Resumable runs pin the score-defining options and the parameters of the features they use
(`srgrpo.features.pinned_options`), never the run-time ones: resuming with another --batch-size works.
`ScoringOptions(...)` takes every field by the same keyword whatever its kind, and the CLI flags and
training's YAML keys are the field names, so the split changes nothing for users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

SPANS = ("response", "full")
NAMED_LAYERS = ("final_norm", "last_block")
TRUNCATION_SIDES = ("right", "left")
COMPUTE_DTYPES = ("float32", "float64")

SCORE, FEATURE, RUNTIME = "score", "feature", "runtime"  # the kinds of option (module doc)
KINDS = (SCORE, FEATURE, RUNTIME)


def option_kind(f) -> str:
    """The kind of a ScoringOptions field (a dataclasses.Field): "score" unless it says otherwise."""
    kind = f.metadata.get("kind", SCORE)
    if kind not in KINDS:
        raise ValueError(f"ScoringOptions.{f.name}: kind must be one of {KINDS}, got {kind!r}")
    return kind


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
    batch_size: int = field(default=8, metadata={"kind": RUNTIME, "help": "pairs per forward pass"})
    min_span_tokens: int = field(
        default=16,
        metadata={
            "help": "the short-span rule (span=response): a response of fewer than N tokens is scored "
            "over the N tokens that end with it, i.e. with the tokens just before it (the template's "
            "assistant header, then the prompt's end), never the sequence's first token; each item "
            "reports the tokens added as context_tokens. 0 = off: only the response's tokens, so a "
            "1-token response has SR exactly 1. 16 was measured best on RewardBench v1 pairs with short "
            "answers (studies/short_span/README.md)"
        },
    )
    window_size: int = field(
        default=64,
        metadata={"kind": FEATURE, "help": "tokens per window of the windowed SR variant (stable_rank_windowed)"},
    )
    length_exponent: float = field(
        default=0.147,
        metadata={
            "kind": FEATURE,
            "help": "beta of the stable_rank_prompt_adjusted feature, which divides its SR by T^beta "
            "(T = response tokens) to take out how SR grows with length; 0.147 was fitted on neutral "
            "text for the embedded SmolLM2-135M-Instruct (another model: srgrpo.length_robust.fit_length_exponent)"
        },
    )
    compute_dtype: str = field(
        default="float32",
        metadata={
            "choices": COMPUTE_DTYPES,
            "help": "dtype of the SR arithmetic, whatever the model's dtype",
        },
    )

    @classmethod
    def field_names(cls, kind: str) -> tuple[str, ...]:
        """The names of the fields of `kind` ("score", "feature" or "runtime"), in declaration order."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return tuple(f.name for f in fields(cls) if option_kind(f) == kind)

    def _of_kind(self, kind: str) -> dict:
        return {name: getattr(self, name) for name in self.field_names(kind)}

    def score_definition(self) -> dict:
        """The score-defining options: {name: value}."""
        return self._of_kind(SCORE)

    def feature_parameters(self) -> dict:
        """Every feature's own parameters: {name: value} (which feature reads which: `srgrpo.features`)."""
        return self._of_kind(FEATURE)

    def runtime(self) -> dict:
        """The options that change how the work runs, never its numbers."""
        return self._of_kind(RUNTIME)

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
        if isinstance(self.length_exponent, bool) or not isinstance(self.length_exponent, (int, float)) \
                or not math.isfinite(self.length_exponent):
            raise ValueError(f"length_exponent must be a finite number, got {self.length_exponent!r}")
        if isinstance(self.min_span_tokens, bool) or not isinstance(self.min_span_tokens, int) \
                or self.min_span_tokens < 0:
            raise ValueError(f"min_span_tokens must be a non-negative integer (0 = off), got {self.min_span_tokens!r}")
        for name in ("max_length", "batch_size", "window_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


