"""The forward engine: every forward pass that srgrpo runs over token ids goes through here.

It owns what the scorer, the LLM judges, Best-of-N's free scoring, the GRPO reward and the reward
server would otherwise each do their own way:

- which module's output is "layer X" (`layer_module`), and a backbone run that hands each tapped
  module's output to a callback and stops after the deepest one (`run`): never the LM head, never
  every layer's states;
- length-sorted batches, right padding (real tokens keep positions 0..n-1, so a sequence's states do
  not depend on its batch) and device placement (`plan`, `collate`);
- a pipeline (`stream`) that overlaps host work with the device: the next chunk of inputs is encoded
  (templated and tokenised) and the next batch collated into pinned memory while the device runs the
  current one; each batch's results come back to the host in one transfer, one batch late, so the
  host never waits on the device between batches.

The engine knows nothing about stable rank: a consumer passes `on_states(batch, key, states)`, which
returns the (B,) or (B, k) device tensors it wants back, keyed as it likes (the scorer's keys are
typed: `srgrpo.scoring.Tap`, `SweepLayer`, `SpanCheck` and feature names); each row's results come
back under the same keys.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch

from srgrpo.text import EncodedPair


class _StopForward(Exception):
    """Raised by a forward hook once the deepest wanted layer has run, so later layers are skipped."""


def decoder_layers(backbone, num_layers: int) -> torch.nn.ModuleList:
    """The backbone's list of decoder blocks, whatever the architecture calls it."""
    for attr in ("layers", "h", "blocks", "layer"):
        layers = getattr(backbone, attr, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == num_layers:
            return layers
    raise ValueError(f"cannot find the {num_layers} decoder layers of {type(backbone).__name__}")


@dataclass
class Batch:
    """One collated batch: which items it holds and their tensors on the device."""

    indices: list[int]  # positions in the engine's input sequence
    items: list[EncodedPair]
    input_ids: torch.Tensor  # (B, T), right-padded
    attention_mask: torch.Tensor  # (B, T)

    def spans(self, kind: str = "scored") -> tuple[list[int], list[int]]:
        """[start, end) token positions per row: the scored span or the response ('response')."""
        if kind == "response":
            return [p.response_start for p in self.items], [p.response_end for p in self.items]
        return [p.start for p in self.items], [p.end for p in self.items]


def gather_spans(states: torch.Tensor, starts: Sequence[int], ends: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [start, end) of each sequence of `states` (B, T, d) as (B, S, d), zero-padded, with a
    (B, S) mask: the span matrices are only as large as the longest span."""
    width = max(max((e - s for s, e in zip(starts, ends)), default=1), 1)
    device = states.device
    offsets = torch.arange(width, device=device)
    starts_t = torch.tensor(list(starts), device=device)
    lengths = torch.tensor([e - s for s, e in zip(starts, ends)], device=device)
    positions = (starts_t[:, None] + offsets).clamp(min=0, max=states.shape[1] - 1)
    gathered = states.gather(1, positions[..., None].expand(-1, -1, states.shape[-1]))
    mask = offsets[None, :] < lengths[:, None]
    return gathered.masked_fill(~mask[..., None], 0), mask


def finish_logits(model, logits: torch.Tensor) -> torch.Tensor:
    """What a causal LM's forward does to the LM head's output beyond the projection, for the few
    architectures that do something (Cohere's logit_scale, Gemma-2's final logit soft-capping)."""
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        logits = logits * scale
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


class ForwardEngine:
    """Batched, device-aware forward passes of one model's backbone (see the module docstring)."""

    def __init__(self, model, pad_id: int | None = None, batch_size: int = 8, prefetch: bool | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self.pad_id = 0 if pad_id is None else pad_id
        self.backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        self.num_layers = model.config.get_text_config().num_hidden_layers
        self.layers = decoder_layers(self.backbone, self.num_layers)
        # Depth in the forward pass: the embeddings come first, then block j at j + 1.
        self._depth = {self.backbone.get_input_embeddings(): 0}
        self._depth.update({layer: j + 1 for j, layer in enumerate(self.layers)})
        # Collate the next batch in a thread while the device runs: pays on a GPU; on a CPU the
        # thread would only compete with the forward for cores. None: decide by the device.
        self.prefetch = prefetch

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ layers
    def layer_module(self, layer) -> torch.nn.Module | None:
        """The module whose output is H at `layer`, or None for the backbone's own output (after
        the final norm). `layer`: 'final_norm', 'last_block' or a hidden_states index."""
        if layer == "final_norm":
            return None
        if layer == "last_block":
            return self.layers[-1]
        n_states = self.num_layers + 1  # hidden_states[0..L]: embeddings, then each block's output
        if not -n_states <= layer < n_states:
            raise ValueError(f"layer {layer} out of range for a model with {self.num_layers} layers "
                             f"(valid: {-n_states}..{n_states - 1})")
        index = layer % n_states
        if index == self.num_layers:
            return None  # hidden_states[L] is taken after the final norm
        return self.backbone.get_input_embeddings() if index == 0 else self.layers[index - 1]

    def run(self, input_ids, attention_mask, taps: dict, on_output: Callable) -> None:
        """One forward pass that hands `on_output(key, states)` the output of each tapped module
        (`taps`: key -> module, or None for the backbone's final output). Stops after the deepest
        tapped block when the final output is not wanted; never runs the LM head."""
        by_module: dict[torch.nn.Module, list] = {}
        for key, module in taps.items():
            if module is not None:
                by_module.setdefault(module, []).append(key)
        deepest = None if any(m is None for m in taps.values()) else max(by_module, key=self._depth.__getitem__)
        handles = []
        for module, keys in by_module.items():
            def hook(_module, _inputs, output, keys=keys, stop=module is deepest):
                states = output[0] if isinstance(output, tuple) else output
                for key in keys:
                    on_output(key, states)
                if stop:
                    raise _StopForward

            handles.append(module.register_forward_hook(hook))
        with torch.inference_mode():
            try:
                out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            except _StopForward:
                return
            finally:
                for handle in handles:
                    handle.remove()
            for key, module in taps.items():
                if module is None:
                    on_output(key, out.last_hidden_state)

    # ------------------------------------------------------------------ batching
    def plan(self, items: Sequence[EncodedPair]) -> list[list[int]]:
        """Indices of the scorable items, longest first, in batches of similar length."""
        order = sorted((i for i, e in enumerate(items) if e.problem is None), key=lambda i: -len(items[i].input_ids))
        return [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    def collate_host(self, items: Sequence[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) on the host, right-padded; pinned when the device is a GPU,
        so the copy to the device can run asynchronously."""
        width = max(len(p.input_ids) for p in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        for row, p in enumerate(items):
            ids[row, : len(p.input_ids)] = torch.as_tensor(p.input_ids, dtype=torch.long)
        lengths = torch.as_tensor([len(p.input_ids) for p in items])
        attention = (torch.arange(width)[None, :] < lengths[:, None]).long()
        if self.device.type == "cuda":
            ids, attention = ids.pin_memory(), attention.pin_memory()
        return ids, attention

    def collate(self, items: Sequence[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) on the model's device, right-padded."""
        return self._to_device(*self.collate_host(items))

    def _to_device(self, ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ids.to(self.device, non_blocking=True), attention.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ the pipeline
    def stream(
        self,
        chunks: Iterable[Callable[[], Sequence[EncodedPair]]],
        taps: dict,
        on_states: Callable[[Batch, object, torch.Tensor], dict[str, torch.Tensor] | None],
    ) -> Iterator[tuple[int, EncodedPair, dict | None]]:
        """Yield (index, item, results) for every item of every chunk, in completion order.

        `chunks`: callables that each encode one chunk of the input (run one chunk ahead, in a
        background thread, so tokenisation overlaps the device's work); indices count across
        chunks. Unscorable items (`problem` set) come first in their chunk with results None.
        For each batch, `on_states(batch, key, states)` is called once per tapped output and returns
        device tensors of shape (B,) or (B, k) to bring back; they are copied to the host in one
        transfer per batch, which the host collects only after the next batch has been launched.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="srgrpo-encode") as encoder:
            chunk_iter = iter(chunks)

            def encode_next():  # the next chunk's encoding, started in the background; None at the end
                chunk = next(chunk_iter, None)
                return None if chunk is None else encoder.submit(chunk)

            offset = 0
            pending_chunk = encode_next()
            in_flight = None  # (batch, handle) of the batch whose results are on their way
            while pending_chunk is not None:
                items = list(pending_chunk.result())
                pending_chunk = encode_next()
                for i, item in enumerate(items):
                    if item.problem is not None:
                        yield offset + i, item, None
                for batch in self._batches(items, offset):
                    try:
                        handle = self._launch(batch, taps, on_states)
                    except BaseException:
                        if in_flight is not None:  # a crash loses no result already computed
                            yield from self._collect(*in_flight)
                        raise
                    if in_flight is not None:
                        yield from self._collect(*in_flight)
                    in_flight = (batch, handle)
                offset += len(items)
            if in_flight is not None:
                yield from self._collect(*in_flight)

    def _batches(self, items: Sequence[EncodedPair], offset: int) -> Iterator[Batch]:
        """Collated batches of one chunk; with prefetch (the default on a GPU) the next batch is
        collated in a thread while the device runs the current one."""
        plan = self.plan(items)
        if not (self.device.type == "cuda" if self.prefetch is None else self.prefetch):
            for idx in plan:
                chosen = [items[i] for i in idx]
                ids, attention = self.collate(chosen)
                yield Batch([offset + i for i in idx], chosen, ids, attention)
            return
        ready: queue.Queue = queue.Queue(maxsize=2)

        def produce():
            try:
                for idx in plan:
                    chosen = [items[i] for i in idx]
                    ready.put((idx, chosen, *self.collate_host(chosen)))
            finally:
                ready.put(None)

        producer = threading.Thread(target=produce, name="srgrpo-collate", daemon=True)
        producer.start()
        while (entry := ready.get()) is not None:
            idx, chosen, ids, attention = entry
            yield Batch([offset + i for i in idx], chosen, *self._to_device(ids, attention))
        producer.join()

    def _launch(self, batch: Batch, taps: dict, on_states) -> tuple[list[str], list[int], torch.Tensor, object]:
        """Run the batch and start the copy of its results to the host; returns what `_collect` needs."""
        results: dict[str, torch.Tensor] = {}

        def on_output(key, states):
            produced = on_states(batch, key, states)
            if produced:
                results.update(produced)

        self.run(batch.input_ids, batch.attention_mask, taps, on_output)
        names = list(results)
        if not names:
            return names, [], torch.empty(len(batch.indices), 0), None
        columns = [results[n].reshape(len(batch.indices), -1) for n in names]
        widths = [c.shape[1] for c in columns]
        packed = torch.cat([c.to(torch.float64) for c in columns], dim=1)
        if packed.device.type == "cuda":
            host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
            host.copy_(packed, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return names, widths, host, event
        return names, widths, packed, None

    def _collect(self, batch: Batch, handle) -> Iterator[tuple[int, EncodedPair, dict]]:
        """Wait for a batch's transfer and yield each row's results: a float for a (B,) tensor, a
        list of floats for a (B, k) one."""
        names, widths, host, event = handle
        if event is not None:
            event.synchronize()
        rows = host.tolist()
        bounds = [sum(widths[:j]) for j in range(len(widths) + 1)]
        for index, item, values in zip(batch.indices, batch.items, rows):
            yield index, item, {
                n: values[lo] if hi - lo == 1 else values[lo:hi]
                for n, lo, hi in zip(names, bounds, bounds[1:])
            }
