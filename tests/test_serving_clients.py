"""The reward server driven the way its real clients call it, end to end on loopback: OpenRLHF's
current per-sample aiohttp path and its older batched `requests` path (their code reproduced step
by step, OpenRLHF 3c3be62), verl's naive and batch reward managers calling our `compute_score`
(verl b178a3c), many concurrent clients, and the client module loaded without torch."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import references

from srgrpo.scoring import StableRankScorer
from srgrpo.serving import client as client_module
from srgrpo.serving.server import RewardServer, ServeConfig
from srgrpo.text import render_pair

aiohttp = pytest.importorskip("aiohttp")
torch = pytest.importorskip("torch")

CLIENT_FILE = Path(client_module.__file__)
PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Add 1/3 and 1/4.", "Add the numerators over a common denominator: 1/3 + 1/4 = 7/12."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Write code.", "def add(a, b):\n    return a + b\n"),
    ("Write a haiku.", "Cold rain on red leaves, the garden bows its wet head, summer slips away."),
    ("Who are you?", "I am a helpful assistant."),
]


@pytest.fixture(scope="module")
def server(tiny_model, tokenizer):
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def expected(tiny_model, tokenizer):
    return StableRankScorer(tiny_model, tokenizer).score([p for p, _ in PAIRS], [r for _, r in PAIRS])


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


# ---------------------------------------------------------------------- OpenRLHF, current
async def openrlhf_fetch_rewards_via_http(reward_endpoints, queries_list, prompts_list, labels_list):
    """openrlhf/utils/agent.py `_fetch_rewards_via_http`, line by line (logging left out)."""
    num_servers = len(reward_endpoints)
    batch_size = (len(queries_list) + num_servers - 1) // num_servers
    timeout = aiohttp.ClientTimeout(total=180)

    tasks = []
    for i, rm in enumerate(reward_endpoints):
        start_idx = i * batch_size
        end_idx = min((i + 1) * batch_size, len(queries_list))
        payload = {
            "query": queries_list[start_idx:end_idx],
            "prompts": prompts_list[start_idx:end_idx],
            "labels": labels_list[start_idx:end_idx],
        }

        async def _post_request(url, data, try_max_times=5):
            for _ in range(try_max_times):
                try:
                    async with aiohttp.ClientSession(timeout=timeout) as session:
                        async with session.post(url, json=data) as response:
                            response.raise_for_status()
                            return await response.json()
                except aiohttp.ClientError as e:
                    CLIENT_ERRORS.append(e)
                except Exception as e:  # pragma: no cover - defensive
                    CLIENT_ERRORS.append(e)
                await asyncio.sleep(1)
            raise RuntimeError(f"Request error for {try_max_times} times, returning None. Please check the API server.")

        tasks.append(asyncio.create_task(_post_request(rm, payload)))
    return await asyncio.gather(*tasks)


CLIENT_ERRORS: list = []


async def openrlhf_execute(url, prompt, label, hf_tokenizer, action_token_ids, max_prompt_tokens=10_000):
    """SingleTurnExecutor.execute's prompt tokenisation and left cut, then its reward step, then
    samples_generator's tensors (`torch.tensor([reward])`)."""
    prompt_token_ids = hf_tokenizer(text=prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0].tolist()
    if len(prompt_token_ids) > max_prompt_tokens:
        prompt_token_ids = prompt_token_ids[-max_prompt_tokens:]
    observation_token_ids = prompt_token_ids + list(action_token_ids)
    output = {"reward": None, "scores": None, "extra_logs": {}}
    query = hf_tokenizer.decode(observation_token_ids, skip_special_tokens=False)
    rewards_info_list = await openrlhf_fetch_rewards_via_http([url], [query], [prompt], [label])
    rewards_info = rewards_info_list[0] if rewards_info_list else None
    if rewards_info:
        score_value = rewards_info.get("scores")
        if score_value is None:
            score_value = rewards_info.get("rewards")
        output.update(reward=rewards_info.get("rewards"), scores=score_value,
                      extra_logs=rewards_info.get("extra_logs") or {})
    # samples_generator._process_response_into_experience
    reward_val, score_val = output.get("reward", None), output.get("scores", None)
    info = {}
    if reward_val is not None:
        info["reward"] = torch.tensor([reward_val])
    if score_val is not None:
        info["score"] = torch.tensor([score_val])
    for key, value in output["extra_logs"].items():
        info[key] = torch.tensor([value])
    rewards = torch.tensor([reward_val]) if reward_val is not None else None
    return rewards, info


def action_ids(tokenizer, response):
    """What the policy sampled: the response's tokens and its end-of-turn token."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def test_openrlhf_current_per_sample_path(server, tiny_model, tokenizer, expected):
    CLIENT_ERRORS.clear()
    url = server.url + "/get_reward"
    prompts = [templated_prompt(tokenizer, p) for p, _ in PAIRS]

    async def main():
        calls = [openrlhf_execute(url, prompts[i], "label", tokenizer, action_ids(tokenizer, r))
                 for i, (_, r) in enumerate(PAIRS)]
        calls.append(openrlhf_execute(url, prompts[0], "label", tokenizer, [tokenizer.eos_token_id]))  # empty answer
        calls.append(openrlhf_execute(url, prompts[1], "label", tokenizer, action_ids(tokenizer, PAIRS[1][1]),
                                      max_prompt_tokens=8))  # prompt cut from the left
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    assert CLIENT_ERRORS == []
    for (rewards, info), value in zip(results, expected):
        assert rewards.shape == (1, 1) and rewards.item() == pytest.approx(value, rel=1e-5)
        assert info["score"].item() == pytest.approx(value, rel=1e-5) and info["srgrpo_unscored"].item() == 0.0
    empty_rewards, empty_info = results[len(PAIRS)]
    assert empty_rewards.item() == 0.0 and empty_info["srgrpo_unscored"].item() == 1.0  # a number, not a crash
    cut_rewards, cut_info = results[len(PAIRS) + 1]
    cut_prompt = tokenizer(text=prompts[1], add_special_tokens=False)["input_ids"][-8:]
    cut_query = tokenizer.decode(cut_prompt + action_ids(tokenizer, PAIRS[1][1]), skip_special_tokens=False)
    boundary = len(tokenizer.decode(cut_prompt, skip_special_tokens=False))
    assert cut_rewards.item() == pytest.approx(query_reference(tiny_model, tokenizer, cut_query, boundary), rel=1e-5)
    assert cut_info["srgrpo_unscored"].item() == 0.0


def test_openrlhf_through_an_api_key_in_the_url(tiny_model, tokenizer, expected):
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0, api_key="k3y")).start()
    try:
        prompt = templated_prompt(tokenizer, PAIRS[0][0])
        good = f"http://srgrpo:k3y@127.0.0.1:{srv.port}/get_reward"
        rewards, _ = asyncio.run(openrlhf_execute(good, prompt, "", tokenizer, action_ids(tokenizer, PAIRS[0][1])))
        assert rewards.item() == pytest.approx(expected[0], rel=1e-5)
    finally:
        srv.stop()


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


# ---------------------------------------------------------------------- verl
def verl_load_reward_fn(path, name, reward_kwargs):
    """verl.trainer.ppo.reward.get_custom_reward_fn: load_extern_object + partial(_call_with_kwargs)."""
    import os

    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(os.path.abspath(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw_fn = getattr(module, name)

    def _call_with_kwargs(raw_fn, extra_kwargs, *args, **kwargs):
        return raw_fn(*args, **{**kwargs, **extra_kwargs})

    return functools.partial(_call_with_kwargs, raw_fn, dict(reward_kwargs))


def verl_rows(tokenizer):
    """DataProto-like rows: left-padded prompt ids, right-padded response ids, and the non-tensor
    fields of a dataset built with the recipe (the prompt's messages in extra_info)."""
    pad = tokenizer.pad_token_id
    rows = []
    for i, (question, response) in enumerate(PAIRS):
        messages = [{"role": "user", "content": question}]
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        response_ids = action_ids(tokenizer, response)
        rows.append({
            "prompts": [pad] * (40 - len(prompt_ids)) + prompt_ids,
            "prompt_mask": [0] * (40 - len(prompt_ids)) + [1] * len(prompt_ids),
            "responses": response_ids + [pad] * (48 - len(response_ids)),
            "response_mask": [1] * len(response_ids) + [0] * (48 - len(response_ids)),
            "data_source": "openai/gsm8k",
            "reward_model": {"style": "rule", "ground_truth": "7"},
            "extra_info": {"split": "train", "index": i, "prompt": messages},
        })
    return rows


def test_verl_naive_reward_manager(server, tokenizer, expected):
    """NaiveRewardManager.__call__: decode the valid response ids without special tokens, then
    compute_score(data_source=, solution_str=, ground_truth=, extra_info=) per sample."""
    compute_score = verl_load_reward_fn(str(CLIENT_FILE), "compute_score", {"url": server.url})
    scores = []
    for row in verl_rows(tokenizer):
        valid_response_length = sum(row["response_mask"])
        response_str = tokenizer.decode(row["responses"][:valid_response_length], skip_special_tokens=True)
        extra_info = dict(row["extra_info"])
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        score = compute_score(data_source=row["data_source"], solution_str=response_str,
                              ground_truth=row["reward_model"]["ground_truth"], extra_info=extra_info)
        assert isinstance(score, float)
        scores.append(score)
    assert scores == pytest.approx(expected, rel=1e-5)


def test_verl_batch_reward_manager(server, tokenizer, expected):
    """BatchRewardManager.verify: plural keyword names, numpy object arrays for the non-tensor
    fields, and reward_kwargs merged in."""
    np = pytest.importorskip("numpy")
    compute_score = verl_load_reward_fn(str(CLIENT_FILE), "compute_score", {"url": server.url})
    rows = verl_rows(tokenizer)
    responses_str = [tokenizer.decode(r["responses"][: sum(r["response_mask"])], skip_special_tokens=True) for r in rows]
    ground_truths = [r["reward_model"].get("ground_truth", None) for r in rows]
    data_sources = np.array([r["data_source"] for r in rows], dtype=object)
    extras = np.array([dict(r["extra_info"]) for r in rows], dtype=object)
    extras[1]["prompt"] = np.array(extras[1]["prompt"], dtype=object)  # as a parquet column may come back
    for i in range(len(rows)):
        extras[i]["rollout_reward_scores"] = {}
    scores = compute_score(data_sources=data_sources, solution_strs=responses_str, ground_truths=ground_truths,
                           extra_infos=extras)
    assert scores == pytest.approx(expected, rel=1e-5)


def test_verl_without_a_prompt_scores_the_response_alone_and_says_so(server, monkeypatch):
    monkeypatch.setattr(client_module, "_warned_no_prompt", False)
    with pytest.warns(UserWarning, match="extra_info has no 'prompt'"):
        value = client_module.compute_score("gsm8k", PAIRS[0][1], "7", {"index": 0}, url=server.url)
    assert value == pytest.approx(client_module.get_rewards([PAIRS[0][1]], url=server.url)[0], rel=1e-6)
    assert client_module.compute_score("gsm8k", "", "7", {"prompt": "Q"}, url=server.url) == 0.0


def test_client_errors(server, monkeypatch):
    with pytest.raises(client_module.RewardServerError, match="422"):
        client_module.get_rewards(["hello"], ["a", "b"], url=server.url)
    with pytest.raises(client_module.RewardServerError, match="cannot reach.*after 2 attempts"):
        client_module.get_rewards(["hello"], url="http://127.0.0.1:9/get_reward", retries=2, retry_wait=0, timeout=2)


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
        assert client_module.compute_score("s", "hello there", None, {"prompt": "Hi"}, url=srv.url) == \
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
        f"v = m.compute_score('s', 'Hello! How can I help you today?', None, {{'prompt': 'Say hello.'}}, url={server.url!r})\n"
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
