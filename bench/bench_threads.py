"""CPU thread settings for training: tokens/s and CPU time (user, system) per thread count and OpenMP wait policy.

    python bench/bench_threads.py [--steps 12] [--rounds 2] [--threads 1,2]

Each variant trains the `small` preset (block 256, batch 8, float32, random tokens: only the arithmetic counts)
in a fresh process, since OpenMP reads OMP_WAIT_POLICY once, when it starts. Variants run in turns, `--rounds`
times, so a neighbour's load falls on all of them alike; the median of each is printed. System time well above
a few percent of user time is threads spinning while they wait for work. Last line:
`best=<threads>/<policy> ratio_vs_default=X` (its tokens/s over torch's defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from model.config import ModelConfig
from model.gpt import GPT
threads, steps = int(sys.argv[1]), int(sys.argv[2])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
model = GPT(ModelConfig(preset="small", block_size=256), 50257)
optimizer = model.configure_optimizer(0.1, 6e-4, (0.9, 0.95), "cpu")
xy = torch.randint(0, 50257, (8, 257))
def step():
    _, loss = model(xy[:, :-1], xy[:, 1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
step()  # one-time set-up, untimed
before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tokens_per_s": steps * 8 * 256 / wall, "user": after.ru_utime - before.ru_utime,
                  "system": after.ru_stime - before.ru_stime, "threads": torch.get_num_threads()}))
"""


def run_variant(threads: int, policy: str | None, steps: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default=",".join(str(n) for n in sorted({1, os.cpu_count() or 1})),
                        help="comma-separated thread counts besides torch's default (0)")
    args = parser.parse_args()
    variants = [(0, None)] + [(int(n), policy) for n in args.threads.split(",") for policy in (None, "PASSIVE")]
    results: dict[tuple[int, str | None], list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            results[variant].append(run_variant(*variant, args.steps))
    print(f"{os.cpu_count()} cores, small preset, block 256, batch 8, float32, {args.steps} steps x {args.rounds}")
    print(f"{'threads':>8} {'OMP_WAIT_POLICY':>16} {'tokens/s':>9} {'user s':>7} {'system s':>9} {'system/user':>12}")
    medians = {}
    for (threads, policy), runs in results.items():
        tps, user, system = (statistics.median(r[k] for r in runs) for k in ("tokens_per_s", "user", "system"))
        medians[(threads, policy)] = tps
        label = f"{runs[0]['threads']}" + (" (default)" if threads == 0 else "")
        print(f"{label:>8} {policy or 'unset':>16} {tps:9,.0f} {user:7.1f} {system:9.1f} {system / user:12.2f}")
    best = max(medians, key=lambda v: medians[v])
    print(f"best={best[0] or 'default'}/{best[1] or 'unset'} ratio_vs_default={medians[best] / medians[(0, None)]:.2f}")


if __name__ == "__main__":
    main()
