"""The reward server's wire protocol: the request model, its validation, and where a response
starts inside a query. Pure Python plus pydantic: no torch, no tokenizer.

A request is OpenRLHF's remote-reward body, with one srgrpo extension:

    {"query": [prompt+response text, ...], "prompts": [prompt text, ...], "labels": [...]}
    {"prompts": [prompt text or chat messages, ...], "responses": [response text, ...]}   # srgrpo

`labels` and any other field are accepted and ignored (the stable rank needs no label).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

# A prompt cut from the left must still share this many characters with the query's start (or be
# whole) to count as found: a shorter overlap could be chance.
MIN_PROMPT_OVERLAP = 8
# Characters at the query's start that may differ from the prompt's tail (a multi-byte character
# cut in half by a token-level cut decodes to U+FFFD).
CUT_SLACK = 3


# What parsing a body holds at its peak beyond the body itself, measured with RSS sampling on
# CPython 3.11, pydantic-core 2 and glibc: its strings as Python objects plus the parser's
# own copy of them, per byte of body 2.05x when every character fits in one byte, 4.6x in two
# (text past U+00FF), 6.6x in four (text past U+FFFF: a single emoji widens its whole string); plus
# per JSON value the objects that hold it, up to 238 bytes per comma, colon, '[' or '{' (chat
# messages; an empty list 90, a two-letter string 113). So a 4 MiB body of 1.4 million empty lists
# in `labels` (accepted and ignored, yet parsed) held 145 MiB. Each factor is rounded up.
PARSE_FACTOR_BY_WIDTH = {1: 3, 2: 5, 4: 7}
PARSE_BYTES_PER_SEPARATOR = 256
# Every byte but the four that can start or separate JSON values, deleted to count those fast.
_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b",:[{")
_BELOW_FOUR_BYTE_LEADS = bytes(range(0xF0))  # UTF-8 lead bytes of characters past U+FFFF are 0xF0-0xF4
_HIGH_SURROGATE_ESCAPES = tuple(b"\\u" + d + h for d in (b"d", b"D") for h in (b"8", b"9", b"a", b"b", b"A", b"B"))


def widest_character(body: bytes | bytearray) -> int:
    """Bytes a character of the parsed strings may take (1, 2 or 4, as CPython stores them), from
    a scan of the raw body; an upper bound (Latin-1 text counts as 2)."""
    escaped = b"\\u" in body
    if body.isascii() and not escaped:
        return 1
    if (escaped and any(e in body for e in _HIGH_SURROGATE_ESCAPES)) or body.translate(None, _BELOW_FOUR_BYTE_LEADS):
        return 4
    return 2


# The arrival charge assumes a body of one-byte characters with at most this many separators (a few
# texts); a body past that is charged the difference once it has arrived.
PLAIN_SEPARATORS = 64


def plain_parse_bytes(length: int) -> int:
    """parse_peak_bytes of a body of `length` one-byte characters with PLAIN_SEPARATORS separators."""
    return PARSE_FACTOR_BY_WIDTH[1] * length + PARSE_BYTES_PER_SEPARATOR * PLAIN_SEPARATORS


def parse_peak_bytes(body: bytes | bytearray) -> int:
    """An upper bound on what `parse_request(body)` allocates at its peak, beyond the body (see
    PARSE_FACTOR_BY_WIDTH): the cost of a few C-speed passes over the body, no parse. Commas and
    colons inside strings count too, so prose is over-charged (by about 6 bytes per byte at 2%
    commas), never under-charged."""
    separators = len(body.translate(None, _NOT_SEPARATORS)) + 1
    return PARSE_FACTOR_BY_WIDTH[widest_character(body)] * len(body) + PARSE_BYTES_PER_SEPARATOR * separators


class BadRequest(ValueError):
    """A client error, answered with `status` and `{"error": message}`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _as_list(value, name: str):
    if isinstance(value, str):
        return [value]
    if value is not None and not isinstance(value, list):
        raise ValueError(f"'{name}' must be a list of strings, got {type(value).__name__}")
    return value


def _is_messages(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in value)
    )


class RewardRequest(BaseModel):
    """POST /get_reward. Exactly one of `query` (OpenRLHF) or `responses` (with `prompts`)."""

    model_config = ConfigDict(extra="ignore")

    query: list[str] | None = None
    prompts: list[str | list[dict[str, Any]]] | None = None
    responses: list[str] | None = None
    labels: Any = None

    @field_validator("query", "responses", mode="before")
    @classmethod
    def _texts(cls, value, info):
        value = _as_list(value, info.field_name)
        if value is not None:
            for i, v in enumerate(value):
                if not isinstance(v, str):
                    raise ValueError(f"'{info.field_name}' must be a list of strings; item {i} is {type(v).__name__}")
        return value

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompts(cls, value):
        value = _as_list(value, "prompts")
        if value is not None:
            for i, v in enumerate(value):
                if not (isinstance(v, str) or _is_messages(v)):
                    raise ValueError(
                        f"'prompts' item {i} must be a string or a list of {{'role': str, 'content': str}} "
                        f"chat messages, got {type(v).__name__}"
                    )
        return value

    @model_validator(mode="after")
    def _shape(self):
        if self.query is None and self.responses is None:
            raise ValueError("missing field 'query' (a list of full prompt+response texts)")
        if self.query is not None and self.responses is not None:
            raise ValueError("send either 'query' (prompt+response texts) or 'responses' (with 'prompts'), not both")
        texts = self.query if self.query is not None else self.responses
        name = "query" if self.query is not None else "responses"
        if not texts:
            raise ValueError(f"'{name}' is empty")
        if self.responses is not None and self.prompts is None:
            raise ValueError("'responses' needs 'prompts' (one prompt per response)")
        if self.prompts is not None and len(self.prompts) != len(texts):
            raise ValueError(f"{len(texts)} {name} but {len(self.prompts)} prompts")
        if self.query is not None and self.prompts is not None:
            for i, p in enumerate(self.prompts):
                if not isinstance(p, str):
                    raise ValueError(f"prompts item {i}: chat messages go with 'responses', not with 'query' "
                                     "(a query already holds the templated prompt text)")
        return self

    @property
    def texts(self) -> list[str]:
        return self.query if self.query is not None else self.responses


def parse_request(body: bytes) -> RewardRequest:
    """A validated request, or BadRequest: 400 for malformed JSON (including lone surrogates and
    nesting deeper than the parser allows), 422 for a well-formed body of the wrong shape."""
    try:
        return RewardRequest.model_validate_json(body)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest(f"malformed JSON: {errors[0]['msg']}", 400) from None
        if any(e["type"] == "model_type" for e in errors):
            raise BadRequest("the body must be a JSON object with a 'query' list", 422) from None
        parts = []
        for e in errors[:5]:
            where = ".".join(str(x) for x in e["loc"])
            message = e["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise BadRequest("; ".join(parts) + more, 422) from None


def locate_response(query: str, prompt: str) -> tuple[int | None, str | None]:
    """Where the response starts in `query`, given the prompt it was generated from:
    (character offset or None, note or None).

    1. The query starts with the prompt: the response is the rest.
    2. The prompt appears whole later in the query (something was prepended, e.g. a BOS text):
       the response starts after its first occurrence.
    3. The prompt was cut from the left (OpenRLHF keeps the last prompt tokens that fit): the
       longest tail of the prompt that starts the query (at least MIN_PROMPT_OVERLAP characters,
       up to CUT_SLACK leading characters of the query ignored) ends where the response starts;
       the note says so.
    Otherwise (None, why): the text cannot be split, and the item is unscored.
    """
    if query.startswith(prompt):
        return len(prompt), None
    at = query.find(prompt) if prompt else -1
    if at >= 0:
        return at + len(prompt), f"prompt found at character {at} of the query, not at its start"
    for skip in range(min(CUT_SLACK, len(query)) + 1):
        rest = query[skip:]
        anchor = rest[:MIN_PROMPT_OVERLAP]
        if len(anchor) < MIN_PROMPT_OVERLAP:
            break
        j = prompt.find(anchor)
        while j >= 0:  # the first match is the longest tail of the prompt
            if rest.startswith(prompt[j:]):
                tail = len(prompt) - j
                return skip + tail, f"prompt cut from the left: matched its last {tail} of {len(prompt)} characters"
            j = prompt.find(anchor, j + 1)
    return None, "the query holds neither its prompt nor the prompt's end (cut from the left)"
