"""Client side of the reward server: plain HTTP (stdlib only), usable inside verl or any RL engine.

    from srgrpo.serving.client import compute_score      # verl: custom_reward_function.name=compute_score
    compute_score("gsm8k", solution_str, ground_truth, extra_info={"prompt": templated_prompt})

The server URL comes from the `url` argument, else `$SRGRPO_REWARD_URL`, else
http://127.0.0.1:5000/get_reward.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Sequence

URL_ENV = "SRGRPO_REWARD_URL"
DEFAULT_URL = "http://127.0.0.1:5000/get_reward"


class RewardServerError(RuntimeError):
    """The server answered with an error (its message included) or could not be reached."""


def reward_url(url: str | None = None) -> str:
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    return url if url.rstrip("/").endswith("/get_reward") else url.rstrip("/") + "/get_reward"


def get_rewards(queries: Sequence[str], prompts: Sequence[str] | None = None, url: str | None = None,
                timeout: float = 300.0) -> list[float | None]:
    """POST one batch to /get_reward: rewards in query order, None where the server could not score."""
    payload = {"query": list(queries)}
    if prompts is not None:
        payload["prompts"] = list(prompts)
    request = urllib.request.Request(reward_url(url), data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["rewards"]
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", "")
        except ValueError:
            message = ""
        raise RewardServerError(f"reward server answered {err.code}: {message}") from None
    except urllib.error.URLError as err:
        raise RewardServerError(f"cannot reach the reward server at {reward_url(url)}: {err.reason}") from None


def compute_score(data_source, solution_str: str, ground_truth=None, extra_info: dict | None = None, *,
                  url: str | None = None, unscored: float = 0.0) -> float:
    """verl's reward-function signature. The stable rank needs no ground truth; `data_source` and
    `ground_truth` are accepted and ignored. Pass the templated prompt as `extra_info["prompt"]`
    to score the response in its context (recommended: the reward then matches `srgrpo train`);
    without it the response text is scored on its own. `unscored` stands in where the server
    cannot score (e.g. an empty response)."""
    prompt = (extra_info or {}).get("prompt")
    if isinstance(prompt, str) and prompt:
        value = get_rewards([prompt + solution_str], [prompt], url=url)[0] if solution_str.strip() else None
    else:
        value = get_rewards([solution_str], url=url)[0] if solution_str.strip() else None
    return unscored if value is None else float(value)
