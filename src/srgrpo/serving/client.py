"""Client side of the reward server: the standard library only (no torch), for verl, TRL or any engine.

verl 0.9 (its reward loop, `verl.experimental.reward_loop`: managers naive, dapo, gdpo,
rate_limited; all call the function once per sample and await it when it is async):

    reward.custom_reward_function.path=<site-packages>/srgrpo/serving/client.py
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.url=http://HOST:5000/get_reward   # or $SRGRPO_REWARD_URL
    data.reward_fn_key=data_source                                                   # (the default)

The old top-level `custom_reward_function.*` keys (verl < 0.7) are still accepted by verl 0.9's
config but no longer read: the run would silently use verl's rule reward. verl cannot be made to
refuse them from here (our file is never loaded then), so: build the dataset with
`data_source="srgrpo"` (verl's rule reward raises NotImplementedError for it, so a run that does
not call us stops at its first sample), and check the config with `check_verl_config` (or launch
through `python -m srgrpo.serving.verl_main`, verl's own `main_ppo` behind that check).

`compute_score` is async (verl awaits it on its event loop): at most `max_concurrency` requests of
one process in flight (`reward_kwargs.max_concurrency`, default 32), each sample's whole budget
(waiting for a slot, every try, the pauses between them) at most `timeout` seconds (default 240, below
the 300 s after which verl's rate_limited manager gives up and writes 0.0), `retries` tries (default
3). `compute_score_sync` is the same for the older `verl.workers.reward_manager` classes (naive,
batch: they call it without awaiting) and for the reward loop's `remote` manager (it runs a
synchronous function in Ray actors, for CPU-heavy rewards: `reward.reward_manager.name=remote`,
`reward.custom_reward_function.name=compute_score_sync`). `url` may be a list or a comma-separated
string of servers: requests go round robin, and a try that cannot reach one server (or gets a 5xx)
moves to the next.

verl hands a reward function the decoded response, never its prompt; the prompt reaches it only
through the dataset's `extra_info`. Put the prompt there when building the parquet file (the same
chat messages as the `prompt` column, or the templated prompt text), and `compute_score` sends it
so the response is scored in its context:

    "extra_info": {"index": idx, "prompt": [{"role": "user", "content": question}]}

Without it the response is scored on its own (and a warning says so once). The verl functions and
`RemoteStableRankReward` need a server URL: `url=`, else `$SRGRPO_REWARD_URL`, else an error (never
a guessed default); `get_rewards`/`score_responses` fall back to http://127.0.0.1:5000/get_reward.
The API key: `api_key=`, else `$SRGRPO_API_KEY`, else the URL's user info
(http://srgrpo:KEY@host:5000/...).

TRL (`GRPOTrainer` and `trl.experimental.async_grpo.AsyncGRPOTrainer`): `RemoteStableRankReward(url)`
is a picklable reward function (AsyncGRPOTrainer runs rewards in a spawned, GPU-less child process).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import itertools
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Any, NamedTuple, Sequence

URL_ENV = "SRGRPO_REWARD_URL"
KEY_ENV = "SRGRPO_API_KEY"
DEFAULT_URL = "http://127.0.0.1:5000/get_reward"
MAX_TEXTS_PER_REQUEST = 1024  # a batch is sent in requests of at most this many texts
VERL_TIMEOUT = 240.0  # seconds for one sample, every try included: below rate_limited's 300 s
VERL_RETRIES = 3
VERL_MAX_CONCURRENCY = 32
UNSCORED_KEY = "srgrpo_unscored"

_warned_no_prompt = False


class RewardServerError(RuntimeError):
    """The server answered with an error (its message included) or could not be reached."""


class NoRewardURL(ValueError):
    """A client that needs a server was given none."""


def reward_url(url: str | None = None) -> str:
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    return url if url.rstrip("/").endswith("/get_reward") else url.rstrip("/") + "/get_reward"


def reward_urls(url=None, *, required: bool = False, what: str = "the reward client") -> list[str]:
    """The servers `url` names: a URL, a comma-separated string of URLs or a list of them (each
    completed with /get_reward); else $SRGRPO_REWARD_URL (the same forms); else the default one, or
    with `required` a NoRewardURL naming the fix."""
    if url is None or (isinstance(url, str) and not url.strip()):
        url = os.environ.get(URL_ENV)
    if isinstance(url, str):
        url = [u for u in url.split(",")]
    urls = [str(u).strip() for u in (url or []) if str(u).strip()]
    if not urls:
        if required:
            raise NoRewardURL(
                f"{what} has no reward server URL: pass url=http://HOST:PORT/get_reward (verl: "
                f"+reward.custom_reward_function.reward_kwargs.url=...; several servers: comma-separated) "
                f"or set ${URL_ENV}"
            )
        urls = [DEFAULT_URL]
    return [reward_url(u) for u in urls]


class _ProcessState(dict):
    """A dict of this process's own state (round-robin cursors, request threads) with its lock.
    verl loads this file by path, as a module of another name, so Ray's cloudpickle ships our
    functions by value, with the globals they use (verl's `remote` manager sends compute_score_sync
    to a Ray actor): a copy is a new empty state, where a lock or a thread pool cannot be copied."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def __reduce__(self):
        return type(self), ()


_cursors: _ProcessState = _ProcessState()  # tuple of URLs -> itertools.count


def _start_index(urls: Sequence[str]) -> int:
    """Round robin: each call starts at the next server of its list (counted per process)."""
    if len(urls) == 1:
        return 0
    with _cursors.lock:
        cursor = _cursors.setdefault(tuple(urls), itertools.count())
        return next(cursor) % len(urls)


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


def post_json(payload: dict, url=None, *, api_key: str | None = None, timeout: float = 300.0,
              retries: int = 5, retry_wait: float = 1.0, deadline: float | None = None) -> dict:
    """POST `payload` to a server and return its JSON answer. `url`: one URL, a comma-separated string
    or a list (see `reward_urls`); the first try goes to the next server in round robin, each retry
    to the one after it (failover). Connection failures, timeouts and 5xx answers are retried
    (`retries` tries, `retry_wait` s apart, as OpenRLHF does); a 4xx is raised at once. `timeout` is
    one try's limit; `deadline` (a `time.monotonic()` value) bounds all of them together."""
    urls = reward_urls(url)
    first = _start_index(urls)
    key = api_key or os.environ.get(KEY_ENV)
    data = json.dumps(payload).encode()
    tries = max(retries, 1)
    last = ""
    for attempt in range(tries):
        if attempt:
            if deadline is not None and time.monotonic() + retry_wait >= deadline:
                break
            time.sleep(retry_wait)
        limit = timeout
        if deadline is not None:
            limit = min(timeout, deadline - time.monotonic())
            if limit <= 0:
                break
        address, headers = _prepare(urls[(first + attempt) % len(urls)], key)
        request = urllib.request.Request(address, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=limit) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("error", "")
            except (ValueError, AttributeError):
                message = ""
            last = f"reward server {address} answered {err.code}: {message}"
            if err.code < 500:
                raise RewardServerError(last) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            last = f"cannot reach the reward server at {address}: {getattr(err, 'reason', err)}"
    raise RewardServerError(f"{last or 'no try within the time budget'} (after {attempt + 1} of {tries} tries)")


def get_rewards(queries: Sequence[str], prompts: Sequence[str] | None = None, url=None,
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


def score_responses(prompts: Sequence, responses: Sequence[str], url=None,
                    timeout: float = 300.0, *, with_unscored: bool = False, **kwargs):
    """srgrpo's form: each response after its prompt, the prompt given as the templated prompt text
    or as chat messages (the server renders them with its chat template and generation prompt);
    an empty prompt scores the response on its own. With `with_unscored`: (rewards, unscored
    flags), a flag True where the server could not score the text and sent its unscored value."""
    prompts, responses = [_plain(p) for p in prompts], [str(r) for r in responses]
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    rewards: list[float] = []
    unscored: list[bool] = []
    for k in range(0, len(responses), MAX_TEXTS_PER_REQUEST):
        payload = {"prompts": prompts[k : k + MAX_TEXTS_PER_REQUEST], "responses": responses[k : k + MAX_TEXTS_PER_REQUEST]}
        answer = post_json(payload, url, timeout=timeout, **kwargs)
        rewards.extend(answer["rewards"])
        flags = (answer.get("extra_logs") or {}).get(UNSCORED_KEY) or [0.0] * len(answer["rewards"])
        unscored.extend(bool(f) for f in flags)
    return (rewards, unscored) if with_unscored else rewards


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




# ---------------------------------------------------------------------- verl
def _verl_request(prompt, solution_str, url, api_key, timeout, retries, deadline):
    urls = reward_urls(url, required=True, what="srgrpo's verl compute_score")
    return score_responses([prompt], [solution_str], urls, timeout, api_key=api_key, retries=retries,
                           retry_wait=1.0, deadline=deadline)[0]


_pools: _ProcessState = _ProcessState()  # size -> concurrent.futures.ThreadPoolExecutor


def _pool(size: int) -> concurrent.futures.ThreadPoolExecutor:
    """This process's request threads (not the event loop's default executor, which verl uses to
    decode responses): `size` of them bound the requests in flight."""
    with _pools.lock:
        if size not in _pools:
            _pools[size] = concurrent.futures.ThreadPoolExecutor(max_workers=size, thread_name_prefix="srgrpo-reward")
        return _pools[size]


class VerlOptions(NamedTuple):
    """The `reward_kwargs` srgrpo's verl functions read (verl passes them as keyword arguments beside
    the sample's; any other key is ignored, as verl may add its own). A NamedTuple, not a dataclass:
    verl may load this file without registering it in sys.modules, where dataclasses cannot work."""

    url: Any = None  # the server: one URL, a list, or comma-separated (required; else $SRGRPO_REWARD_URL)
    api_key: str | None = None  # else $SRGRPO_API_KEY, else the URL's user info
    prompt_key: str = "prompt"  # the key of extra_info that holds the prompt (chat messages or text)
    timeout: float = VERL_TIMEOUT  # seconds for one call: waiting for a slot, every try, the pauses
    retries: int = VERL_RETRIES  # tries per request
    max_concurrency: int = VERL_MAX_CONCURRENCY  # requests of this process in flight (compute_score only)

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "VerlOptions":
        return cls(**{name: kwargs[name] for name in cls._fields if name in kwargs})


async def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None,
                        **reward_kwargs) -> float:
    """verl 0.9's reward function (every reward-loop manager awaits it once per sample):
    `await compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)`
    -> the stable rank of `solution_str` after the prompt in `extra_info[prompt_key]` (see the module
    docstring). A float always: the server sends its unscored value (0.0 by default) for an empty
    response. `reward_kwargs`: `VerlOptions`' fields (`url` required, or $SRGRPO_REWARD_URL). At most
    `max_concurrency` requests of this process in flight; the whole call, waiting included, takes at
    most `timeout` seconds over at most `retries` tries; then RewardServerError."""
    if solution_str is None:
        raise TypeError("compute_score needs solution_str (verl's reward-loop managers pass it)")
    options = VerlOptions.from_kwargs(reward_kwargs)
    deadline = time.monotonic() + options.timeout
    urls = reward_urls(options.url, required=True, what="srgrpo's verl compute_score")
    prompt = _prompt_of(extra_info, options.prompt_key)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _pool(max(1, int(options.max_concurrency))), _verl_request, prompt, solution_str, urls, options.api_key,
        options.timeout, options.retries, deadline)


def compute_score_sync(data_source=None, solution_str=None, ground_truth=None, extra_info=None, **kwargs):
    """The same, synchronous, for the older managers that call it without awaiting
    (`verl.workers.reward_manager`): naive, per sample -> float; batch
    (`compute_score_sync(data_sources=, solution_strs=, ground_truths=, extra_infos=)`, in `kwargs`
    beside `VerlOptions`' fields) -> list, in requests of at most MAX_TEXTS_PER_REQUEST texts."""
    options = VerlOptions.from_kwargs(kwargs)
    urls = reward_urls(options.url, required=True, what="srgrpo's verl compute_score_sync")
    deadline = time.monotonic() + options.timeout
    solution_strs = kwargs.get("solution_strs")
    if solution_strs is not None:
        extra_infos = kwargs.get("extra_infos")
        infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
        prompts = [_prompt_of(info, options.prompt_key) for info in infos]
        return score_responses(prompts, list(solution_strs), urls, options.timeout, api_key=options.api_key,
                               retries=options.retries, deadline=deadline)
    if solution_str is None:
        raise TypeError("compute_score_sync needs solution_str (naive manager) or solution_strs (batch manager)")
    return _verl_request(_prompt_of(extra_info, options.prompt_key), solution_str, urls, options.api_key,
                         options.timeout, options.retries, deadline)


VERL_DATA_SOURCE = "srgrpo"  # not a data source verl's rule reward knows: without our function it raises


def verl_record(prompt, index: int, *, split: str = "train", ground_truth: str = "",
                data_source: str = VERL_DATA_SOURCE, **extra_info) -> dict:
    """One row of a verl parquet file scored by srgrpo serve: `prompt` as chat messages (a string
    becomes one user message) in the `prompt` column and again in `extra_info["prompt"]` (verl hands
    the reward function only the response and `extra_info`), `data_source="srgrpo"` (verl's rule
    reward raises NotImplementedError for it, so a config that does not reach `compute_score`
    fails at its first sample instead of training on another reward), an empty ground truth (the
    managers read one; the stable rank needs none)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return {"data_source": data_source, "prompt": messages, "ability": "chat",
            "reward_model": {"style": "model", "ground_truth": ground_truth},
            "extra_info": {"split": split, "index": index, "prompt": messages, **extra_info}}


VERL_MANAGERS = ("naive", "dapo", "gdpo", "rate_limited")  # the reward-loop managers that call compute_score
VERL_FUNCTIONS = {"compute_score": "async", "compute_score_sync": "sync"}


class VerlConfigError(ValueError):
    """A verl config that would not send its rewards to srgrpo serve (the message names the fix)."""


def _get(node, *keys):
    for key in keys:
        if node is None:
            return None
        try:
            node = node.get(key) if hasattr(node, "get") else getattr(node, key, None)
        except Exception:  # omegaconf raises on a missing key in struct mode
            return None
    return node


def check_verl_config(config) -> None:
    """Refuse a verl 0.9 config (an OmegaConf DictConfig or a nested dict) that would not score
    with srgrpo serve, naming the fix: the old top-level `custom_reward_function.*` keys (verl >= 0.7
    ignores them and falls back to its rule reward), no `reward.custom_reward_function.path`,
    a function name that is not ours, a reward manager the reward loop does not have (e.g. `batch`),
    or no server URL (reward_kwargs.url or $SRGRPO_REWARD_URL). Warns when rate_limited would send
    one request at a time."""
    old_path = _get(config, "custom_reward_function", "path")
    new_path = _get(config, "reward", "custom_reward_function", "path")
    if old_path and not new_path:
        raise VerlConfigError(
            "custom_reward_function.path is the pre-0.7 key: verl 0.9 no longer reads it and would train on its "
            "rule-based reward. Use reward.custom_reward_function.path=..., reward.custom_reward_function.name="
            "compute_score and +reward.custom_reward_function.reward_kwargs.url=http://HOST:PORT/get_reward")
    if not new_path:
        raise VerlConfigError(
            "reward.custom_reward_function.path is not set: verl would use its rule-based reward. Set it to "
            f"{os.path.abspath(__file__)} with reward.custom_reward_function.name=compute_score")
    name = _get(config, "reward", "custom_reward_function", "name") or "compute_score"
    if os.path.basename(str(new_path)) == os.path.basename(__file__) and name not in VERL_FUNCTIONS:
        raise VerlConfigError(f"reward.custom_reward_function.name={name} is not in srgrpo's client; use compute_score")
    manager = _get(config, "reward", "reward_manager", "name")
    source = _get(config, "reward", "reward_manager", "source") or "register"
    if manager is not None and source == "register" and manager not in VERL_MANAGERS + ("remote",):
        raise VerlConfigError(
            f"reward.reward_manager.name={manager} is not a verl 0.9 reward-loop manager (the batch manager is "
            f"gone): use one of {', '.join(VERL_MANAGERS)}; each calls compute_score once per sample")
    if manager == "remote" and source == "register" and VERL_FUNCTIONS.get(name) == "async":
        raise VerlConfigError(
            f"reward.reward_manager.name=remote runs a synchronous function in Ray actors: set "
            f"reward.custom_reward_function.name=compute_score_sync (not {name})")
    kwargs = _get(config, "reward", "custom_reward_function", "reward_kwargs") or {}
    old_kwargs = _get(config, "custom_reward_function", "reward_kwargs")
    if not _get(kwargs, "url") and not os.environ.get(URL_ENV):
        hint = " (it is under the old custom_reward_function.reward_kwargs, which verl 0.9 ignores)" if \
            _get(old_kwargs, "url") else ""
        raise VerlConfigError(
            "no reward server URL: set +reward.custom_reward_function.reward_kwargs.url=http://HOST:PORT/get_reward "
            f"(several: comma-separated) or ${URL_ENV}{hint}")
    if manager == "rate_limited" and int(_get(config, "reward", "max_concurrent") or 1) == 1:
        warnings.warn("reward.reward_manager.name=rate_limited sends one request at a time (reward.max_concurrent "
                      "defaults to 1): set +reward.max_concurrent=64 or use naive", stacklevel=2)


# ---------------------------------------------------------------------- TRL
def _completion_text(completion) -> str:
    """TRL's completion: a string, or chat messages (the assistant turn's content)."""
    completion = _plain(completion)
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


class RemoteStableRankReward:
    """A TRL reward function scored by `srgrpo serve`: for `GRPOTrainer` and for
    `AsyncGRPOTrainer` (which runs rewards in a spawned child process with CUDA_VISIBLE_DEVICES="",
    so the reward must be picklable and cannot use the trainer's GPU: the server holds the model).

    One batched request per call (`{"prompts": [...], "responses": [...]}`; a conversational prompt
    goes as its messages and is rendered with the server's chat template, a plain prompt as text),
    awaited (`__call__` is async; both trainers await async reward functions). An unscored completion
    (e.g. empty) gets None, so TRL leaves it out of the reward; when TRL passes `log_metric`
    (GRPOTrainer does; AsyncGRPOTrainer does not), the unscored share is logged as
    `srgrpo/unscored_frac`. `url`: one URL, a list or comma-separated (round robin + failover),
    else $SRGRPO_REWARD_URL, else an error. Logged by TRL under `rewards/RemoteStableRankReward`."""

    def __init__(self, url=None, *, api_key: str | None = None, timeout: float = 300.0, retries: int = 5,
                 unscored: float | None = None):
        self.urls = reward_urls(url, required=True, what="RemoteStableRankReward")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.unscored = unscored  # what an unscored completion gets (None: TRL leaves it out)
        self.__name__ = type(self).__name__

    def score(self, prompts, completions) -> tuple[list[float], list[bool]]:
        prompts = [_plain(p) for p in prompts]
        responses = [_completion_text(c) for c in completions]
        return score_responses(prompts, responses, self.urls, self.timeout, api_key=self.api_key, retries=self.retries,
                               with_unscored=True, deadline=time.monotonic() + self.timeout * max(self.retries, 1))

    def call(self, prompts, completions, log_metric=None, **_: Any) -> list[float | None]:
        """The synchronous form of `__call__`."""
        values, unscored = self.score(prompts, completions)
        if log_metric is not None and values:
            log_metric("srgrpo/unscored_frac", sum(unscored) / len(unscored))
        return [self.unscored if flag else float(v) for v, flag in zip(values, unscored)]

    async def __call__(self, prompts, completions, log_metric=None, **kwargs: Any) -> list[float | None]:
        return await asyncio.to_thread(self.call, prompts, completions, log_metric, **kwargs)
