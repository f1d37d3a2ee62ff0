"""Training throughput: the project's loop next to a plain fp32 PyTorch loop of the same model, in one run.

    python bench/bench_train.py [--iters 16] [--skip 2] [--checkpoint-interval 8] [--shard PATH] [--nproc 2]

Model 6 layers, 8 heads, 256 wide (the `small` preset), block 256, batch 8. The project's loop is
`train_stage` on a real TinyStories shard (GPT-2 BPE), with its data loading, logging, evaluation at the stage
end, an in-stage checkpoint and the stage-end checkpoint all inside the timed span, at `train.dtype=auto`.
The plain loop is fp32 with the same initial weights, learning rates and batches, held in memory
before timing: no data loading at all. It runs half before and half after the project's loop, so
a neighbour's load on a shared machine weighs on both alike. The first `--skip` iterations of each (one-time
kernel set-up) are not timed. Prints tokens/s of both, where the project's time goes, the first losses side by
side, and last `ratio_vs_fp32_loop=X`: project / plain fp32 tokens/s, each from its median step time (steadier
than wall-clock means on a shared machine; the wall-clock ratio is printed too), the project's with its
evaluation and checkpoint time added in full. With `--nproc N` the project's loop also runs with N processes
(torchrun, the same global batch; after the others, untimed by them) and its median-step tokens/s is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tiktoken
import torch

from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.batches import TrainWindows
from curriculum.training.config import TrainConfig
from curriculum.training.launch import train_stage_launched
from curriculum.training.schedule import plan_stage, stage_schedule
from curriculum.training.trainer import (
    CheckpointInfo,
    StageData,
    StageResult,
    StepInfo,
    TrainListener,
    train_stage,
)
from data.shards import ShardWriter, read_shard
from model.config import ModelConfig
from model.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
MIRROR = ROOT.parent / "shared" / "hub" / "roneneldan" / "TinyStories" / "data"
BLOCK, BATCH = 256, 8
EXPECT = {"tokenizer": "r50k_base", "vocab_size": 50257}


def write_tinystories_shard(path: Path, n_tokens: int) -> None:
    encoding = tiktoken.get_encoding("r50k_base")
    ids: list[int] = []
    for text in pq.read_table(next(MIRROR.glob("train-*.parquet")), columns=["text"]).column("text").to_pylist():
        ids.extend(encoding.encode_ordinary(text) + [encoding.eot_token])
        if len(ids) >= n_tokens:
            break
    with ShardWriter(path, vocab_size=encoding.n_vocab) as writer:
        writer.write(np.array(ids[:n_tokens], dtype=np.uint16))
        writer.commit(tokenizer="r50k_base", eot_token=encoding.eot_token)


class PlainLoop:
    """nanoGPT's loop at its simplest: fp32, batches already in memory, nothing else."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, batches: list[torch.Tensor], lrs: list[float]):
        torch.manual_seed(cfg.seed)  # the project's trainer seeds the same way: same initial weights
        self.model = GPT(model_cfg, EXPECT["vocab_size"])
        self.optimizer = self.model.configure_optimizer(cfg.weight_decay, cfg.learning_rate,
                                                        (cfg.beta1, cfg.beta2), "cpu")
        self.cfg, self.batches, self.lrs = cfg, batches, lrs
        self.it, self.losses, self.seconds = 0, [], []

    def run(self, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = self.lrs[self.it]
            xy = self.batches[self.it]
            _, loss = self.model(xy[:, :-1], xy[:, 1:])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.losses.append(loss.item())
            self.seconds.append(time.perf_counter() - t0)
            self.it += 1


class StepTimer(TrainListener):
    """Keeps every step's figures and when the timed part (after `skip` warm-up steps) starts and ends."""

    def __init__(self, skip: int):
        self.skip = skip
        self.steps: list[StepInfo] = []
        self.timed_from = self.end = 0.0

    def on_step(self, step: StepInfo) -> None:
        self.steps.append(step)
        if step.stage_iter == self.skip:
            self.timed_from = time.perf_counter()

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        print(f"  checkpoint {checkpoint.kind} at iteration {checkpoint.stage_iter}", flush=True)

    def on_stage_end(self, result: StageResult) -> None:
        self.end = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=16, help="iterations of each loop")
    parser.add_argument("--skip", type=int, default=2, help="first iterations left out of the timing")
    parser.add_argument("--checkpoint-interval", type=int, default=None, help="default: iters // 2")
    parser.add_argument("--shard", type=Path, help="a prepared train shard (default: built from TinyStories)")
    parser.add_argument("--nproc", type=int, default=1, help="also train with this many processes (torchrun)")
    parser.add_argument("--show-losses", type=int, default=8, help="first losses printed side by side")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:  # checkpoints of the small model: ~0.4 GB
        run(args, Path(folder))


def run(args: argparse.Namespace, work: Path) -> None:
    shard = args.shard or work / "train_bench_pretrain.bin"
    if args.shard is None:
        write_tinystories_shard(shard, (args.iters + 1) * BATCH * BLOCK + 1)
    val = work / "val_bench_pretrain.bin"
    tokens = read_shard(shard, expect=EXPECT).tokens
    with ShardWriter(val, vocab_size=EXPECT["vocab_size"]) as writer:  # evaluation reads 2 batches of it
        writer.write(np.asarray(tokens[: 2 * BATCH * BLOCK + 1]))
        writer.commit(tokenizer="r50k_base", eot_token=50256)

    curriculum = Curriculum(stages=[CurriculumStage(name="bench", dataset_key="roneneldan/TinyStories",
                                                    block_size=BLOCK, n_epochs=1)])
    model_cfg = ModelConfig(preset="small", block_size=BLOCK)
    cfg = TrainConfig(batch_size=BATCH, max_iters=args.iters, eval_iters=2, eval_interval=10**6,
                      checkpoint_interval=args.checkpoint_interval or max(args.iters // 2, 1), device="cpu")
    plan = plan_stage(curriculum, 0, tokens.size, cfg)
    schedule = stage_schedule([plan], 0, cfg)
    windows = TrainWindows(tokens, BLOCK, BATCH, 1, cfg.seed, 0)
    batches = [torch.from_numpy(np.stack([tokens[i * BLOCK : i * BLOCK + BLOCK + 1]
                                          for i in windows.window_ids(it, 0)]).astype(np.int64))
               for it in range(args.iters)]
    plain = PlainLoop(model_cfg, cfg, batches, [schedule.lr(it) for it in range(args.iters)])
    first_half = args.iters // 2
    print(f"plain fp32 loop: {first_half} iterations ...", flush=True)
    plain.run(first_half)

    timer = StepTimer(args.skip)
    started = time.perf_counter()
    result = train_stage(curriculum, 0, StageData(train=shard, val=val), model_cfg, cfg, work / "run",
                         train_tokens={"bench": int(tokens.size)}, expect_tokenizer=EXPECT, listener=timer)
    total = timer.end - started
    print(f"plain fp32 loop: {args.iters - first_half} more iterations ...", flush=True)
    plain.run(args.iters - first_half)

    timed = timer.steps[args.skip :]
    tokens_timed = len(timed) * plan.tokens_per_iter
    step_seconds = sum(s.step_seconds for s in timed)
    data_seconds = sum(s.data_seconds for s in timed)
    other = (timer.end - timer.timed_from) - step_seconds  # evaluation, checkpoints, logging, listeners
    project_tps = tokens_timed / (timer.end - timer.timed_from)
    plain_tps = tokens_timed / sum(plain.seconds[args.skip :])
    # Neighbours' jobs on a shared machine slow some steps a lot: the median step is the steadier figure.
    # The project's figure still pays its evaluation and checkpoint time in full.
    project_median_tps = tokens_timed / (len(timed) * statistics.median(s.step_seconds for s in timed) + other)
    plain_median_tps = plan.tokens_per_iter / statistics.median(plain.seconds[args.skip :])
    dtype = json.loads((work / "run" / "runtime.jsonl").read_text().splitlines()[0])["dtype"]
    print()
    print(f"model: small preset (6 layers, 8 heads, 256 wide), block {BLOCK}, batch {BATCH}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"project loop: dtype {dtype}, {args.iters} iterations ({args.skip} untimed), "
          f"{project_tps:,.0f} tokens/s wall-clock, {project_median_tps:,.0f} tokens/s from the median step, "
          f"both including evaluation and checkpoints ({total:.1f} s in train_stage)")
    print(f"  training steps {step_seconds:.1f} s, of which data loading {data_seconds * 1e3:.1f} ms "
          f"({100 * data_seconds / step_seconds:.2f} % of step time); evaluation + checkpoints + logging "
          f"{other:.1f} s")
    print(f"plain fp32 loop: {plain_tps:,.0f} tokens/s wall-clock, {plain_median_tps:,.0f} tokens/s from the median "
          "step (in-memory batches)")
    print(f"wall-clock ratio {project_tps / plain_tps:.2f}")
    print(f"first losses (iteration: project {dtype} | plain fp32):")
    for i in range(min(args.show_losses, args.iters)):
        ours, theirs = timer.steps[i].loss, plain.losses[i]
        print(f"  {i + 1:3d}: {ours:.4f} | {theirs:.4f}  (diff {ours - theirs:+.4f})")
    print(f"final project train loss {result.train_loss:.4f}, val loss {result.val_loss:.4f}")
    if args.nproc > 1:
        many = StepTimer(args.skip)
        train_stage_launched(curriculum, 0, StageData(train=shard, val=val), model_cfg,
                             cfg.model_copy(update={"nproc": args.nproc}), work / f"run-{args.nproc}",
                             train_tokens={"bench": int(tokens.size)}, expect_tokenizer=EXPECT, listener=many)
        steps = many.steps[args.skip :]
        many_tps = plan.tokens_per_iter / statistics.median(s.step_seconds for s in steps)
        print(f"project loop, {args.nproc} processes (torchrun, {max((os.cpu_count() or 1) // args.nproc, 1)} "
              f"threads each): {many_tps:,.0f} tokens/s from the median step, "
              f"{many_tps / (plan.tokens_per_iter / statistics.median(s.step_seconds for s in timed)):.2f}x "
              "the one-process loop's")
    print(f"ratio_vs_fp32_loop={project_median_tps / plain_median_tps:.2f}")


if __name__ == "__main__":
    main()
