"""From text to token ids: chat templating, the response's token span, the token window.

Nothing here runs a model. `encode_pair` turns a (prompt, response) pair into token ids and the
positions to score; `encode_ids` does the same for ids a generator produced (no re-tokenisation).
`encode_pairs` tokenises many rendered pairs in one call of the fast tokenizer.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

from srgrpo.options import ScoringOptions

Message = dict
Prompt = str | Sequence[Message]

FALLBACK_TEMPLATE = "{prompt}\n\nAnswer:{response}"


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
    context_tokens: int = 0  # tokens before the response added to the scored span by the short-span rule


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


def _span_from_offsets(offsets, char_start: int, char_end: int, n: int) -> tuple[int, int]:
    # A token belongs to the response if it overlaps the response's characters (a token straddling
    # the boundary, e.g. a merged leading space, counts as response).
    inside = [i for i, (s, e) in enumerate(offsets) if e > char_start and s < char_end and e > s]
    return (inside[0], inside[-1] + 1) if inside else (n, n)


# Tokens kept beyond the window when a long text is cut to the window's reach before tokenising:
# the token cut in half at the edge, and a BOS the tokenizer adds there.
REACH_MARGIN_TOKENS = 8
_CHARS_PER_TOKEN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def chars_per_token(tokenizer) -> int:
    """The most characters one token of `tokenizer` stands for: its longest vocabulary entry (a
    byte-level entry has a symbol per byte, a SentencePiece entry a symbol per character)."""
    try:
        return _CHARS_PER_TOKEN[tokenizer]
    except (KeyError, TypeError):
        pass
    longest = max((len(t) for t in tokenizer.get_vocab()), default=1)
    try:
        _CHARS_PER_TOKEN[tokenizer] = longest
    except TypeError:  # not weakly referenceable: computed again next time
        pass
    return longest


def _cut_to_reach(text: str, char_start: int, char_end: int, reach: int, side: str) -> tuple[str, int, int]:
    """`text` cut to its last `reach` characters (its first, for side 'right'), the response's
    character span moved with it. A response past the first `reach` characters keeps up to `reach`
    of its own after them, out of the window: it still has tokens, just none inside the window."""
    if len(text) <= reach:
        return text, char_start, char_end
    if side == "right":
        if char_start < reach:
            return text[:reach], char_start, min(char_end, reach)
        kept = min(char_end - char_start, reach)
        return text[:reach] + text[char_start:char_start + kept], reach, reach + kept
    cut = len(text) - reach
    return text[cut:], max(char_start - cut, 0), max(char_end - cut, 0)


def response_token_span(tokenizer, text, char_start, char_end, with_special,
                        window: tuple[int, str] | None = None) -> tuple[list[int], int, int]:
    """Token ids of `text` and the [start, end) token positions covering the response characters."""
    return response_token_spans(tokenizer, [(text, char_start, char_end)], with_special, window)[0]


def response_token_spans(tokenizer, texts: Sequence[tuple[str, int, int]], with_special: bool,
                         window: tuple[int, str] | None = None) -> list[tuple[list[int], int, int]]:
    """`response_token_span` for many (text, char_start, char_end) at once: a fast tokenizer
    encodes the whole list in one call (its Rust side runs it in parallel).

    `window` (max_length, truncation_side): the ids will be cut to that window, so a text longer
    than the window can reach (max_length + REACH_MARGIN_TOKENS tokens of chars_per_token
    characters) is cut to that reach first, on the side the window drops: the ids returned are
    then those of the text's kept end (or start), at least the window plus the margin, and the
    window over them is the whole text's. Tokenising a long text whole costs about 150 times its
    size in memory (4 MiB of prose took 627 MiB and 5 s); the cut bounds that by the window. A text
    whose cut leaves fewer tokens than that (a tokenizer that drops characters) is tokenised whole."""
    if not texts:
        return []
    if window is not None:
        max_length, side = window
        reach = (max_length + REACH_MARGIN_TOKENS) * chars_per_token(tokenizer)
        kept = [_cut_to_reach(*item, reach, side) for item in texts]
        out = response_token_spans(tokenizer, kept, with_special)
        for i, ((t, cs, ce), (ids, _, _)) in enumerate(zip(texts, out)):
            if len(kept[i][0]) < len(t) and len(ids) < max_length + 2:  # the cut did not fill the window
                out[i] = response_token_spans(tokenizer, [(t, cs, ce)], with_special)[0]
        return out
    if tokenizer.is_fast:
        enc = tokenizer([t for t, _, _ in texts], add_special_tokens=with_special, return_offsets_mapping=True)
        out = []
        for ids, offsets, (_, char_start, char_end) in zip(enc["input_ids"], enc["offset_mapping"], texts):
            out.append((ids, *_span_from_offsets(offsets, char_start, char_end, len(ids))))
        return out
    # Slow tokenizers have no offsets: count the tokens of the text before and through the response.
    out = []
    for text, char_start, char_end in texts:
        ids = tokenizer(text, add_special_tokens=with_special)["input_ids"]
        start = len(tokenizer(text[:char_start], add_special_tokens=with_special)["input_ids"])
        end = len(tokenizer(text[:char_end], add_special_tokens=with_special)["input_ids"])
        out.append((ids, min(start, len(ids)), min(end, len(ids))))
    return out


def encode_pair(tokenizer, prompt: Prompt, response: str, options: ScoringOptions, index: int = 0) -> EncodedPair:
    """Template, tokenise and cut one pair; raises TypeError for a non-string field."""
    return encode_pairs(tokenizer, [prompt], [response], options, first_index=index)[0]


def encode_pairs(tokenizer, prompts: Sequence[Prompt], responses: Sequence[str], options: ScoringOptions,
                 first_index: int = 0) -> list[EncodedPair]:
    """`encode_pair` for many pairs, tokenised in one call; TypeError names the first bad pair."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    rendered = []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        check_pair(prompt, response, f"pair {first_index + i}")
        rendered.append(render_pair(tokenizer, prompt, response))
    # A chat template writes its own BOS where the model wants one; plain text needs the tokenizer's.
    with_special = not (rendered and rendered[0][3])
    spans = response_token_spans(tokenizer, [r[:3] for r in rendered], with_special,
                                 (options.max_length, options.truncation_side))
    specials = set(tokenizer.all_special_ids)
    return [
        _windowed(specials, ids, start, end, options, None if response.strip() else "empty or whitespace-only response")
        for (ids, start, end), response in zip(spans, responses)
    ]


def encode_ids(tokenizer, prompt_ids: Sequence[int], response_ids: Sequence[int], options: ScoringOptions) -> EncodedPair:
    """A pair given as token ids (e.g. what a generator produced), cut to the window like
    `encode_pair`, with no re-tokenisation: the scored tokens are exactly `response_ids`."""
    ids = list(prompt_ids) + list(response_ids)
    problem = "empty response" if not response_ids else None
    return _windowed(set(tokenizer.all_special_ids), ids, len(prompt_ids), len(ids), options, problem)


def _windowed(special_ids: set[int], ids: list[int], start: int, end: int, options: ScoringOptions, problem: str | None) -> EncodedPair:
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
    elif set(ids[start:end]) <= special_ids:
        problem = "response consists only of special tokens"
    context = 0
    if options.span == "full":
        start, end = 0, len(ids)
    else:
        start = short_span_start(start, end, options.min_span_tokens)
        context = response_start - start
    return EncodedPair(ids, start, end, truncated, problem, response_start, response_end, context)


def short_span_start(start: int, end: int, min_tokens: int) -> int:
    """The short-span rule: where the scored span [start, end) begins once a span shorter than
    `min_tokens` is extended backwards to `min_tokens` tokens. Position 0 (the BOS or first template
    token, an attention sink whose state dwarfs the others' in most models) is never added; a span that
    already starts there stays. `min_tokens` 0 leaves every span as it is."""
    if min_tokens <= 0 or end - start >= min_tokens or start == 0:
        return start
    return max(1, end - min_tokens)


