"""Evaluation: the loss of a model on fixed, evenly spread windows of a shard, or the weighted mean over several."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from curriculum.training import distributed
from curriculum.training.batches import eval_window_ids, windows_to_batch
from curriculum.training.config import TrainConfig
from curriculum.training.device import Runtime


@torch.no_grad()
def evaluate(
    net: torch.nn.Module, tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, runtime: Runtime
) -> float:
    """Mean loss over fixed, evenly spread windows: the same windows every time, no random numbers drawn.

    With several processes, rank r evaluates batches r, r + W, ... and the totals are summed over ranks: the
    same batches as one process, so the same loss up to the order of one float64 sum."""
    ids = eval_window_ids(tokens.size, block_size, batch_size * n_batches)
    rank, world_size = distributed.world()
    was_training = net.training
    net.eval()
    total, count = 0.0, 0
    for start in range(rank * batch_size, ids.size, world_size * batch_size):
        x, y = windows_to_batch(tokens, ids[start : start + batch_size], block_size, runtime.torch_device)
        with runtime.autocast():
            _, loss = net(x, y, return_logits=False)
        total += loss.item() * y.numel()
        count += y.numel()
    net.train(was_training)
    summed_total, summed_count = distributed.sum_over_ranks([total, float(count)], runtime.torch_device)
    return summed_total / summed_count


def weighted_loss(net: torch.nn.Module, sets: Sequence[np.ndarray], weights: Sequence[float] | None, block_size: int,
                  cfg: TrainConfig, runtime: Runtime) -> float:
    """evaluate() on each token set (train.eval_iters batches of train.batch_size each): without `weights` the one
    set's loss; with them (a mixture's sources, however many) the mean weighted by them."""
    losses = [evaluate(net, tokens, block_size, cfg.batch_size, cfg.eval_iters, runtime) for tokens in sets]
    if weights is None:
        (loss,) = losses
        return loss
    return sum(w * loss for w, loss in zip(weights, losses, strict=True)) / sum(weights)
