"""The head's loss: model/head_loss.py (chunked, no (B*T, V) logits kept) against the plain path, in one run.

    python bench/bench_head_loss.py [--steps 6] [--rounds 3] [--threads 1] [--width 128] [--batch 16] [--block 128]

A whole float32 training step (forward, backward, AdamW) of a 4-layer model on random tokens, each path in
turn, `--rounds` times, so a neighbour's load falls on both alike; the median tokens/s of each is printed. Last
line: `ratio_vs_plain=X` (chunked
tokens/s over plain tokens/s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.config import ModelConfig  # noqa: E402
from model.gpt import GPT  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_head_loss.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset=None, n_layer=4, n_head=4, n_embd=args.width, block_size=args.block), 50257)
    optimizer = model.configure_optimizer(0.1, 3e-3, (0.9, 0.95), "cpu")
    xy = torch.randint(0, 50257, (args.batch, args.block + 1))

    def step(plain: bool) -> None:
        _, loss = model(xy[:, :-1], xy[:, 1:], return_logits=plain)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rates: dict[str, list[float]] = {"plain": [], "chunked": []}
    for _ in range(args.rounds):
        for name in rates:
            step(name == "plain")  # untimed: first-call set-up
            start = time.perf_counter()
            for _ in range(args.steps):
                step(name == "plain")
            rates[name].append(args.steps * args.batch * args.block / (time.perf_counter() - start))
    print(
        f"4 layers, width {args.width}, batch {args.batch} x block {args.block}, {args.threads} thread(s), "
        f"{args.rounds} rounds of {args.steps} steps"
    )
    for name, values in rates.items():
        print(
            f"  {name:8s} {statistics.median(values):8.0f} tokens/s  (rounds: "
            + ", ".join(f"{v:.0f}" for v in values)
            + ")"
        )
    print(f"ratio_vs_plain={statistics.median(rates['chunked']) / statistics.median(rates['plain']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
