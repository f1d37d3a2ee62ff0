"""Which tokens go into each batch: seeded epochs of train windows, fixed windows for evaluation.

Every batch is a pure function of (seed, stage, iteration, micro-step): resuming needs no saved data
state beyond the iteration number, and evaluation draws no random numbers, so it cannot shift training.
"""

from __future__ import annotations

import numpy as np
import torch


class TrainWindows:
    """Batches of block_size+1 token windows; epoch e is a permutation seeded by (seed, stage_index, e).

    Windows are read as one stream, epoch after epoch. Iteration `it` takes the stream's sequences
    [it * S, (it + 1) * S), S = batch_size * grad_accum; micro-step m takes the m-th batch_size of them.
    With several processes, batch_size is still the global batch: rank r of W takes the r-th of W equal
    slices of it, so W processes train on exactly the sequences one process does.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        stage_index: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size % world_size:
            raise ValueError(
                f"train.batch_size={batch_size} does not divide by the {world_size} training processes: batch_size "
                "is the global batch, split evenly over processes; pick a multiple of nproc * nnodes"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.seed = seed
        self.stage_index = stage_index
        self.rank, self.world_size = rank, world_size
        self.rank_batch = batch_size // world_size
        self.windows = max(tokens.size - 1, 0) // block_size
        self.seqs_per_iter = batch_size * grad_accum
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def position(self, stage_iter: int) -> dict[str, int]:
        """Where iteration `stage_iter` starts reading, for checkpoints and logs."""
        sample = stage_iter * self.seqs_per_iter
        return {"sample": sample, "epoch": sample // self.windows, "window_in_epoch": sample % self.windows}

    def _order_of(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:  # an epoch's permutation is computed once, when the stream reaches it
            rng = np.random.default_rng((self.seed, self.stage_index, epoch))
            self._order = rng.permutation(self.windows)
            self._epoch = epoch
        return self._order

    def window_ids(self, stage_iter: int, micro_step: int) -> np.ndarray:
        """This rank's windows of the micro-batch (all of them with one process)."""
        first = stage_iter * self.seqs_per_iter + micro_step * self.batch_size + self.rank * self.rank_batch
        ids = np.empty(self.rank_batch, dtype=np.int64)
        for i, sample in enumerate(range(first, first + self.rank_batch)):
            ids[i] = self._order_of(sample // self.windows)[sample % self.windows]
        return ids

    def batch(self, stage_iter: int, micro_step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return windows_to_batch(self.tokens, self.window_ids(stage_iter, micro_step), self.block_size, device)


class MixedWindows(TrainWindows):
    """TrainWindows over several sources (a mixed stage), each drawn in proportion to its weight.

    The stream's samples are dealt in blocks of MIX_BLOCK: block b holds each source's share of the block (its
    weight's share, rounded by largest remainder, so every block holds a source within one sample of its
    weight), shuffled by a permutation seeded by (seed, stage_index, MIX_STREAM, b). A source's samples read
    its own stream of windows, epoch after epoch, each epoch a permutation seeded by (seed, stage_index, source
    number, epoch). Every batch is a pure function of the iteration, as TrainWindows' is: resume needs nothing
    more, and with several processes each rank takes its slice of the same global batch.
    """

    MIX_BLOCK = 1024
    MIX_STREAM = 0x6D6978  # a seed word of its own, so the deal never reuses a source's permutation seeds

    def __init__(
        self,
        sources: list[np.ndarray],
        weights: list[float],
        block_size: int,
        batch_size: int,
        grad_accum: int,
        seed: int,
        stage_index: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(sources[0], block_size, batch_size, grad_accum, seed, stage_index, rank, world_size)
        self.sources = sources
        self.source_windows = [max(tokens.size - 1, 0) // block_size for tokens in sources]
        self.windows = sum(self.source_windows)
        shares = np.asarray(weights, dtype=np.float64) / float(np.sum(weights)) * self.MIX_BLOCK
        counts = np.floor(shares).astype(np.int64)
        for k in np.argsort(-(shares - counts), kind="stable")[: self.MIX_BLOCK - int(counts.sum())]:
            counts[k] += 1
        self.block_counts = counts
        self._deal_block = -1
        self._deal: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))
        self._source_orders: dict[int, tuple[int, np.ndarray]] = {}

    def _deal_of(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each sample of the block, how many samples of that source the block dealt before it)."""
        if block != self._deal_block:
            rng = np.random.default_rng((self.seed, self.stage_index, self.MIX_STREAM, block))
            source = rng.permutation(np.repeat(np.arange(len(self.sources)), self.block_counts))
            before = np.zeros(source.size, dtype=np.int64)
            for k in range(len(self.sources)):
                mine = source == k
                before[mine] = np.arange(int(mine.sum()))
            self._deal, self._deal_block = (source, before), block
        return self._deal

    def _source_order(self, k: int, epoch: int) -> np.ndarray:
        cached = self._source_orders.get(k)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng((self.seed, self.stage_index, k + 1, epoch))
            cached = (epoch, rng.permutation(self.source_windows[k]))
            self._source_orders[k] = cached
        return cached[1]

    def source_ids(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, window id within it) of the stream's samples first .. first+count-1."""
        sources = np.empty(count, dtype=np.int64)
        ids = np.empty(count, dtype=np.int64)
        for i, sample in enumerate(range(first, first + count)):
            block, at = divmod(sample, self.MIX_BLOCK)
            source, before = self._deal_of(block)
            k = int(source[at])
            n = block * int(self.block_counts[k]) + int(before[at])  # this source's sample number
            sources[i] = k
            ids[i] = self._source_order(k, n // self.source_windows[k])[n % self.source_windows[k]]
        return sources, ids

    def window_ids(self, stage_iter: int, micro_step: int) -> np.ndarray:
        raise TypeError("a mixed stage's windows come from several sources: use source_ids()")

    def batch(self, stage_iter: int, micro_step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        first = stage_iter * self.seqs_per_iter + micro_step * self.batch_size + self.rank * self.rank_batch
        sources, ids = self.source_ids(first, self.rank_batch)
        rows = np.stack([self.sources[k][i * self.block_size : i * self.block_size + self.block_size + 1]
                         for k, i in zip(sources, ids, strict=True)]).astype(np.int64)  # (B, T+1)
        return _to_device(rows, device)

    def position(self, stage_iter: int) -> dict[str, int]:
        position = super().position(stage_iter)
        sample = position["sample"]
        block, at = divmod(sample, self.MIX_BLOCK)
        source, _ = self._deal_of(block)
        for k in range(len(self.sources)):  # samples each source has given so far
            position[f"source_{k + 1}_samples"] = block * int(self.block_counts[k]) + int((source[:at] == k).sum())
        return position


def stage_windows(
    sources: list[np.ndarray], weights: list[float] | None, block_size: int, batch_size: int, grad_accum: int,
    seed: int, stage_index: int, *, rank: int = 0, world_size: int = 1,
) -> TrainWindows:
    """A stage's training windows: TrainWindows over its one train shard, or (`weights` given: a mixed stage,
    whatever its number of sources) MixedWindows over its sources' shards."""
    if weights is None:
        (tokens,) = sources
        return TrainWindows(tokens, block_size, batch_size, grad_accum, seed, stage_index, rank=rank,
                            world_size=world_size)
    return MixedWindows(sources, weights, block_size, batch_size, grad_accum, seed, stage_index, rank=rank,
                        world_size=world_size)


def windows_to_batch(
    tokens: np.ndarray, window_ids: np.ndarray, block_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and targets y (shifted by one), each (B, T), from windows starting at id * block_size."""
    starts = window_ids * block_size
    rows = np.stack([tokens[s : s + block_size + 1] for s in starts]).astype(np.int64)  # (B, T+1)
    return _to_device(rows, device)


def _to_device(rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xy = torch.from_numpy(rows)
    if device.type == "cuda":
        xy = xy.pin_memory().to(device, non_blocking=True)  # overlaps the copy with the previous step
    else:
        xy = xy.to(device)
    return xy[:, :-1], xy[:, 1:]  # (B, T), (B, T)


def eval_window_ids(n_tokens: int, block_size: int, n_windows: int) -> np.ndarray:
    """`n_windows` non-overlapping windows spread evenly over the tokens (all of them if there are fewer)."""
    available = max(n_tokens - 1, 0) // block_size
    if available == 0:
        return np.empty(0, dtype=np.int64)
    if available <= n_windows:
        return np.arange(available, dtype=np.int64)
    return np.unique(np.linspace(0, available - 1, n_windows).round().astype(np.int64))
