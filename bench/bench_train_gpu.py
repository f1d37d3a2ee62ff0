"""GPU training throughput and MFU of the `gpt2` preset: the project's loop next to a plain bf16 loop, in one run.

    python bench/bench_train_gpu.py --shard PATH [--iters 30] [--skip 5] [--batch 16] [--block 1024]
        [--compile both|on|off] [--peak-tflops 989]

Needs CUDA. For each compile setting, the project's `train_stage` (dtype auto: bf16 on GPUs that have it, its
data loading, logging and the stage-end evaluation) and a plain loop (the same model, bf16 autocast, fused AdamW,
batches already on the GPU) train the same batches from the same initial weights. Tokens/s are from the median
step (the first `--skip` steps, compilation included, are left out). MFU = tokens/s * training FLOPs per token
(curriculum/compare/flops.py) / the GPU's peak dense bf16 FLOP/s (`--peak-tflops`; 989 for an H100 or H200 SXM,
by the vendor's datasheet). Prints one line per loop and compile setting, and last `ratio_vs_plain_loop=X`
(project / plain tokens/s, compiled where both ran compiled).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_train import EXPECT, StepTimer

from curriculum.compare.flops import flops_per_token
from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.batches import TrainWindows
from curriculum.training.config import TrainConfig
from curriculum.training.schedule import plan_stage, stage_schedule
from curriculum.training.trainer import StageData, train_stage
from data.shards import ShardWriter, read_shard
from model.config import ModelConfig
from model.gpt import GPT


def plain_loop(model_cfg: ModelConfig, cfg: TrainConfig, batches: list[torch.Tensor], lrs: list[float],
               compile: bool, device: str) -> list[float]:
    """nanoGPT's loop on the GPU: bf16 autocast, fused AdamW, no data loading; returns each step's seconds."""
    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg, EXPECT["vocab_size"]).to(device)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device)
    step_model = torch.compile(model) if compile else model
    seconds = []
    for it, xy in enumerate(batches):
        synchronize(device)
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lrs[it]
        with torch.autocast(device, dtype=torch.bfloat16):
            _, loss = step_model(xy[:, :-1], xy[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        seconds.append(time.perf_counter() - t0)
    return seconds


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shard", type=Path, required=True, help="a prepared train shard (GPT-2 BPE)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--compile", choices=["both", "on", "off"], default="both")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: only to check the script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_train_gpu.py needs a CUDA GPU; on a CPU use bench/bench_train.py")
    logging.basicConfig(level=logging.WARNING)
    torch.backends.cuda.matmul.allow_tf32 = True
    tokens = read_shard(args.shard, expect=EXPECT).tokens
    model_cfg = ModelConfig(preset="gpt2", block_size=args.block)
    per_token = flops_per_token(model_cfg, EXPECT["vocab_size"], args.block)
    curriculum = Curriculum(stages=[CurriculumStage(name="bench", dataset_key="roneneldan/TinyStories",
                                                    block_size=args.block, n_epochs=1)])
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{gpu}, torch {torch.__version__}; gpt2 preset, block {args.block}, batch "
          f"{args.batch}, {per_token / 1e9:.2f} GFLOP per token, peak {args.peak_tflops:g} TFLOP/s", flush=True)
    settings = {"both": [False, True], "on": [True], "off": [False]}[args.compile]
    ratio = None
    with tempfile.TemporaryDirectory(prefix="bench-train-gpu-") as folder:
        work = Path(folder)
        val = work / "val.bin"
        with ShardWriter(val, vocab_size=EXPECT["vocab_size"]) as writer:
            writer.write(np.asarray(tokens[: 2 * args.batch * args.block + 1]))
            writer.commit(tokenizer="r50k_base", eot_token=50256)
        for compile in settings:
            cfg = TrainConfig(batch_size=args.batch, max_iters=args.iters, eval_iters=2, eval_interval=10**6,
                              checkpoint_interval=10**6, device=args.device, compile=compile)
            plan = plan_stage(curriculum, 0, tokens.size, cfg)
            schedule = stage_schedule([plan], 0, cfg)
            windows = TrainWindows(tokens, args.block, args.batch, 1, cfg.seed, 0)
            batches = [torch.from_numpy(np.stack([tokens[i * args.block : (i + 1) * args.block + 1]
                                                  for i in windows.window_ids(it, 0)]).astype(np.int64)).to(args.device)
                       for it in range(args.iters)]
            plain = plain_loop(model_cfg, cfg, batches, [schedule.lr(it) for it in range(args.iters)], compile,
                               args.device)
            timer = StepTimer(args.skip)
            train_stage(curriculum, 0, StageData(train=args.shard, val=val), model_cfg, cfg,
                        work / f"run-{compile}", train_tokens={"bench": int(tokens.size)}, expect_tokenizer=EXPECT,
                        listener=timer)
            ours = plan.tokens_per_iter / statistics.median(s.step_seconds for s in timer.steps[args.skip :])
            theirs = plan.tokens_per_iter / statistics.median(plain[args.skip :])
            for name, tps in (("project loop", ours), ("plain bf16 loop", theirs)):
                mfu = tps * per_token / (args.peak_tflops * 1e12)
                print(f"{name:16s} compile={'on ' if compile else 'off'}: {tps:,.0f} tokens/s, MFU {100 * mfu:.1f} %",
                      flush=True)
            ratio = ours / theirs
    if args.device == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"ratio_vs_plain_loop={ratio:.2f}")


if __name__ == "__main__":
    main()
