"""Many processes, one command: what srgrpo needs from a distributed launcher.

Under `torchrun --nproc_per_node N` or `accelerate launch` each process sees RANK, WORLD_SIZE and
LOCAL_RANK. Scoring commands then split their work across processes (one device each), gather the
results on the main process, and only the main process writes files. Without a launcher everything
here is a no-op (one process, rank 0).
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def launched_device() -> torch.device | None:
    """The device a launcher means for this process: cuda:LOCAL_RANK on a GPU machine; None
    without a launcher or without GPUs."""
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return torch.device("cuda", local_rank())
    return None


def init() -> None:
    """Join the launcher's process group (NCCL on GPUs, gloo on CPUs) once, if launched."""
    if not is_distributed() or not torch.distributed.is_available() or torch.distributed.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    torch.distributed.init_process_group(backend=backend)


def shutdown() -> None:
    """Leave the process group (whoever joined it: srgrpo, accelerate or TRL) before the interpreter
    exits. Left to interpreter teardown, gloo's worker threads can abort the process (SIGABRT,
    "terminate called without an active exception") after a run that otherwise succeeded."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        init()
        torch.distributed.barrier()


def gather_to_main(obj: T) -> list[T] | None:
    """Every process's `obj`, in rank order, on the main process; None on the others."""
    if not is_distributed():
        return [obj]
    init()
    out = [None] * world_size() if is_main() else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj: T) -> T:
    """The main process's `obj` on every process."""
    if not is_distributed():
        return obj
    init()
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: Sequence[T]) -> list[T]:
    """This process's share of `items` (every world_size-th item from its rank)."""
    return list(items[rank()::world_size()])


def sharded_rounds(items: Sequence[T], round_size: int, compute: Callable[[list[T]], list]) -> Iterator[list]:
    """Split `items` into rounds of `round_size` per process; in each round every process computes
    `compute(its share)`, and the main process receives every share's results (yielded as one
    list per round; the other processes get empty lists). Yielding after each round lets the caller
    save results as they come, so a crash loses at most one round."""
    step = max(round_size, 1) * world_size()
    for lo in range(0, len(items), step):
        mine = shard(items[lo : lo + step])
        results = compute(mine)
        gathered = gather_to_main(results)
        yield [r for part in gathered for r in part] if gathered is not None else []
