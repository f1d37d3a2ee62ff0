"""One torchrun worker: `python -m torch.distributed.run ... -m curriculum.training.distributed_worker <folder>`.

<folder> (made by curriculum.training.launch) holds args.json: train_stage's arguments. Every rank joins the
process group and runs the same train_stage; rank 0 also appends its listener events to events.jsonl, which the
launching task replays into its own listeners (worker_messages.py). A rank that fails writes its traceback to
error-rank<r>.txt.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from curriculum.training import trainer
from curriculum.training.worker_messages import ARGS_FILE, EVENTS_FILE, EventWriter, WorkerArgs


def error_file(folder: Path, rank: int) -> Path:
    return folder / f"error-rank{rank}.txt"


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies, even by SIGKILL (Linux; elsewhere a no-op). The launcher and
    torchrun each start their children in sessions of their own, out of reach of a kill of the parent's group:
    so a killed task takes torchrun with it, and a killed torchrun its workers, instead of leaving orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(folder: Path) -> None:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = WorkerArgs.model_validate_json((folder / ARGS_FILE).read_bytes())
    cfg = args.train_cfg
    local_rank = int(os.environ["LOCAL_RANK"])
    threads = cfg.threads or max((os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"]), 1)
    torch.set_num_threads(threads)
    use_cuda = cfg.device in ("cuda", "auto") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    # A rank lost on another machine leaves the others blocked in a collective: they give up after this long
    # (the backends' own defaults are 10 to 30 minutes), and torchrun then stops them all.
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=cfg.dist_timeout_s))
    rank = dist.get_rank()
    (folder / f"pid-rank{rank}").write_text(str(os.getpid()))  # for tests that kill one rank
    try:
        listener = EventWriter(folder / EVENTS_FILE) if rank == 0 else None
        trainer.train_stage(
            args.curriculum, args.stage_index, args.data, args.model_cfg, cfg, args.run_dir,
            train_tokens=args.train_tokens, expect_tokenizer=args.expect_tokenizer, listener=listener,
        )
    except BaseException:
        error_file(folder, rank).write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
