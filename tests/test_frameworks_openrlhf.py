"""OpenRLHF 0.11.2's own reward path against live `srgrpo serve` servers on loopback:
`SingleTurnAgentExecutor.execute` -> `_fetch_rewards_via_http`, with one URL and with two
(`--reward.remote_url A,B`, which OpenRLHF splits on commas), the API key in the URL, an empty
generation, a prompt cut from the left, and 64 concurrent samples. Only vLLM's engine is stood in
for (it cannot run here): it returns the token ids a policy would have sampled."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import references

pytest.importorskip("openrlhf", reason="openrlhf is installed in .venv-frameworks: bash scripts/test.sh runs this file there")
agent = pytest.importorskip("openrlhf.utils.agent")

from conftest import SERVING_PAIRS  # noqa: E402
from srgrpo.scoring import StableRankScorer  # noqa: E402
from srgrpo.serving.server import RewardServer, ServeConfig  # noqa: E402

PAIRS = SERVING_PAIRS[:4]


class VLLMStandIn:
    """`llm_engine.generate(prompt_token_ids, sampling_params, multi_modal_data=)` as OpenRLHF's
    executor awaits it, answering each prompt with a fixed response and the end-of-turn token."""

    def __init__(self, tokenizer, answers: dict[str, str]):
        self.tokenizer = tokenizer
        self.answers = answers
        self.seen: list[list[int]] = []

    async def generate(self, prompt_token_ids, params, multi_modal_data=None):
        self.seen.append(list(prompt_token_ids))
        text = self.tokenizer.decode(prompt_token_ids)
        response = next((r for q, r in self.answers.items() if q in text), "")
        ids = self.tokenizer(response, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, finish_reason="stop", logprobs=None)])


def chat_prompt(tokenizer, question):
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)


@pytest.fixture(scope="module")
def servers(tiny_model, tokenizer):
    pair = [RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0)).start() for _ in range(2)]
    yield pair
    for srv in pair:
        srv.stop()


def execute(executor, tokenizer, engine, question, max_length=2048, max_tokens=64):
    params = SimpleNamespace(max_tokens=max_tokens, logprobs=None)
    return executor.execute(chat_prompt(tokenizer, question), "label", params, max_length, tokenizer, engine)


@pytest.mark.parametrize("n_urls", [1, 2])
def test_single_turn_executor_scores_every_sample(n_urls, servers, tokenizer, expected):
    urls = [f"{srv.url}/get_reward" for srv in servers[:n_urls]]
    executor = agent.SingleTurnAgentExecutor(urls if n_urls > 1 else urls[0])
    engine = VLLMStandIn(tokenizer, dict(PAIRS))
    before = [srv.counts["answered"] for srv in servers]

    async def main():
        return await asyncio.gather(*(execute(executor, tokenizer, engine, q) for q, _ in PAIRS * 2))

    outputs = asyncio.run(main())
    for out, value in zip(outputs, expected * 2):
        assert out["reward"] == pytest.approx([value], rel=1e-5) and out["scores"] == out["reward"]
        assert out["extra_logs"] == {"srgrpo_unscored": [0.0]}
    counts = [srv.counts["answered"] - b for srv, b in zip(servers, before)]
    assert sum(counts) == 2 * len(PAIRS)
    if n_urls == 2:
        assert counts == [len(PAIRS), len(PAIRS)]  # OpenRLHF cycles over the URLs per call


def test_empty_generation_gets_the_unscored_value_and_flag(servers, tokenizer):
    executor = agent.SingleTurnAgentExecutor(f"{servers[0].url}/get_reward")
    engine = VLLMStandIn(tokenizer, {})  # answers nothing but the end-of-turn token
    out = asyncio.run(execute(executor, tokenizer, engine, PAIRS[0][0]))
    assert out["reward"] == [0.0] and out["extra_logs"] == {"srgrpo_unscored": [1.0]}


def test_prompt_cut_from_the_left_is_still_scored(servers, tiny_model, tokenizer):
    """max_length - max_tokens shorter than the prompt: OpenRLHF keeps the prompt's last tokens, so
    the query no longer starts with the `prompts` text it sends."""
    executor = agent.SingleTurnAgentExecutor(f"{servers[0].url}/get_reward")
    engine = VLLMStandIn(tokenizer, {"": PAIRS[1][1]})  # the question itself is cut off
    full = len(tokenizer(chat_prompt(tokenizer, PAIRS[1][0]), add_special_tokens=False)["input_ids"])
    out = asyncio.run(execute(executor, tokenizer, engine, PAIRS[1][0], max_length=40 + full - 6, max_tokens=40))
    cut_prompt = engine.seen[-1]
    assert len(cut_prompt) == full - 6
    # what the server should answer: the response's tokens after the kept prompt tail, read by
    # transformers' forward with a float64 SVD (tests/references.py)
    response_ids = tokenizer(PAIRS[1][1], add_special_tokens=False)["input_ids"]
    ids = tokenizer(tokenizer.decode(cut_prompt + response_ids + [tokenizer.eos_token_id]),
                    add_special_tokens=False)["input_ids"]
    assert ids[:len(cut_prompt)] == cut_prompt
    want = references.span_stable_rank(tiny_model, ids, len(cut_prompt), len(ids) - 1)
    assert out["reward"] == pytest.approx([want], rel=1e-5) and out["extra_logs"] == {"srgrpo_unscored": [0.0]}


def test_api_key_in_the_url(tiny_model, tokenizer, expected):
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0, api_key="k3y")).start()
    try:
        engine = VLLMStandIn(tokenizer, dict(PAIRS))
        good = agent.SingleTurnAgentExecutor(f"http://srgrpo:k3y@127.0.0.1:{srv.port}/get_reward")
        assert asyncio.run(execute(good, tokenizer, engine, PAIRS[0][0]))["reward"] == pytest.approx([expected[0]], rel=1e-5)
    finally:
        srv.stop()


def test_64_concurrent_samples_no_error(servers, tokenizer, expected):
    executor = agent.SingleTurnAgentExecutor([f"{srv.url}/get_reward" for srv in servers])
    engine = VLLMStandIn(tokenizer, dict(PAIRS))

    async def main():
        return await asyncio.gather(*(execute(executor, tokenizer, engine, PAIRS[i % 4][0]) for i in range(64)))

    outputs = asyncio.run(main())
    # OpenRLHF logs a failed reward fetch and leaves reward None: none may be missing
    assert [out["reward"] is not None for out in outputs] == [True] * 64
    for i, out in enumerate(outputs):
        assert out["reward"] == pytest.approx([expected[i % 4]], rel=1e-5)
