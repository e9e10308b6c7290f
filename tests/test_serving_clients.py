"""The reward server and our client module end to end on loopback, where the frameworks' installed
code cannot be run (their real code runs in tests/test_frameworks_*.py): OpenRLHF's older batched
`requests` path (up to 0.10.1, reproduced step by step: the installed 0.11.2 no longer has it), our
client's errors, API key, URL lists (round robin, failover, the time budget), the verl functions
without a prompt, many concurrent clients, and the client module loaded without torch."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import references

from conftest import SERVING_PAIRS
from srgrpo.scoring import StableRankScorer
from srgrpo.serving import client as client_module
from srgrpo.serving.server import RewardServer, ServeConfig
from srgrpo.text import render_pair

aiohttp = pytest.importorskip("aiohttp")
torch = pytest.importorskip("torch")

CLIENT_FILE = Path(client_module.__file__)
PAIRS = SERVING_PAIRS


def query_reference(model, tokenizer, query, boundary):
    """What the server should answer for `query` whose response starts at character `boundary`: SR of
    the tokens from the one holding that character to the end (trailing special tokens left out),
    the text tokenised whole, from transformers' forward and float64 SVD (tests/references.py)."""
    enc = tokenizer(query, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    start = next(i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > boundary)
    end = len(ids)
    while end > start and ids[end - 1] in tokenizer.all_special_ids:
        end -= 1
    return references.span_stable_rank(model, ids, start, end)


def templated_prompt(tokenizer, prompt):
    text, start, _, _ = render_pair(tokenizer, prompt, "x")
    return text[:start]


CLIENT_ERRORS: list = []


def action_ids(tokenizer, response):
    """What the policy sampled: the response's tokens and its end-of-turn token."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


# ---------------------------------------------------------------------- OpenRLHF, <= 0.10.1
def openrlhf_request_api_wrapper(url, data, try_max_times=5):
    """openrlhf/utils/remote_rm_utils.py `request_api_wrapper` (up to 0.10.1)."""
    import time

    import requests

    headers = {"Content-Type": "application/json"}
    for _ in range(try_max_times):
        try:
            response = requests.post(url=url, json=data, headers=headers, timeout=180)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as e:
            CLIENT_ERRORS.append(e)
        time.sleep(1)
    raise Exception(f"Request error for {try_max_times} times, returning None. Please check the API server.")


def test_openrlhf_older_batched_path(server, tokenizer, expected):
    """RemoteRewardModel.get_rewards shards one batch over the servers (here the same one twice),
    then experience_maker.update_samples_with_rewards concatenates the answers."""
    CLIENT_ERRORS.clear()
    pytest.importorskip("requests")
    remote_rm_url = [server.url + "/get_reward"] * 2
    prompts_list = [templated_prompt(tokenizer, p) for p, _ in PAIRS]
    queries_list = [tokenizer.decode(tokenizer(p, add_special_tokens=False)["input_ids"] + action_ids(tokenizer, r),
                                     skip_special_tokens=False) for p, (_, r) in zip(prompts_list, PAIRS)]
    labels_list = [""] * len(PAIRS)
    num_servers = len(remote_rm_url)
    batch_size = (len(queries_list) + num_servers - 1) // num_servers
    rewards_info = []
    for i in range(num_servers):
        start_idx, end_idx = i * batch_size, min((i + 1) * batch_size, len(queries_list))
        rewards_info.append(openrlhf_request_api_wrapper(
            remote_rm_url[i], {"query": queries_list[start_idx:end_idx], "prompts": prompts_list[start_idx:end_idx],
                               "labels": labels_list[start_idx:end_idx]}))
    samples_len = [3, 3]  # two micro-batches of samples
    rewards_list = torch.cat([torch.as_tensor(info["rewards"]) for info in rewards_info], dim=0).split(samples_len)
    scores_list = torch.cat([torch.as_tensor(info["scores"]) for info in rewards_info], dim=0).split(samples_len)
    merged_logs = {key: torch.cat([torch.as_tensor(info["extra_logs"][key]) for info in rewards_info], dim=0)
                   for key in rewards_info[0]["extra_logs"]}
    assert CLIENT_ERRORS == []
    assert torch.cat(rewards_list).tolist() == pytest.approx(expected, rel=1e-5)
    assert torch.cat(scores_list).tolist() == pytest.approx(expected, rel=1e-5)
    assert merged_logs["srgrpo_unscored"].tolist() == [0.0] * len(PAIRS)


# ---------------------------------------------------------------------- verl (its real managers: test_frameworks_verl.py)
def test_verl_without_a_prompt_scores_the_response_alone_and_says_so(server, monkeypatch):
    monkeypatch.setattr(client_module, "_warned_no_prompt", False)
    with pytest.warns(UserWarning, match="extra_info has no 'prompt'"):
        value = client_module.compute_score_sync("gsm8k", PAIRS[0][1], "7", {"index": 0}, url=server.url)
    assert value == pytest.approx(client_module.get_rewards([PAIRS[0][1]], url=server.url)[0], rel=1e-6)
    assert client_module.compute_score_sync("gsm8k", "", "7", {"prompt": "Q"}, url=server.url) == 0.0


def test_client_errors(server, monkeypatch):
    with pytest.raises(client_module.RewardServerError, match="422"):
        client_module.get_rewards(["hello"], ["a", "b"], url=server.url)
    with pytest.raises(client_module.RewardServerError, match=r"cannot reach.*\(after 2 of 2 tries\)"):
        client_module.get_rewards(["hello"], url="http://127.0.0.1:9/get_reward", retries=2, retry_wait=0, timeout=2)


def test_url_forms(monkeypatch):
    monkeypatch.delenv(client_module.URL_ENV, raising=False)
    assert client_module.reward_urls("http://a:1, http://b:2/get_reward") == ["http://a:1/get_reward", "http://b:2/get_reward"]
    assert client_module.reward_urls(["http://a:1"]) == ["http://a:1/get_reward"]
    assert client_module.reward_urls(None) == [client_module.DEFAULT_URL]  # get_rewards' documented default
    with pytest.raises(client_module.NoRewardURL, match=r"reward_kwargs.url=.*SRGRPO_REWARD_URL"):
        client_module.reward_urls(None, required=True)
    with pytest.raises(client_module.NoRewardURL):
        asyncio.run(client_module.compute_score("s", "text", None, {"prompt": "Q"}))
    with pytest.raises(client_module.NoRewardURL):
        client_module.compute_score_sync("s", "text", None, {"prompt": "Q"})
    monkeypatch.setenv(client_module.URL_ENV, "http://c:3,http://d:4")
    assert client_module.reward_urls(None, required=True) == ["http://c:3/get_reward", "http://d:4/get_reward"]


def dead_url():
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_url_list_round_robin_and_failover(server, tiny_model, tokenizer, expected):
    second = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0)).start()
    try:
        urls = [server.url, second.url]
        before = [server.counts["answered"], second.counts["answered"]]
        values = [client_module.compute_score_sync("s", PAIRS[0][1], None, {"prompt": [{"role": "user", "content": PAIRS[0][0]}]},
                                                     url=urls)
                  for _ in range(6)]
        assert values == pytest.approx([expected[0]] * 6, rel=1e-5)
        assert [server.counts["answered"] - before[0], second.counts["answered"] - before[1]] == [3, 3]
    finally:
        second.stop()
    # a dead server in the list: each call that starts there moves on to the live one
    urls = [dead_url(), server.url]
    values = [asyncio.run(client_module.compute_score("s", PAIRS[1][1], None, {"prompt": [{"role": "user", "content": PAIRS[1][0]}]},
                                                        url=urls))
              for _ in range(4)]
    assert values == pytest.approx([expected[1]] * 4, rel=1e-5)


def test_verl_time_budget_covers_every_try():
    """A server that accepts and never answers: compute_score gives up after `timeout` seconds in
    all (not timeout x tries), with an error naming the server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    threading.Thread(target=lambda: held.extend(sock.accept() for _ in range(3)), daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(client_module.RewardServerError, match=r"cannot reach.*127.0.0.1.*tries"):
            asyncio.run(client_module.compute_score("s", "text", None, {"prompt": "Q"},
                                                    url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=1.5, retries=3))
        assert time.monotonic() - started < 3.0
    finally:
        sock.close()


def test_verl_concurrency_is_bounded(server, expected):
    """max_concurrency requests of one process at most: 12 samples through 3 request threads."""
    import srgrpo.serving.client as c

    async def main():
        return await asyncio.gather(*(c.compute_score("s", PAIRS[i % 6][1], None, c.verl_record(PAIRS[i % 6][0], i)[
            "extra_info"], url=server.url, max_concurrency=3) for i in range(12)))

    values = asyncio.run(main())
    assert values == pytest.approx([expected[i % 6] for i in range(12)], rel=1e-5)
    assert c._pools[3]._max_workers == 3


def test_client_sends_the_api_key(tiny_model, tokenizer, monkeypatch):
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0, api_key="k3y")).start()
    try:
        with pytest.raises(client_module.RewardServerError, match="401"):
            client_module.get_rewards(["hello there"], url=srv.url)
        whole = query_reference(tiny_model, tokenizer, "hello there", 0)  # no prompt: the whole text
        assert client_module.get_rewards(["hello there"], url=f"http://x:k3y@127.0.0.1:{srv.port}")[0] == \
            pytest.approx(whole, rel=1e-5)
        monkeypatch.setenv(client_module.KEY_ENV, "k3y")
        after_prompt = query_reference(tiny_model, tokenizer, "Hihello there", len("Hi"))  # verl's prompt, as sent
        assert asyncio.run(client_module.compute_score("s", "hello there", None, {"prompt": "Hi"}, url=srv.url)) == \
            pytest.approx(after_prompt, rel=1e-5)
    finally:
        srv.stop()


# ---------------------------------------------------------------------- without torch
def test_the_client_file_loads_and_scores_without_torch(server, tiny_model, tokenizer):
    """verl loads the file by path: nothing heavier than the standard library comes in."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('reward_fn', {str(CLIENT_FILE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import asyncio\n"
        f"v = asyncio.run(m.compute_score('s', 'Hello! How can I help you today?', None, {{'prompt': 'Say hello.'}}, url={server.url!r}))\n"
        "heavy = sorted(n for n in ('torch', 'numpy', 'transformers', 'srgrpo', 'fastapi', 'pydantic') if n in sys.modules)\n"
        "print(heavy, v)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    heavy, value = out.rsplit("]", 1)
    expected = query_reference(tiny_model, tokenizer, "Say hello.Hello! How can I help you today?", len("Say hello."))
    assert heavy + "]" == "[]" and float(value) == pytest.approx(expected, rel=1e-5)


def test_importing_the_client_module_does_not_import_torch():
    code = "import sys, srgrpo.serving.client; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------------- many clients
def run_many_clients(server, tokenizer, expected, n_clients, n_requests):
    """n_clients concurrent OpenRLHF-style clients (a new session per request), n_requests each."""
    url = server.url + "/get_reward"
    prompts = [templated_prompt(tokenizer, p) for p, _ in PAIRS]
    queries = [p + r + tokenizer.eos_token for p, (_, r) in zip(prompts, PAIRS)]
    errors, got = [], []

    async def one_client(c):
        for k in range(n_requests):
            i = (c + k) % len(PAIRS)
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
                    async with session.post(url, json={"query": [queries[i]], "prompts": [prompts[i]], "labels": [""]}) as r:
                        r.raise_for_status()
                        got.append((i, (await r.json())["rewards"][0]))
            except Exception as err:  # counted, not retried: the target is zero
                errors.append(repr(err))

    async def main():
        await asyncio.gather(*(one_client(c) for c in range(n_clients)))

    asyncio.run(main())
    assert errors == []
    assert len(got) == n_clients * n_requests
    for i, value in got:
        assert value == pytest.approx(expected[i], rel=1e-5)


def test_64_concurrent_clients(server, tokenizer, expected):
    run_many_clients(server, tokenizer, expected, 64, 2)


@pytest.mark.slow
def test_256_concurrent_clients_times_10_requests(server, tokenizer, expected):
    run_many_clients(server, tokenizer, expected, 256, 10)
