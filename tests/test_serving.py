"""The reward server: OpenRLHF protocol, batching across concurrent clients, 4xx on bad requests,
and the verl-style client."""

from __future__ import annotations

import http.client
import json
import threading

import pytest
import torch

from srgrpo.scoring import StableRankScorer
from srgrpo.text import render_pair
from srgrpo.serving.client import RewardServerError, compute_score, get_rewards
from srgrpo.serving.server import make_server
from srgrpo.training.reward import StableRankReward

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Add 1/3 and 1/4.", "Add the numerators over a common denominator: 1/3 + 1/4 = 7/12."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Write code.", "def add(a, b):\n    return a + b\n"),
]
MAX_BODY = 4096


@pytest.fixture(scope="module")
def server(tiny_model, tokenizer):
    # A long batching window, so that concurrent requests surely meet in one batch.
    srv = make_server(StableRankReward(tiny_model, tokenizer), "127.0.0.1", 0, model_name="tiny",
                      max_body_bytes=MAX_BODY, batch_wait_s=0.2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(server, body: bytes | str, path="/get_reward", headers=None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, body=body if isinstance(body, bytes) else body.encode(),
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def templated(tokenizer, prompt, response):
    """(prompt text, query text) as an RL engine sends them: the chat-templated prompt, then the
    response and the end-of-turn token the policy wrote."""
    text, start, end, _ = render_pair(tokenizer, prompt, response)
    return text[:start], text[:end] + tokenizer.eos_token


def sr_of_text(model, tokenizer, text):
    from srgrpo.metrics import stable_rank

    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=model.device)
    return stable_rank(StableRankScorer(model, tokenizer).hidden_states(ids, torch.ones_like(ids))[0]).item()


def test_concurrent_requests_match_the_in_process_scorer(server, tiny_model, tokenizer):
    expected = StableRankScorer(tiny_model, tokenizer).score([p for p, _ in PAIRS], [r for _, r in PAIRS])
    batches_before = server.scorer.batches
    results, errors = {}, []
    barrier = threading.Barrier(len(PAIRS) + 1)

    def client(i):
        try:
            prompt, query = templated(tokenizer, *PAIRS[i % len(PAIRS)])
            barrier.wait(timeout=30)
            if i == len(PAIRS):  # one client sends its text without prompts: the whole query is scored
                results[i] = post(server, json.dumps({"query": [PAIRS[0][1]]}))
            else:
                results[i] = post(server, json.dumps({"query": [query], "prompts": [prompt], "labels": ["x"]}))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PAIRS) + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, value in enumerate(expected):
        status, body = results[i]
        assert status == 200 and body["rewards"] == pytest.approx([value], rel=1e-5) and body["scores"] == body["rewards"]
    status, body = results[len(PAIRS)]
    assert status == 200 and body["rewards"] == pytest.approx([sr_of_text(tiny_model, tokenizer, PAIRS[0][1])], rel=1e-5)
    # Five concurrent requests were scored in fewer batches than requests.
    assert server.scorer.batches - batches_before < len(PAIRS) + 1


def test_one_request_with_many_queries(server, tiny_model, tokenizer):
    sent = [templated(tokenizer, p, r) for p, r in PAIRS]
    status, body = post(server, json.dumps({"query": [q for _, q in sent], "prompts": [p for p, _ in sent]}))
    expected = StableRankScorer(tiny_model, tokenizer).score([p for p, _ in PAIRS], [r for _, r in PAIRS])
    assert status == 200 and body["rewards"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "malformed JSON"),
    (b"\xff\xfe", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"{}", 400, "missing field 'query'"),
    (b'{"query": [1, 2]}', 400, "list of strings"),
    (b'{"query": []}', 400, "'query' is empty"),
    (b'{"query": ["a", "  "]}', 400, "query 1 is empty"),
    (b'{"query": ["ab"], "prompts": ["a", "b"]}', 400, "1 queries but 2 prompts"),
    (b'{"query": ["ab"], "prompts": [3]}', 400, "'prompts' must be a list of strings"),
    (b'{"query": ["hello"], "prompts": ["bye"]}', 400, "does not start with its prompt"),
    (b'{"query": ["hello"], "prompts": ["hello"]}', 400, "empty response"),
    (b'{"query": ["' + b"x" * MAX_BODY + b'"]}', 413, "exceeds the limit"),
])
def test_malformed_requests_get_4xx_and_the_server_keeps_serving(server, body, status, message):
    got_status, got = post(server, body)
    assert got_status == status and message in got["error"]
    ok_status, ok = post(server, json.dumps({"query": ["Hello! How can I help you today?"]}))
    assert ok_status == 200 and isinstance(ok["rewards"][0], float)


def test_paths_and_health(server):
    status, body = post(server, b"{}", path="/nope")
    assert status == 404
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/health")
    response = conn.getresponse()
    health = json.loads(response.read())
    conn.close()
    assert response.status == 200 and health["status"] == "ok" and health["model"] == "tiny"
    assert health["options"]["span"] == "response"


def test_unscorable_text_is_null(server, tokenizer):
    prompt, _ = templated(tokenizer, "Hi", "x")
    status, body = post(server, json.dumps({"query": [prompt + tokenizer.eos_token], "prompts": [prompt]}))
    assert status == 200 and body["rewards"] == [None]


def test_client_functions(server, tiny_model, tokenizer):
    url = server.url
    prompt, query = templated(tokenizer, *PAIRS[0])
    expected = StableRankScorer(tiny_model, tokenizer).score([PAIRS[0][0]], [PAIRS[0][1]])[0]
    assert get_rewards([query], [prompt], url=url) == pytest.approx([expected], rel=1e-5)
    response = query[len(prompt):]
    assert compute_score("gsm8k", response, "7", {"prompt": prompt}, url=url) == pytest.approx(expected, rel=1e-5)
    assert compute_score("gsm8k", PAIRS[0][1], None, url=url) == pytest.approx(
        sr_of_text(tiny_model, tokenizer, PAIRS[0][1]), rel=1e-5)
    assert compute_score("gsm8k", "   ", None, url=url, unscored=-1.0) == -1.0
    with pytest.raises(RewardServerError, match="400"):
        get_rewards(["hello"], ["bye"], url=url)
    with pytest.raises(RewardServerError, match="cannot reach"):
        get_rewards(["hello"], url="http://127.0.0.1:9/get_reward", timeout=2)


def test_serve_command_rejects_bad_options(tiny_model_dir, capsys):
    from srgrpo.cli import main

    assert main(["serve", "--model", str(tiny_model_dir), "--max-body-bytes", "0"]) == 2
    assert "--max-body-bytes must be positive" in capsys.readouterr().err
