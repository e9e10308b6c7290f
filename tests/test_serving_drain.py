"""`srgrpo serve` as a process: it refuses unsafe settings before loading anything, and on SIGTERM
or SIGINT under load it answers every request it accepted, then exits 0."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from srgrpo.serving import launch

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.parametrize("argv, message", [
    (["--host", "0.0.0.0"], "set an API key"),
    (["--unscored-value", "nan"], "must be a finite number"),
    (["--max-texts-per-request", "0"], "max-texts-per-request must be positive"),
])
def test_serve_refuses_unsafe_settings_before_loading_the_model(argv, message, capsys, monkeypatch):
    from srgrpo.cli import main

    monkeypatch.delenv("SRGRPO_API_KEY", raising=False)
    assert main(["serve", "--model", "/nonexistent/model", *argv]) == 2
    assert message in capsys.readouterr().err


def start_server(model_dir, *extra):
    env = {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    try:
        return launch.start_server(["--model", str(model_dir), "--port", "0", *extra], env=env, timeout=120)
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_under_load_loses_no_accepted_request(tiny_model_dir, tokenizer, sig):
    proc, url, lines = start_server(tiny_model_dir, "--max-batch-texts", "16")
    port = int(url.rsplit(":", 1)[1])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Write a haiku."}], add_generation_prompt=True,
                                           tokenize=False)
    response = "Cold rain on red leaves, the garden bows its wet head, summer slips away. " * 6
    body = json.dumps({"query": [prompt + response] * 16, "prompts": [prompt] * 16}).encode()
    ok, refused, in_flight_at_signal, wrong = [], [], [], []
    signalled = threading.Event()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            sent_before_signal = not signalled.is_set()
            try:
                conn.request("POST", "/get_reward", body=body, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                data = json.loads(answer.read())
                if answer.status != 200 or len(set(data["rewards"])) != 1 or data["rewards"][0] <= 0:
                    wrong.append((answer.status, data))
                ok.append(1)
                if sent_before_signal and signalled.is_set():
                    in_flight_at_signal.append(1)
            except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                # Not accepted: the listening socket is closed, or the connection was idle at shutdown.
                refused.append(1)
                if signalled.is_set():
                    return
                time.sleep(0.05)
            finally:
                conn.close()

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(ok) < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    signalled.set()
    try:
        rc = proc.wait(120)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines)
    assert rc == 0, log
    assert wrong == []
    counts = re.search(r"stopped: (\d+) requests accepted, (\d+) answered", log)
    assert counts, log
    accepted, answered = int(counts.group(1)), int(counts.group(2))
    assert accepted == answered == len(ok)  # every accepted request was answered, and the answer arrived
    assert in_flight_at_signal, "no request was in flight when the signal came; the drain was not exercised"
