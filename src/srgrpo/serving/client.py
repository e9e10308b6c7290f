"""Client side of the reward server: the standard library only (no torch), for verl or any engine.

verl (naive, per-sample reward manager, and batch reward manager: the same function serves both):

    custom_reward_function.path=<site-packages>/srgrpo/serving/client.py
    custom_reward_function.name=compute_score
    +custom_reward_function.reward_kwargs.url=http://HOST:5000/get_reward     # or $SRGRPO_REWARD_URL

verl hands a reward function the decoded response, never its prompt; the prompt reaches it only
through the dataset's `extra_info`. Put the prompt there when building the parquet file (the same
chat messages as the `prompt` column, or the templated prompt text), and `compute_score` sends it
so the response is scored in its context:

    "extra_info": {"index": idx, "prompt": [{"role": "user", "content": question}]}

Without it the response is scored on its own (and a warning says so once). The server URL comes
from `url=`, else `$SRGRPO_REWARD_URL`, else http://127.0.0.1:5000/get_reward; the API key from
`api_key=`, else `$SRGRPO_API_KEY`, else the URL's user info (http://srgrpo:KEY@host:5000/...).
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Any, Sequence

URL_ENV = "SRGRPO_REWARD_URL"
KEY_ENV = "SRGRPO_API_KEY"
DEFAULT_URL = "http://127.0.0.1:5000/get_reward"
MAX_TEXTS_PER_REQUEST = 1024  # a batch is sent in requests of at most this many texts

_warned_no_prompt = False


class RewardServerError(RuntimeError):
    """The server answered with an error (its message included) or could not be reached."""


def reward_url(url: str | None = None) -> str:
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    return url if url.rstrip("/").endswith("/get_reward") else url.rstrip("/") + "/get_reward"


def _prepare(url: str, api_key: str | None) -> tuple[str, dict]:
    """(URL without user info, headers with Content-Type and any Authorization)."""
    headers = {"Content-Type": "application/json"}
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        if not api_key:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return url, headers


def post_json(payload: dict, url: str | None = None, *, api_key: str | None = None, timeout: float = 300.0,
              retries: int = 5, retry_wait: float = 1.0) -> dict:
    """POST `payload` to the server and return its JSON answer. Connection failures and 5xx answers
    are retried (`retries` attempts, `retry_wait` s apart, as OpenRLHF does); a 4xx is raised at once."""
    target = reward_url(url)
    address, headers = _prepare(target, api_key or os.environ.get(KEY_ENV))
    data = json.dumps(payload).encode()
    last = ""
    for attempt in range(max(retries, 1)):
        if attempt:
            time.sleep(retry_wait)
        request = urllib.request.Request(address, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("error", "")
            except (ValueError, AttributeError):
                message = ""
            last = f"reward server answered {err.code}: {message}"
            if err.code < 500:
                raise RewardServerError(last) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            last = f"cannot reach the reward server at {address}: {getattr(err, 'reason', err)}"
    raise RewardServerError(f"{last} (after {max(retries, 1)} attempts)")


def get_rewards(queries: Sequence[str], prompts: Sequence[str] | None = None, url: str | None = None,
                timeout: float = 300.0, **kwargs) -> list[float]:
    """OpenRLHF's protocol: full prompt+response texts (and optionally their prompts) -> rewards in
    order, in requests of at most MAX_TEXTS_PER_REQUEST texts."""
    queries = list(queries)
    rewards: list[float] = []
    for k in range(0, len(queries), MAX_TEXTS_PER_REQUEST):
        payload: dict[str, Any] = {"query": queries[k : k + MAX_TEXTS_PER_REQUEST]}
        if prompts is not None:
            payload["prompts"] = list(prompts[k : k + MAX_TEXTS_PER_REQUEST])
        rewards.extend(post_json(payload, url, timeout=timeout, **kwargs)["rewards"])
    return rewards


def score_responses(prompts: Sequence, responses: Sequence[str], url: str | None = None,
                    timeout: float = 300.0, **kwargs) -> list[float]:
    """srgrpo's form: each response after its prompt, the prompt given as the templated prompt text
    or as chat messages (the server renders them with its chat template and generation prompt);
    an empty prompt scores the response on its own."""
    prompts, responses = [_plain(p) for p in prompts], [str(r) for r in responses]
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    rewards: list[float] = []
    for k in range(0, len(responses), MAX_TEXTS_PER_REQUEST):
        payload = {"prompts": prompts[k : k + MAX_TEXTS_PER_REQUEST], "responses": responses[k : k + MAX_TEXTS_PER_REQUEST]}
        rewards.extend(post_json(payload, url, timeout=timeout, **kwargs)["rewards"])
    return rewards


def _plain(value):
    """numpy arrays (what parquet columns become) -> lists; dicts' values likewise."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _prompt_of(extra_info, prompt_key: str):
    global _warned_no_prompt
    prompt = _plain(extra_info.get(prompt_key)) if isinstance(extra_info, dict) else None
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt):
        return prompt
    if not _warned_no_prompt:
        _warned_no_prompt = True
        warnings.warn(
            f"extra_info has no '{prompt_key}': the response is scored without its prompt. Put the prompt "
            f"(chat messages or templated text) into extra_info['{prompt_key}'] when building the dataset.",
            stacklevel=3,
        )
    return ""


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *,
                  data_sources=None, solution_strs=None, ground_truths=None, extra_infos=None,
                  url: str | None = None, api_key: str | None = None, prompt_key: str = "prompt",
                  timeout: float = 300.0, **_ignored):
    """verl's reward function, for both of its reward managers:

    - naive (per sample): `compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`
      -> float;
    - batch: `compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=)` -> list.

    The prompt is read from `extra_info[prompt_key]` (see the module docstring); the stable rank
    needs no ground truth. Every value is a float: the server sends its unscored value (0.0 by
    default) for an empty response. Other keyword arguments verl passes are ignored.
    """
    if solution_strs is not None:
        infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
        prompts = [_prompt_of(info, prompt_key) for info in infos]
        return score_responses(prompts, list(solution_strs), url, timeout, api_key=api_key)
    if solution_str is None:
        raise TypeError("compute_score needs solution_str (naive manager) or solution_strs (batch manager)")
    prompt = _prompt_of(extra_info, prompt_key)
    return score_responses([prompt], [solution_str], url, timeout, api_key=api_key)[0]


compute_score_batch = compute_score
