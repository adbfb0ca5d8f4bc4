"""Several processes, one training run: `torchrun` ranks, the process group, and its collectives.

`torchrun --nproc-per-node N -m geosam finetune ...` starts N copies of the command and tells
each its place through the environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). A run started any other way is rank 0 of 1 and never touches
`torch.distributed`. The process group uses NCCL when the rank trains on a GPU
(cuda:LOCAL_RANK) and Gloo on the CPU.

Tensors handed to the collectives live on the rank's training device, as NCCL requires.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from geosam.errors import DeviceError

T = TypeVar("T")

# Every rank encodes its share of the chips before the first barrier; a large set of scenes on
# a ViT-H encoder takes far longer than torch's default of 10 minutes (NCCL).
TIMEOUT = datetime.timedelta(hours=2)
BUCKET_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run.

    Attributes:
        rank: 0 .. world_size - 1 over all nodes; rank 0 writes the run's files.
        local_rank: the rank on this node, which picks the GPU (cuda:LOCAL_RANK).
        world_size: number of processes; 1 for a plain run.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """True when several processes share the run."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """True on the rank that writes files and logs."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """Items at positions rank, rank + world_size, ...: this rank's share (all for one)."""
        return list(items[self.rank :: self.world_size])


def launched() -> Ranks:
    """The ranks `torchrun` put in the environment; rank 0 of 1 without it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise DeviceError(
            f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({exc}); launch with torchrun"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DeviceError(
            f"RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world} do not fit; launch with torchrun"
        )
    return Ranks(rank, local, world)


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the run's process group for the block and always leave it, also on error.

    Nothing happens for a single process, or when the caller has already initialised
    `torch.distributed` (their group is used and left alone).
    """
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here."""
    dist.barrier()


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor, in place, by its sum over all ranks."""
    _bucketed(tensors, lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))


def broadcast_from_main(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor, in place, by rank 0's."""
    _bucketed(tensors, lambda flat: dist.broadcast(flat, src=0))


def gather_objects(value: T) -> list[T]:
    """`value` from every rank, in rank order (picklable Python objects)."""
    gathered: list[T] = [value] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def sum_gradients(parameters: Sequence[nn.Parameter], loss: torch.Tensor) -> float:
    """Sum the parameters' gradients and the loss over ranks; returns the summed loss.

    A rank whose chips did not reach a parameter adds zeros; a parameter no rank reached
    keeps no gradient, as in a single process (AdamW then leaves it alone).
    """
    device = parameters[0].device
    reached = torch.tensor([float(p.grad is not None) for p in parameters], device=device)
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
    total = loss.detach().float().reshape(1).to(device)
    all_reduce_sum([*grads, reached, total])
    for p, grad, hit in zip(parameters, grads, reached.tolist(), strict=True):
        p.grad = grad if hit else None
    return float(total)


def _bucketed(tensors: Sequence[torch.Tensor], op: Callable[[torch.Tensor], object]) -> None:
    """Run a collective `op` on the tensors flattened into a few messages of one dtype each."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or size >= BUCKET_BYTES):
            _flush(bucket, op)
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel() * t.element_size()
    if bucket:
        _flush(bucket, op)


@torch.no_grad()
def _flush(bucket: list[torch.Tensor], op: Callable[[torch.Tensor], object]) -> None:
    flat = torch.cat([t.reshape(-1) for t in bucket])
    op(flat)
    start = 0
    for t in bucket:
        t.copy_(flat[start : start + t.numel()].view_as(t))
        start += t.numel()
