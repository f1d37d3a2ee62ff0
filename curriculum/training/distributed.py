"""Which training process this is among several (torchrun DDP), and the few collectives the trainer needs.

Outside a torchrun worker (one process, or runs side by side in threads) there is no process group: rank 0 of
a world of 1, and every collective here is a no-op, so the one-process path runs exactly as without DDP.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


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


def wrap_for_training(model: torch.nn.Module, device: torch.device, *, compile: bool) -> tuple[torch.nn.Module,
                                                                                                torch.nn.Module]:
    """(the module that evaluates, the module that takes training steps), in training mode: `model` itself, or
    torch.compile's wrapper of it; the steps through DDP (gradients averaged over ranks) with several processes.
    Checkpoints read and write the plain `model`."""
    net = cast(torch.nn.Module, torch.compile(model)) if compile else model
    net.train()
    if world()[1] == 1:
        return net, net
    # The buffers (RoPE tables) are the same on every rank: no need to broadcast them at every forward.
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync: dict[str, Any] = {"forward_sync_buffers" if newer else "broadcast_buffers": False}
    return net, DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                        **no_buffer_sync)
