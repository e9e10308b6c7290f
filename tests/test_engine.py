"""The forward engine: batching, layer taps with early stop, the pipelined stream (chunk offsets,
unscorable items, one transfer per batch, nothing lost on a crash), the threaded collation path."""

import pytest
import torch
from conftest import fail_on_batch

from srgrpo.engine import ForwardEngine, gather_spans
from srgrpo.text import EncodedPair


def items(lengths, problems=()):
    return [EncodedPair(list(range(3, 3 + n)), 1, n, False, "bad" if i in problems else None, 1, n)
            for i, n in enumerate(lengths)]


def last_state_sum(batch, key, states):
    """Per row: the sum of the hidden state at the row's last real token (a (B,) tensor) and the
    row's length (a (B, 2) tensor with its index), to check both result shapes come back."""
    rows = torch.arange(len(batch.indices), device=states.device)
    last = batch.attention_mask.sum(1) - 1
    total = states[rows, last].float().sum(-1)
    lengths = batch.attention_mask.sum(1).float()
    return {"sum": total, "pair": torch.stack([lengths, torch.tensor(batch.indices, device=states.device).float()], 1)}


def reference_sums(model, seqs):
    out = []
    with torch.no_grad():
        for ids in seqs:
            h = model.model(input_ids=torch.tensor([ids], device=model.device)).last_hidden_state
            out.append(h[0, -1].float().sum().item())
    return out


@pytest.mark.parametrize("prefetch", [False, True])
def test_stream_returns_every_item_once_with_results_independent_of_batching(tiny_model, prefetch):
    engine = ForwardEngine(tiny_model, pad_id=0, batch_size=3, prefetch=prefetch)
    chunk_a, chunk_b = items([5, 17, 2, 9], problems={2}), items([30, 4, 11])
    got = list(engine.stream([lambda: chunk_a, lambda: chunk_b], {"final": None}, last_state_sum))
    assert sorted(i for i, _, _ in got) == list(range(7))  # indices count across chunks
    unscorable = [i for i, _, values in got if values is None]
    assert unscorable == [2]
    expected = reference_sums(tiny_model, [e.input_ids for e in chunk_a + chunk_b])
    for index, item, values in got:
        if values is None:
            continue
        assert values["sum"] == pytest.approx(expected[index], rel=1e-4, abs=1e-4)
        assert values["pair"] == [len(item.input_ids), index]  # a (B, k) result comes back as a list


def test_batches_hold_similar_lengths_longest_first(tiny_model):
    engine = ForwardEngine(tiny_model, pad_id=0, batch_size=2)
    assert engine.plan(items([3, 40, 7, 38, 1], problems={4})) == [[1, 3], [2, 0]]


def test_taps_stop_after_the_deepest_wanted_layer(tiny_model):
    engine = ForwardEngine(tiny_model, pad_id=0)
    ran = []
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, layer in enumerate(engine.layers)]
    try:
        ids = torch.tensor([[5, 6, 7]], device=engine.device)
        seen = {}
        engine.run(ids, torch.ones_like(ids), {"first": engine.layer_module(1)}, seen.__setitem__)
        assert ran == [0] and seen["first"].shape == (1, 3, tiny_model.config.hidden_size)
        ran.clear()
        engine.run(ids, torch.ones_like(ids), {"first": engine.layer_module(1), "final": None}, seen.__setitem__)
        assert ran == [0, 1] and set(seen) == {"first", "final"}
    finally:
        for h in hooks:
            h.remove()
    with pytest.raises(ValueError, match="out of range"):
        engine.layer_module(99)


def test_a_crash_hands_over_the_batches_already_computed(tiny_model, monkeypatch):
    engine = ForwardEngine(tiny_model, pad_id=0, batch_size=2)
    fail_on_batch(monkeypatch, 3)
    received = []
    with pytest.raises(RuntimeError, match="simulated"):
        for index, _, values in engine.stream([lambda: items([9, 8, 7, 6, 5, 4])], {"final": None}, last_state_sum):
            received.append(index)
    assert sorted(received) == [0, 1, 2, 3]  # both finished batches, although results come one batch late


def test_gather_spans_zero_pads_and_masks():
    states = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    spans, mask = gather_spans(states, [1, 0], [3, 5])
    assert spans.shape == (2, 5, 3) and mask.tolist() == [[True, True, False, False, False], [True] * 5]
    assert torch.equal(spans[0, :2], states[0, 1:3]) and not spans[0, 2:].any()
    assert torch.equal(spans[1], states[1])
