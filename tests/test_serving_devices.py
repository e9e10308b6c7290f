"""`srgrpo serve --devices`: one model replica per device behind one URL, fed by one fair queue.
Two CPU replicas (`--devices cpu,cpu`) answer 128 concurrent clients with no error, both busy
(their own counts in /health and /metrics add up to the texts sent), with the rewards of in-process
scoring, i.e. of one replica."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import pytest

from conftest import SERVING_PAIRS
from srgrpo.scoring import StableRankScorer
from srgrpo.serving import launch
from srgrpo.serving.server import RewardServer, ServeConfig
from srgrpo.serving.worker import BatchingWorker, Job, parse_devices

aiohttp = pytest.importorskip("aiohttp")

SRC = str(Path(__file__).resolve().parents[1] / "src")
PAIRS = SERVING_PAIRS[:4]


def test_parse_devices():
    assert parse_devices("0,1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert parse_devices(" cuda:2 , 3 ") == ["cuda:2", "cuda:3"]
    with pytest.raises(ValueError, match="--devices must be"):
        parse_devices(" , ")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="found no GPU: use --devices cpu"):
            parse_devices("all")


def test_two_replicas_share_one_fair_queue(tiny_model, tokenizer):
    """In process: two scorers (their own tokenizer each) drain one job list; every text is scored
    once, by either replica, to the value one scorer gives."""
    import copy

    scorers = [StableRankScorer(tiny_model, tokenizer), StableRankScorer(copy.deepcopy(tiny_model), copy.deepcopy(tokenizer))]
    expected = StableRankScorer(tiny_model, tokenizer).score([p for p, _ in PAIRS], [r for _, r in PAIRS])
    worker = BatchingWorker(scorers, max_batch_texts=2, batch_wait_s=0)
    jobs = [Job([r for _, r in PAIRS], [[{"role": "user", "content": p}] for p, _ in PAIRS], responses_only=True)
            for _ in range(30)]
    for job in jobs:
        worker.submit(job)
    worker.start()
    worker.close(timeout=120)
    for job in jobs:
        assert job.values == pytest.approx(expected, rel=1e-5)
    stats = worker.replica_stats()
    assert [s["replica"] for s in stats] == [0, 1] and sum(s["texts"] for s in stats) == 30 * len(PAIRS)
    assert sum(s["batches"] for s in stats) == worker.batches


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_two_cpu_replicas_answer_128_concurrent_clients(tiny_model_dir, tiny_model, tokenizer):
    env = {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc, url, lines = launch.start_server(["--model", str(tiny_model_dir), "--port", "0", "--devices", "cpu,cpu",
                                            "--max-batch-texts", "8"], env=env, timeout=120)
    try:
        assert get_json(url + "/health")["replicas"][1]["device"] == "cpu"
        expected = StableRankScorer(tiny_model, tokenizer).score([p for p, _ in PAIRS], [r for _, r in PAIRS])
        errors, got = [], []

        async def one_client(c):
            i = c % len(PAIRS)
            payload = {"prompts": [[{"role": "user", "content": PAIRS[i][0]}]], "responses": [PAIRS[i][1]]}
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
                    async with session.post(url + "/get_reward", json=payload) as r:
                        r.raise_for_status()
                        got.append((i, (await r.json())["rewards"][0]))
            except Exception as err:  # counted: the target is zero
                errors.append(repr(err))

        async def main():
            await asyncio.gather(*(one_client(c) for c in range(128)))

        asyncio.run(main())
        assert errors == [] and len(got) == 128
        for i, value in got:
            assert value == pytest.approx(expected[i], rel=1e-5)
        replicas = get_json(url + "/health")["replicas"]
        assert [r["device"] for r in replicas] == ["cpu", "cpu"]
        assert all(r["texts"] > 0 and r["batches"] > 0 for r in replicas), replicas  # both busy
        assert sum(r["texts"] for r in replicas) == 128 + 0  # every text scored once
        with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
            metrics = response.read().decode()
        for r in replicas:
            line = f'srgrpo_replica_texts_total{{device="cpu",replica="{r["replica"]}"}} {float(r["texts"])}'
            assert line in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_one_replica_reports_its_device(tiny_model, tokenizer):
    srv = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0)).start()
    try:
        replicas = get_json(srv.url + "/health")["replicas"]
        assert len(replicas) == 1 and replicas[0]["device"] == str(tiny_model.device)
    finally:
        srv.stop()


def test_serve_refuses_bad_devices_before_loading_the_model(capsys):
    import torch

    from srgrpo.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --devices all is valid")
    assert main(["serve", "--model", "/nonexistent/model", "--devices", "all"]) == 2
    assert "--devices all found no GPU: use --devices cpu" in capsys.readouterr().err
