"""Which training process this is among several (torchrun DDP), and the few collectives the trainer needs.

Outside a torchrun worker (one process, or runs side by side in threads) there is no process group: rank 0 of
a world of 1, and every collective here is a no-op, so the one-process path runs exactly as without DDP.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Rank 0 writes the run folder (checkpoints, metrics, final/); the other ranks only train and read."""
    return world()[0] == 0


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (itself with one process)."""
    if world()[1] == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world()[1]


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over all ranks, in float64 (evaluation's loss totals and token counts); `device` is
    where the backend reduces (NCCL: the rank's GPU)."""
    if world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def step_seed(seed: int, stage_index: int, stage_iter: int, rank: int) -> int:
    """Dropout seed of one rank's iteration with several processes: a pure function of where it is, so a
    killed run resumed at the same world size draws the same numbers without saving every rank's RNG."""
    return int(np.random.SeedSequence((seed, stage_index, stage_iter, rank)).generate_state(1)[0])
