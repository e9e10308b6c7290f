"""TRL's reward paths with `RemoteStableRankReward` against a live `srgrpo serve`: AsyncGRPOTrainer
(`trl.experimental.async_grpo`) trains 2 steps on a tiny model on the CPU, its rewards computed by
TRL's own AsyncRolloutWorker in the spawned child process (CUDA_VISIBLE_DEVICES="") that pickles
the reward; GRPOTrainer awaits the same object in process. Rewards equal in-process scoring.

What is stood in for, because it cannot run here: the vLLM server the rollout worker generates with
(a loopback `/v1/completions` that answers fixed responses with their token ids and log-probs), and
the NCCL weight transfer to it (a no-op `WeightTransferProtocol`)."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import SERVING_PAIRS
from srgrpo.scoring import StableRankScorer
from srgrpo.serving.client import RemoteStableRankReward

PAIRS = SERVING_PAIRS[:4]


def in_process(tiny_model, tokenizer, prompts, responses):
    return StableRankScorer(tiny_model, tokenizer).score(prompts, responses)


def test_remote_reward_is_picklable_and_async(server):
    from trl.trainer.utils import get_callable_name, is_async_callable

    reward = RemoteStableRankReward(server.url)
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.urls == [server.url + "/get_reward"]
    assert is_async_callable(reward) and get_callable_name(reward) == "RemoteStableRankReward"


def test_remote_reward_values_none_and_log_metric(server, tiny_model, tokenizer, monkeypatch):
    monkeypatch.delenv("SRGRPO_REWARD_URL", raising=False)
    with pytest.raises(ValueError, match="RemoteStableRankReward has no reward server URL"):
        RemoteStableRankReward()
    reward = RemoteStableRankReward(f"{server.url},{server.url}")
    logged = {}
    prompts = [[{"role": "user", "content": q}] for q, _ in PAIRS] + [[{"role": "user", "content": "Q"}]]
    completions = [[{"role": "assistant", "content": r}] for _, r in PAIRS] + [[{"role": "assistant", "content": ""}]]
    values = asyncio.run(reward(prompts=prompts, completions=completions, completion_ids=None,
                                log_metric=lambda k, v: logged.__setitem__(k, v), trainer_state=None))
    assert values[:-1] == pytest.approx(in_process(tiny_model, tokenizer, [q for q, _ in PAIRS], [r for _, r in PAIRS]), rel=1e-5)
    assert values[-1] is None and logged == {"srgrpo/unscored_frac": pytest.approx(1 / 5)}
    # plain-text prompts are sent as text: the prompt exactly as the policy read it
    text = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts[:2]]
    assert reward.call(text, [r for _, r in PAIRS[:2]]) == pytest.approx(values[:2], rel=1e-5)


class VLLMStandIn(ThreadingHTTPServer):
    """vLLM's OpenAI `/v1/completions` as TRL's rollout worker calls it (`return_token_ids`,
    `logprobs=0`): each request gets the next fixed response, as token ids with log-prob -1."""

    def __init__(self, tokenizer):
        answers = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for _, r in PAIRS]
        counter = iter(range(1 << 30))

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ids = answers[next(counter) % len(answers)]
                body = json.dumps({"choices": [{"token_ids": ids, "logprobs": {"token_logprobs": [-1.0] * len(ids)},
                                                "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class NoWeightTransfer:
    """The NCCL weight sync to vLLM (WeightTransferProtocol), which needs GPUs: consumes the weights."""

    def init_weight_transfer(self):
        pass

    def pause(self):
        pass

    def send_weights(self, iterator):
        for _ in iterator:
            pass

    def resume(self):
        pass

    def destroy(self):
        pass


def varlen_attention(q, k, v, cu_q, cu_k, max_q, max_k, softmax_scale=None, causal=True, window_size=(-1, -1), **_):
    """flash_attn_varlen_func's semantics on the CPU (the trainer fetches FlashAttention-3 from the
    kernel hub, GPU only): each segment's queries attend causally, bottom-right aligned, to its keys."""
    import torch
    import torch.nn.functional as F

    assert causal and tuple(window_size) == (-1, -1)
    out = torch.empty_like(q)
    repeat = q.shape[1] // k.shape[1]
    for i in range(len(cu_q) - 1):
        qa, qb, ka, kb = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        qi = q[qa:qb].transpose(0, 1)
        ki = k[ka:kb].transpose(0, 1).repeat_interleave(repeat, 0)
        vi = v[ka:kb].transpose(0, 1).repeat_interleave(repeat, 0)
        mask = torch.ones(qb - qa, kb - ka, dtype=torch.bool).tril(diagonal=(kb - ka) - (qb - qa))
        out[qa:qb] = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=softmax_scale).transpose(0, 1)
    return out


def test_the_attention_stand_in_is_causal_attention():
    """Two packed segments, grouped-query heads: each equals plain causal SDPA on its own, and a
    shorter query block attends bottom-right aligned (flash-attn's rule for a shared prefix)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    q, k, v = torch.randn(9, 4, 8), torch.randn(9, 2, 8), torch.randn(9, 2, 8)
    cu = torch.tensor([0, 5, 9], dtype=torch.int32)
    out = varlen_attention(q, k, v, cu, cu, 5, 5)
    for a, b in ((0, 5), (5, 9)):
        ref = F.scaled_dot_product_attention(q[a:b].transpose(0, 1), k[a:b].transpose(0, 1).repeat_interleave(2, 0),
                                             v[a:b].transpose(0, 1).repeat_interleave(2, 0), is_causal=True)
        assert torch.allclose(out[a:b], ref.transpose(0, 1), atol=1e-6)
    tail = varlen_attention(q[3:5], k[:5], v[:5], torch.tensor([0, 2]), torch.tensor([0, 5]), 2, 5)
    assert torch.allclose(tail, out[3:5], atol=1e-6)  # the last 2 queries over all 5 keys


class RecordingQueue:
    """The trainer's end of the rollout queue, recording each scored sample it takes."""

    def __init__(self, inner):
        self.inner, self.samples = inner, []

    def get(self, *args, **kwargs):
        sample = self.inner.get(*args, **kwargs)
        self.samples.append(sample)
        return sample

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.slow  # ~60 s here: the spawned child re-imports torch, transformers and trl
def test_async_grpo_trainer_trains_two_steps_with_the_remote_reward(server, tiny_model, tiny_model_dir, tokenizer, tmp_path,
                                                                    monkeypatch):
    import copy

    import torch
    from datasets import Dataset
    from trl.experimental.async_grpo import AsyncGRPOConfig, AsyncGRPOTrainer
    from types import SimpleNamespace

    from trl.experimental.async_grpo import async_grpo_trainer, async_rollout_worker, packing

    # GPU-only pieces on the way, none part of the reward path: the MFU metric's peak-FLOPs lookup
    # (torch.cuda.get_device_name, unconditionally), the FlashAttention-3 kernel of the packed
    # forward (from the kernel hub), and the vllm package check.
    monkeypatch.setattr(async_grpo_trainer, "get_peak_flops_per_device", lambda *a, **k: None)
    monkeypatch.setattr(packing, "_flash_attn", lambda: SimpleNamespace(flash_attn_varlen_func=varlen_attention))
    # The rollout worker refuses to start without the vllm package; its child only talks HTTP to vLLM.
    monkeypatch.setattr(async_rollout_worker, "is_vllm_available", lambda *a, **k: True)
    vllm = VLLMStandIn(tokenizer)
    from trl.chat_template_utils import qwen2_5_chat_template

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    # The policy's template: one TRL can parse responses of (ChatML, as the tiny tokenizer's); the
    # server keeps its own, as a reward server on another model would.
    tok.chat_template = qwen2_5_chat_template
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q, _ in PAIRS]})
    args = AsyncGRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=48, learning_rate=1e-3, vllm_server_base_url=vllm.url, token_budget=0,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, dataloader_num_workers=0,
        heartbeat_stale_after_s=600,
    )
    trainer = AsyncGRPOTrainer(model=str(tiny_model_dir), args=args, processing_class=tok, train_dataset=dataset,
                               reward_funcs=[RemoteStableRankReward(server.url)], weight_transfer=NoWeightTransfer())
    trainer.rollout_queue = recorded = RecordingQueue(trainer.rollout_queue)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    try:
        trainer.train()
    finally:
        vllm.shutdown()
    assert trainer.state.global_step == 2
    assert any(not torch.equal(before[n], p.detach()) for n, p in trainer.model.named_parameters())  # it learned
    assert recorded.samples
    prompts = [s.prompt[-1]["content"] for s in recorded.samples]
    completions = [s.completion[-1]["content"] for s in recorded.samples]
    rewards = [s.metrics["rewards/RemoteStableRankReward"] for s in recorded.samples]
    assert rewards == pytest.approx(in_process(tiny_model, tokenizer, prompts, completions), rel=1e-5, abs=1e-5)


class RecordingReward(RemoteStableRankReward):
    """The remote reward, keeping what TRL handed it and what it answered (for the comparison)."""

    def call(self, prompts, completions, log_metric=None, **kwargs):
        values = super().call(prompts, completions, log_metric, **kwargs)
        self.seen = getattr(self, "seen", []) + list(zip(prompts, completions, values))
        return values


def test_grpo_trainer_awaits_the_remote_reward(server, tiny_model, tiny_model_dir, tokenizer, tmp_path):
    """GRPOTrainer (in process) awaits the async reward on its loop, passes log_metric, and trains on
    the server's values."""
    import copy

    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q, _ in PAIRS]})
    reward = RecordingReward(server.url)
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=12, report_to="none", save_strategy="no", use_cpu=True, logging_steps=1)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args, processing_class=tok,
                          train_dataset=dataset, reward_funcs=[reward])
    trainer.train()
    assert len(reward.seen) >= 4
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert "srgrpo/unscored_frac" in logged and "rewards/RecordingReward/mean" in logged  # named after the class
    scored = [(p[-1]["content"], c[-1]["content"], v) for p, c, v in reward.seen if v is not None]
    assert scored, "every completion was unscored"
    want = in_process(tiny_model, tokenizer, [p for p, _, _ in scored], [c for _, c, _ in scored])
    assert [v for _, _, v in scored] == pytest.approx(want, rel=1e-5)
