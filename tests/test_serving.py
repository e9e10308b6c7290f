"""The reward server: answers equal to in-process scoring, every bad input a 4xx JSON error,
per-item results (unscored value, left-truncated prompts), auth, /health and /metrics, and the
batching worker's fairness, isolation and cancellation."""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading

import pytest
import references

from srgrpo.scoring import StableRankScorer
from srgrpo.serving.protocol import BadRequest, locate_response, parse_peak_bytes, parse_request, widest_character
from srgrpo.serving.server import RewardServer, ServeConfig
from srgrpo.serving.worker import BatchingWorker, Job
from srgrpo.text import render_pair

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Add 1/3 and 1/4.", "Add the numerators over a common denominator: 1/3 + 1/4 = 7/12."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Write code.", "def add(a, b):\n    return a + b\n"),
]
MAX_BODY = 4096
MAX_TEXTS = 8


@pytest.fixture(scope="module")
def server(tiny_model, tokenizer):
    config = ServeConfig(port=0, model_name="tiny", max_body_bytes=MAX_BODY, max_texts_per_request=MAX_TEXTS,
                         read_timeout=1.0, unscored_value=-1.5)
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), config).start()
    yield srv
    srv.stop()


def request(server, method, path, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(data) if "json" in kind else data.decode()
    finally:
        conn.close()


def post(server, payload, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(server, "POST", "/get_reward", body, headers)


def templated(tokenizer, prompt, response):
    """(prompt text, query text) as an RL engine sends them: the chat-templated prompt, then the
    response and the end-of-turn token the policy wrote."""
    text, start, end, _ = render_pair(tokenizer, prompt, response)
    return text[:start], text[:end] + tokenizer.eos_token


def expected_scores(tiny_model, tokenizer, pairs=PAIRS):
    """The pairs' stable ranks by the independent route (transformers' forward, float64 SVD)."""
    return references.pair_stable_ranks(tiny_model, tokenizer, pairs)


def test_one_request_with_many_queries_matches_in_process_scoring(server, tiny_model, tokenizer):
    sent = [templated(tokenizer, p, r) for p, r in PAIRS]
    status, body = post(server, {"query": [q for _, q in sent], "prompts": [p for p, _ in sent], "labels": ["x"] * 4})
    assert status == 200
    assert body["rewards"] == pytest.approx(expected_scores(tiny_model, tokenizer), rel=1e-5)
    assert body["scores"] == body["rewards"] and body["extra_logs"] == {"srgrpo_unscored": [0.0] * 4}
    # scored items carry no warning, except the short-span rule's note on a short response
    assert all(w is None or w.startswith("short response: scored with the") for w in body["warnings"])


def test_chat_messages_with_responses_match_in_process_scoring(server, tiny_model, tokenizer):
    messages = [[{"role": "user", "content": p}] for p, _ in PAIRS]
    status, body = post(server, {"prompts": messages, "responses": [r for _, r in PAIRS]})
    assert status == 200 and body["rewards"] == pytest.approx(expected_scores(tiny_model, tokenizer), rel=1e-5)


def test_without_prompts_the_whole_query_is_scored(server, tiny_model, tokenizer):
    text = PAIRS[0][1]
    expected = references.span_stable_rank(tiny_model, tokenizer(text, add_special_tokens=False)["input_ids"],
                                           0, None)
    status, body = post(server, {"query": text})
    assert status == 200 and body["rewards"] == pytest.approx([expected], rel=1e-5)


def test_unscorable_items_get_the_unscored_value_and_never_fail_their_neighbours(server, tiny_model, tokenizer):
    prompt, query = templated(tokenizer, *PAIRS[0])
    status, body = post(server, {
        "query": [query, prompt + tokenizer.eos_token, "", "   ", "no prompt in here at all", query],
        "prompts": [prompt, prompt, "", "", "a prompt that is not in the query", prompt],
    })
    expected = expected_scores(tiny_model, tokenizer, PAIRS[:1])[0]
    assert status == 200
    assert body["rewards"][0] == pytest.approx(expected, rel=1e-5) and body["rewards"][5] == body["rewards"][0]
    assert body["rewards"][1:5] == [-1.5] * 4  # the configured unscored value, a finite number
    assert body["extra_logs"]["srgrpo_unscored"] == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert body["warnings"][1] == "empty response" and "neither its prompt" in body["warnings"][4]


def test_a_prompt_cut_from_the_left_still_locates_the_response(server, tiny_model, tokenizer):
    """OpenRLHF keeps the last prompt tokens that fit and decodes them with the response: the query
    starts inside the prompt. The response is found, and scored in the context that was kept."""
    prompt, query = templated(tokenizer, *PAIRS[1])
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(query[len(prompt):], add_special_tokens=False)["input_ids"]
    kept = prompt_ids[-6:]
    cut_query = tokenizer.decode(kept + response_ids, skip_special_tokens=False)
    status, body = post(server, {"query": [cut_query], "prompts": [prompt]})
    assert status == 200 and "cut from the left" in body["warnings"][0]
    scored = response_ids[:-1]  # the end-of-turn id is not scored
    expected = references.span_stable_rank(tiny_model, kept + scored, len(kept), len(kept) + len(scored))
    assert body["rewards"] == pytest.approx([expected], rel=1e-5)


def test_locate_response_rules():
    prompt = "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n"
    assert locate_response(prompt + "Four.", prompt) == (len(prompt), None)
    at, note = locate_response("<s>" + prompt + "Four.", prompt)
    assert at == 3 + len(prompt) and "not at its start" in note
    at, note = locate_response(prompt[20:] + "Four.", prompt)
    assert at == len(prompt) - 20 and "cut from the left" in note
    at, note = locate_response("\ufffd" + prompt[21:] + "Four.", prompt)  # a character cut in half
    assert at == len(prompt) - 20
    assert locate_response("ant\nFour.", prompt)[0] is None  # too little of the prompt left to be sure


@pytest.mark.parametrize("text, width", [
    ("plain ascii, with \\n escapes", 1),
    ("caf\u00e9", 2),  # an upper bound: CPython keeps Latin-1 at one byte
    ("\u0101 past Latin-1", 2), ("\u6f22\u5b57", 2),
    ("one emoji \U0001F600 widens it all", 4),
])
def test_the_widest_character_is_found_in_raw_and_escaped_json(text, width):
    stored = max(1 if ord(c) < 256 else 2 if ord(c) < 65536 else 4 for c in text)  # CPython's bytes a character
    for ensure_ascii in (True, False):  # json.dumps escapes by default; other clients send UTF-8
        body = json.dumps({"query": [text]}, ensure_ascii=ensure_ascii).encode()
        assert widest_character(body) == width >= stored
    assert widest_character(b'{"query": ["\\uD83D\\uDE00"]}') == 4  # upper-case hex digits


def test_the_parse_estimate_covers_what_parsing_allocates():
    """parse_peak_bytes bounds what parse_request allocates, here as tracemalloc sees it (Python's own
    objects; the server's RSS test covers the parser's native copies): long texts of each width and
    bodies of many small JSON values, which take 20-60 times their size once parsed."""
    import tracemalloc

    n = 100_000
    bodies = {
        "ascii": json.dumps({"query": ["x" * n + " "], "prompts": ["x" * n]}),
        "emoji": json.dumps({"query": ["x" * n + "\U0001F600"]}, ensure_ascii=False),
        "empty lists in labels": '{"query": ["a b"], "labels": [' + ",".join(["[]"] * n) + "]}",
        "objects in labels": '{"query": ["a b"], "labels": [' + ",".join(['{"a": 1}'] * n) + "]}",
        "short texts": '{"query": [' + ",".join(['"ab"'] * n) + "]}",
        "chat messages": json.dumps({"responses": ["r"] * 2000, "prompts": [[{"role": "user", "content": "c"}] * 8] * 2000}),
    }
    for name, text in bodies.items():
        body = bytearray(text.encode())
        tracemalloc.start()
        try:
            parsed = parse_request(body)
        except BadRequest:
            parsed = None
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del parsed
        assert peak <= parse_peak_bytes(body), (name, peak, parse_peak_bytes(body))
        assert parse_peak_bytes(body) < 300 * len(body)  # and within the per-separator constant's reach


LONG = b'{"query": ["' + b"x" * MAX_BODY + b'"]}'


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "malformed JSON"),
    (b"\xff\xfe", 400, "malformed JSON"),
    (b"", 400, "malformed JSON"),
    (b'{"query": ["\\ud800"]}', 400, "malformed JSON"),  # a lone surrogate
    (b"[" * 2000 + b"]" * 2000, 400, "malformed JSON"),  # nesting deeper than the parser allows
    (b'{"query": ["a"], "labels": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, "malformed JSON"),
    (b"[1, 2]", 422, "JSON object"),
    (b'"text"', 422, "JSON object"),
    (b"{}", 422, "missing field 'query'"),
    (b'{"query": null}', 422, "missing field 'query'"),
    (b'{"query": [1, 2]}', 422, "list of strings"),
    (b'{"query": {"a": 1}}', 422, "list of strings"),
    (b'{"query": []}', 422, "'query' is empty"),
    (b'{"query": ["ab"], "prompts": ["a", "b"]}', 422, "1 query but 2 prompts"),
    (b'{"query": ["ab"], "prompts": [3]}', 422, "'prompts' item 0 must be a string"),
    (b'{"query": ["ab"], "prompts": [[{"role": "user", "content": "a"}]]}', 422, "chat messages go with 'responses'"),
    (b'{"responses": ["ab"]}', 422, "'responses' needs 'prompts'"),
    (b'{"query": ["a"], "responses": ["b"], "prompts": ["c"]}', 422, "not both"),
    (json.dumps({"query": ["a"] * (MAX_TEXTS + 1)}).encode(), 413, "exceed the limit of 8"),
    (LONG, 413, "exceeds the limit"),
])
def test_bad_input_gets_a_4xx_json_error_and_the_server_keeps_serving(server, body, status, message, tiny_model,
                                                                     tokenizer):
    got_status, got = post(server, body)
    assert got_status == status and message in got["error"], got
    text = "Hello! How can I help you today?"
    ok_status, ok = post(server, {"query": [text]})
    expected = references.span_stable_rank(tiny_model, tokenizer(text, add_special_tokens=False)["input_ids"], 0, None)
    assert ok_status == 200 and ok["rewards"] == pytest.approx([expected], rel=1e-5)


def test_wrong_paths_and_methods_get_json_errors(server):
    status, body = request(server, "POST", "/nope", b"{}")
    assert status == 404 and "POST /get_reward" in body["error"]
    status, body = request(server, "GET", "/get_reward")
    assert status == 405 and "error" in body


def test_a_chunked_body_over_the_limit_gets_413(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/get_reward")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for _ in range(8):
                chunk = b"x" * 1024
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the rest is sent
        response = conn.getresponse()
        assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_a_body_that_never_arrives_gets_408_and_frees_the_connection(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"query\": ")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"did not arrive" in body


def test_a_connection_that_sends_no_request_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert sock.recv(4096) == b""  # closed by the server after read_timeout (1 s here)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(4096) == b""
    assert post(server, {"query": ["Hello! How can I help you today?"]})[0] == 200


def test_health_and_metrics(server):
    status, health = request(server, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "tiny"
    assert health["feature"] == "stable_rank" and health["unscored_value"] == -1.5
    assert health["options"]["span"] == "response"
    post(server, {"query": ["Hello! How can I help you today?"]})
    status, text = request(server, "GET", "/metrics")
    assert status == 200
    for name in ("srgrpo_requests_total{status=\"200\"}", "srgrpo_queue_texts", "srgrpo_batch_texts_bucket",
                 "srgrpo_request_seconds_bucket", "srgrpo_texts_total", "srgrpo_unscored_texts_total"):
        assert name in text


def test_an_api_key_is_required_when_set(tiny_model, tokenizer):
    import base64

    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0, api_key="s3cret")).start()
    try:
        payload = {"query": ["Hello! How can I help you today?"]}
        status, body = post(srv, payload)
        assert status == 401 and "API key" in body["error"]
        assert post(srv, payload, {"Authorization": "Bearer wrong"})[0] == 401
        assert post(srv, payload, {"Authorization": "Bearer s3cret"})[0] == 200
        basic = base64.b64encode(b"srgrpo:s3cret").decode()
        assert post(srv, payload, {"Authorization": f"Basic {basic}"})[0] == 200
        assert request(srv, "GET", "/metrics")[0] == 401
        assert request(srv, "GET", "/health")[0] == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "reward-host"])
def test_a_non_loopback_address_needs_an_api_key(host):
    with pytest.raises(ValueError, match="API key"):
        ServeConfig(host=host).validate()
    ServeConfig(host=host, api_key="k").validate()
    ServeConfig(host="127.0.0.1").validate()
    ServeConfig(host="localhost").validate()


@pytest.mark.parametrize("field, value", [("unscored_value", math.nan), ("unscored_value", math.inf),
                                          ("feature", "nope"), ("max_texts_per_request", 0), ("read_timeout", 0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError):
        ServeConfig(**{field: value}).validate()


def test_another_feature_is_served(tiny_model, tokenizer):
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0, feature="mean_logprob")).start()
    try:
        prompt, query = templated(tokenizer, *PAIRS[0])
        status, body = post(srv, {"query": [query], "prompts": [prompt]})
        expected = references.mean_logprob(tiny_model, *references.pair_ids(tokenizer, *PAIRS[0]))
        assert status == 200 and body["rewards"] == pytest.approx([expected], rel=1e-5)
    finally:
        srv.stop()


# ---------------------------------------------------------------------- the worker on its own
def _texts(tokenizer, n):
    return [templated(tokenizer, *PAIRS[i % len(PAIRS)]) for i in range(n)]


def test_a_small_job_is_not_held_behind_a_large_one(tiny_model, tokenizer):
    worker = BatchingWorker(StableRankScorer(tiny_model, tokenizer), max_batch_texts=4, batch_wait_s=0)
    finished = []
    big_sent = _texts(tokenizer, 120)
    big = Job([q for _, q in big_sent], [p for p, _ in big_sent], on_done=lambda j: finished.append("big"))
    small = Job([big_sent[0][1]], [big_sent[0][0]], on_done=lambda j: finished.append("small"))
    worker.submit(big)
    worker.submit(small)
    worker.start()
    worker.close()
    assert finished == ["small", "big"]
    assert worker.batches == 31  # 121 texts in batches of at most 4: the small one rode in the first
    assert small.values == pytest.approx(big.values[:1], rel=1e-6)  # the same text, batched differently


def test_a_failing_item_gets_the_unscored_value_and_its_neighbours_are_scored(tiny_model, tokenizer):
    class Flaky(StableRankScorer):
        def iter_encoded_features(self, encoded, *args, **kwargs):
            if any(len(e.input_ids) == poison_length for e in encoded):
                raise RuntimeError("boom")
            return super().iter_encoded_features(encoded, *args, **kwargs)

    sent = _texts(tokenizer, 4)
    worker = BatchingWorker(Flaky(tiny_model, tokenizer), batch_wait_s=0)
    lengths = [len(worker.encode(Job([q], [p]), 0)[0].input_ids) for p, q in sent]
    poison_length = lengths[2]
    assert lengths.count(poison_length) == 1
    job = Job([q for _, q in sent], [p for p, _ in sent])
    worker.submit(job)
    worker.start()
    worker.close()
    expected = expected_scores(tiny_model, tokenizer)
    assert job.values[2] is None and "scoring failed: RuntimeError: boom" in job.warnings[2]
    assert [job.values[i] for i in (0, 1, 3)] == pytest.approx([expected[i] for i in (0, 1, 3)], rel=1e-5)


def test_a_cancelled_job_is_not_computed(tiny_model, tokenizer):
    worker = BatchingWorker(StableRankScorer(tiny_model, tokenizer), batch_wait_s=0)
    sent = _texts(tokenizer, 40)
    gone = Job([q for _, q in sent], [p for p, _ in sent], on_done=lambda j: pytest.fail("a cancelled job finished"))
    kept_done = threading.Event()
    kept = Job([sent[0][1]], [sent[0][0]], on_done=lambda j: kept_done.set())
    worker.submit(gone)
    worker.submit(kept)
    worker.cancel(gone)
    worker.start()
    worker.close()
    assert kept_done.is_set() and worker.batches == 1 and gone.values == [None] * 40
    assert worker.pending_texts == 0


def test_the_rest_of_a_request_whose_client_has_gone_is_skipped(tiny_model, tokenizer):
    """Synchronised on events, not on sleeps: the socket closes once scoring has begun; a one-text
    job queued after the server has cancelled the request finishes only once the worker has passed
    the cancelled request's remaining texts (round robin, the cancelled job ahead of it is dropped
    in the same collection), so the counts are final when it is done."""
    import re

    config = ServeConfig(port=0, max_batch_texts=2, batch_wait_ms=0)
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer, batch_size=2), config).start()
    worker = srv.app.state.worker
    scoring, cancelled, after = threading.Event(), threading.Event(), threading.Event()
    score, cancel = worker.scorer.iter_encoded_features, worker.cancel

    def iter_encoded_features(*args, **kwargs):
        scoring.set()
        return score(*args, **kwargs)

    def cancel_and_tell(job):
        cancel(job)
        cancelled.set()

    worker.scorer.iter_encoded_features, worker.cancel = iter_encoded_features, cancel_and_tell
    try:
        sent = _texts(tokenizer, 1000)
        body = json.dumps({"query": [q for _, q in sent], "prompts": [p for p, _ in sent]}).encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert scoring.wait(60)  # accepted and being scored
        assert cancelled.wait(60)
        worker.submit(Job([sent[0][1]], [sent[0][0]], on_done=lambda job: after.set()))
        assert after.wait(60)
        metrics = request(srv, "GET", "/metrics")[1]
        skipped = float(re.search(r"^srgrpo_skipped_texts_total (\S+)$", metrics, re.M).group(1))
        assert worker.pending_texts == 0 and 0 < skipped < 1000
        assert post(srv, {"query": ["Hello! How can I help you today?"]})[0] == 200
    finally:
        srv.stop()
