"""Collectives for terms that keep state across steps (CRD's memory and partition-function estimates).

Under data-parallel training (Lightning's DDP) each process sees its own part of the global batch. A term
whose state each process updated from its own part alone would drift apart across processes (and DDP's
buffer broadcast from rank 0 would then drop the other processes' updates). These helpers give every
process the whole global batch, in rank order, so that N processes with batch B update their state exactly
as one process with batch N * B does. Without an initialised process group they do nothing.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def process_rank_and_count() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rows(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """Each tensor's rows from every process, concatenated in rank order (processes may hold different row
    counts), and the position of this process's first row in them. Not differentiable: for state updates."""
    rank, count = process_rank_and_count()
    if count == 1:
        return list(tensors), 0
    device = tensors[0].device
    rows = torch.tensor([len(tensors[0])], device=device)
    all_rows = [torch.empty_like(rows) for _ in range(count)]
    dist.all_gather(all_rows, rows)
    sizes = [int(r) for r in all_rows]
    longest = max(sizes)
    gathered = []
    for tensor in tensors:
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))  # all_gather needs equal shapes
        padded[: len(tensor)] = tensor.detach()
        parts = [torch.empty_like(padded) for _ in range(count)]
        dist.all_gather(parts, padded)
        gathered.append(torch.cat([part[:size] for part, size in zip(parts, sizes)]))
    return gathered, sum(sizes[:rank])


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes (a copy; `tensor` itself unchanged); itself in one process."""
    if process_rank_and_count()[1] == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def gather_rows_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`'s rows from every process, in rank order, differentiable: a term computed on the whole global batch
    (MLKD's batch and class levels) sends each process's rows their gradient. Every process computes the same value,
    and the backward of all_gather sums the P processes' gradients into each one's rows; DDP's mean over processes
    then gives the gradient of that one value, as one process with the global batch. Training shares are equal
    (datamodules/sampling.py ProcessShard), which all_gather needs."""
    if process_rank_and_count()[1] == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(tensor))
