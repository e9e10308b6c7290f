"""verl 0.9.1's own reward code against a live `srgrpo serve` on loopback: its Hydra config composed
with the README's keys, a parquet file written with the README recipe read by its `RLHFDataset`,
a `DataProto` as its agent loop hands it on, and its `RewardLoopWorker` running each reward-loop
manager (naive, dapo, gdpo, rate_limited) on our async `compute_score`, and its `remote` manager
(Ray actors) on `compute_score_sync`; the older `verl.workers.reward_manager` classes on
`compute_score_sync`. The old top-level keys and a missing
URL end in an error, never in a silent fallback. (Only the generation is stood in for: vLLM/SGLang
cannot run here; the response ids are what a policy would have sampled.)"""

from __future__ import annotations

from pathlib import Path

import pytest

verl = pytest.importorskip("verl", reason="verl is installed in .venv-frameworks: bash scripts/test.sh runs this file there")
pytest.importorskip("verl.experimental.reward_loop")

import torch  # noqa: E402

from conftest import SERVING_PAIRS  # noqa: E402
from srgrpo.scoring import StableRankScorer  # noqa: E402
from srgrpo.serving import client as client_module  # noqa: E402
from srgrpo.serving.server import RewardServer, ServeConfig  # noqa: E402
from srgrpo.serving.verl_main import compose  # noqa: E402

CLIENT_FILE = str(Path(client_module.__file__))
PAIRS = SERVING_PAIRS


@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    """The README recipe: one verl_record per question, written with pandas."""
    import pandas as pd

    path = tmp_path_factory.mktemp("verl-data") / "train.parquet"
    pd.DataFrame([client_module.verl_record(q, i) for i, (q, _) in enumerate(PAIRS)]).to_parquet(path)
    return path


def readme_overrides(url, model_dir, parquet, manager="naive", name="compute_score", extra=()):
    return [f"reward.custom_reward_function.path={CLIENT_FILE}", f"reward.custom_reward_function.name={name}",
            f"+reward.custom_reward_function.reward_kwargs.url={url}", f"reward.reward_manager.name={manager}",
            f"actor_rollout_ref.model.path={model_dir}", f"data.train_files={parquet}", *extra]


def rollout_batch(config, tokenizer, parquet, empty: int | None = None):
    """verl's RLHFDataset and collate_fn on the parquet file, then what its single-turn agent loop
    adds: the chat-templated prompt ids (left-padded), the sampled response ids with the end-of-turn
    token (right-padded), and the attention mask over both."""
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(data_files=[str(parquet)], tokenizer=tokenizer, config=config.data, processor=None)
    rows = [dataset[i] for i in range(len(dataset))]
    data = DataProto.from_single_dict(collate_fn(rows))
    prompt_ids = [tokenizer.apply_chat_template(list(r["raw_prompt"]), add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"] for r in rows]
    response_ids = [tokenizer(PAIRS[r["extra_info"]["index"]][1], add_special_tokens=False)["input_ids"]
                    + [tokenizer.eos_token_id] for r in rows]
    if empty is not None:
        response_ids[empty] = [tokenizer.eos_token_id]
    pad, P, R = tokenizer.pad_token_id, max(map(len, prompt_ids)), max(map(len, response_ids))
    prompts = torch.tensor([[pad] * (P - len(p)) + p for p in prompt_ids])
    responses = torch.tensor([r + [pad] * (R - len(r)) for r in response_ids])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (R - len(r))
                         for p, r in zip(prompt_ids, response_ids)])
    data.batch = None
    gen = DataProto.from_dict({"prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], 1),
                               "attention_mask": mask})
    gen.non_tensor_batch = data.non_tensor_batch
    return gen


def run_reward_loop(config, data):
    """RewardLoopWorker as RewardLoopManager runs it (a Ray actor there; the same class here), on
    verl's event loop; then the manager class's assembly of the per-token reward tensor."""
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.reward import resolve_reward_manager_cls
    from verl.utils.ray_utils import get_event_loop

    worker = RewardLoopWorker(config)
    outputs = get_event_loop().run_until_complete(worker.compute_score_batch(data))
    scores = [o["reward_score"] for o in outputs]
    return scores, outputs, resolve_reward_manager_cls(config).assemble_rm_scores(data, scores)


@pytest.mark.parametrize("manager", ["naive", "dapo", "gdpo", "rate_limited"])
def test_verl_reward_loop_sends_every_sample_to_the_server(manager, server, tiny_model_dir, tokenizer, parquet, expected):
    extra = ["+reward.max_concurrent=8"] if manager == "rate_limited" else []
    config = compose(readme_overrides(server.url, tiny_model_dir, parquet, manager, extra=extra))
    client_module.check_verl_config(config)  # the README's config passes our check
    before = server.counts["answered"]
    data = rollout_batch(config, tokenizer, parquet)
    scores, outputs, rm_scores = run_reward_loop(config, data)
    assert server.counts["answered"] - before == len(PAIRS)  # one request per sample
    order = [int(i) for i in data.non_tensor_batch["index"]]
    assert scores == pytest.approx([expected[i] for i in order], rel=1e-5)
    assert all("error" not in o["reward_extra_info"] for o in outputs)
    # the reward sits on each response's last valid token, as verl's trainer reads it
    last = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:].sum(1) - 1
    assert rm_scores[torch.arange(len(scores)), last].tolist() == pytest.approx(scores, rel=1e-5)
    assert rm_scores.sum().item() == pytest.approx(sum(scores), rel=1e-5)


def test_verl_two_servers_as_a_url_list(server, tiny_model, tokenizer, tiny_model_dir, parquet, expected):
    second = RewardServer(StableRankScorer(tiny_model, tokenizer), ServeConfig(port=0)).start()
    try:
        urls = f"[{server.url}/get_reward,{second.url}/get_reward]"
        config = compose(readme_overrides(urls, tiny_model_dir, parquet))
        before = (server.counts["answered"], second.counts["answered"])
        scores, _, _ = run_reward_loop(config, rollout_batch(config, tokenizer, parquet))
        counts = (server.counts["answered"] - before[0], second.counts["answered"] - before[1])
        assert sum(counts) == len(PAIRS) and min(counts) >= 1  # round robin over both
        assert sorted(scores) == pytest.approx(sorted(expected), rel=1e-5)
        second.stop()  # failover: the dead server's share goes to the live one
        scores, _, _ = run_reward_loop(config, rollout_batch(config, tokenizer, parquet))
        assert sorted(scores) == pytest.approx(sorted(expected), rel=1e-5)
    finally:
        second.stop()


def test_verl_empty_response_gets_the_unscored_value(server, tiny_model_dir, tokenizer, parquet, expected):
    config = compose(readme_overrides(server.url, tiny_model_dir, parquet))
    data = rollout_batch(config, tokenizer, parquet, empty=2)
    scores, _, _ = run_reward_loop(config, data)
    assert scores[2] == 0.0 and all(s > 0 for i, s in enumerate(scores) if i != 2)


def test_verl_old_top_level_keys_fail_instead_of_falling_back(server, tiny_model_dir, tokenizer, parquet):
    """The pre-0.7 keys: verl 0.9 composes them without complaint but never reads them. Our check
    refuses them; and without it, the recipe's data_source stops verl's rule reward at once."""
    overrides = [f"custom_reward_function.path={CLIENT_FILE}", "custom_reward_function.name=compute_score",
                 f"+custom_reward_function.reward_kwargs.url={server.url}", f"actor_rollout_ref.model.path={tiny_model_dir}",
                 f"data.train_files={parquet}"]
    config = compose(overrides)
    with pytest.raises(client_module.VerlConfigError, match="pre-0.7 key.*reward.custom_reward_function.path"):
        client_module.check_verl_config(config)
    before = server.counts["answered"]
    with pytest.raises(NotImplementedError, match="data_source='srgrpo'"):
        run_reward_loop(config, rollout_batch(config, tokenizer, parquet))
    assert server.counts["answered"] == before  # verl never called us


def test_verl_without_a_url_fails(tiny_model_dir, tokenizer, parquet, monkeypatch):
    monkeypatch.delenv(client_module.URL_ENV, raising=False)
    overrides = [f"reward.custom_reward_function.path={CLIENT_FILE}", f"actor_rollout_ref.model.path={tiny_model_dir}",
                 f"data.train_files={parquet}"]
    config = compose(overrides)
    with pytest.raises(client_module.VerlConfigError, match="no reward server URL"):
        client_module.check_verl_config(config)
    with pytest.raises(ValueError, match="reward_kwargs.url") as err:  # verl loads our file as its own module
        run_reward_loop(config, rollout_batch(config, tokenizer, parquet))
    assert type(err.value).__name__ == "NoRewardURL"
    # rate_limited catches every error of the reward function and writes 0.0 with the message:
    limited = compose(overrides + ["reward.reward_manager.name=rate_limited"])
    scores, outputs, _ = run_reward_loop(limited, rollout_batch(limited, tokenizer, parquet))
    assert scores == [0.0] * len(PAIRS) and all("no reward server URL" in o["reward_extra_info"]["error"] for o in outputs)


def test_verl_remote_manager_scores_through_ray_workers(server, tiny_model_dir, tokenizer, parquet, expected):
    """verl's `remote` manager (for CPU-heavy reward functions): it ships the synchronous function
    our file defines to a Ray actor (cloudpickle copies a function of a file-loaded module by value,
    with the globals it uses) and calls it there once per sample."""
    import ray

    extra = ["reward.num_workers=1"]  # one Ray actor: each takes a CPU, and the local cluster has one
    config = compose(readme_overrides(server.url, tiny_model_dir, parquet, "remote", "compute_score_sync", extra))
    client_module.check_verl_config(config)
    data = rollout_batch(config, tokenizer, parquet)
    before = server.counts["answered"]
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        scores, outputs, _ = run_reward_loop(config, data)
    finally:
        ray.shutdown()
    assert server.counts["answered"] - before == len(PAIRS)
    order = [int(i) for i in data.non_tensor_batch["index"]]
    assert scores == pytest.approx([expected[i] for i in order], rel=1e-5)


def test_check_verl_config_refuses_the_async_function_for_remote(server, tiny_model_dir, parquet):
    config = compose(readme_overrides(server.url, tiny_model_dir, parquet, "remote"))
    with pytest.raises(client_module.VerlConfigError, match="compute_score_sync"):
        client_module.check_verl_config(config)


@pytest.mark.parametrize("overrides, message", [
    (["reward.reward_manager.name=batch"], "not a verl 0.9 reward-loop manager"),
    (["reward.custom_reward_function.name=get_rewards"], "is not in srgrpo's client"),
])
def test_check_verl_config_refuses(overrides, message, server, tiny_model_dir, parquet):
    base = readme_overrides(server.url, tiny_model_dir, parquet)
    config = compose([o for o in base if not o.startswith(tuple(x.split("=")[0] for x in overrides))] + overrides)
    with pytest.raises(client_module.VerlConfigError, match=message):
        client_module.check_verl_config(config)


def test_check_verl_config_warns_on_one_request_at_a_time(server, tiny_model_dir, parquet):
    config = compose(readme_overrides(server.url, tiny_model_dir, parquet, "rate_limited"))
    with pytest.warns(UserWarning, match="max_concurrent"):
        client_module.check_verl_config(config)


def test_verl_older_reward_managers_call_the_sync_function(server, tokenizer, expected):
    """verl.workers.reward_manager (the managers before the reward loop, still shipped): naive per
    sample and batch, which call the function without awaiting."""
    pytest.importorskip("verl.workers.reward_manager")
    import numpy as np
    from verl import DataProto
    from verl.trainer.ppo.reward import _call_with_kwargs
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager
    import functools

    fn = functools.partial(_call_with_kwargs, client_module.compute_score_sync, {"url": server.url})
    prompt_ids = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"] for q, _ in PAIRS]
    response_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for _, r in PAIRS]
    pad, P, R = tokenizer.pad_token_id, max(map(len, prompt_ids)), max(map(len, response_ids))
    prompts = torch.tensor([[pad] * (P - len(p)) + p for p in prompt_ids])
    responses = torch.tensor([r + [pad] * (R - len(r)) for r in response_ids])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (R - len(r))
                         for p, r in zip(prompt_ids, response_ids)])
    records = [client_module.verl_record(q, i) for i, (q, _) in enumerate(PAIRS)]
    data = DataProto.from_dict(
        {"prompts": prompts, "responses": responses, "attention_mask": mask},
        non_tensors={"data_source": np.array([r["data_source"] for r in records], dtype=object),
                     "reward_model": np.array([r["reward_model"] for r in records], dtype=object),
                     "extra_info": np.array([r["extra_info"] for r in records], dtype=object)})
    last = mask[:, P:].sum(1) - 1
    for cls in (NaiveRewardManager, BatchRewardManager):
        out = cls(tokenizer=tokenizer, num_examine=0, compute_score=fn)(data, return_dict=True)
        assert out["reward_tensor"][torch.arange(len(PAIRS)), last].tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_verl_main_refuses_old_keys_before_training(server, tiny_model_dir, parquet, tmp_path):
    """The launcher: verl's own main_ppo behind check_verl_config; the check fails before Ray starts.
    Run in tmp_path: hydra writes its outputs/ folder into the working directory."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "srgrpo.serving.verl_main", f"custom_reward_function.path={CLIENT_FILE}",
           f"actor_rollout_ref.model.path={tiny_model_dir}", f"data.train_files={parquet}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0 and "pre-0.7 key" in out.stderr


@pytest.mark.slow  # starts a local Ray cluster and a Ray actor that imports verl
def test_verl_reward_loop_manager_on_ray(server, tiny_model_dir, tokenizer, parquet, expected):
    """RewardLoopManager itself: Ray actors running RewardLoopWorker, the padded chunks, the
    rm_scores tensor the trainer reads."""
    import ray
    from verl.experimental.reward_loop import RewardLoopManager

    config = compose(readme_overrides(server.url, tiny_model_dir, parquet, extra=["reward.num_workers=2"]))
    data = rollout_batch(config, tokenizer, parquet)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = RewardLoopManager(config).compute_rm_score(data)
    finally:
        ray.shutdown()
    rm_scores = out.batch["rm_scores"]
    last = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:].sum(1) - 1
    order = [int(i) for i in data.non_tensor_batch["index"]]
    assert rm_scores[torch.arange(len(order)), last].tolist() == pytest.approx([expected[i] for i in order], rel=1e-5)
