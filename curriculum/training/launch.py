"""Train one stage with several processes: torchrun as a child process group, rank 0's events replayed here.

The stage's checks run here first (a mistake is reported before anything starts). torchrun then runs
curriculum.training.distributed_worker on every rank; this process tails rank 0's events into `listener` (the
terminal bar, the UI's progress and metrics), forwards the workers' log to stderr, and returns the same result
as a one-process stage, read from the stage's end checkpoint. A failed rank fails this call with that rank's
error; leaving this call any other way (an exception, the task being cancelled) stops every rank.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from curriculum.config import ConfigError
from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig, check_batch_split
from curriculum.training.distributed_worker import die_with_parent
from curriculum.training.run_dir import fingerprint_hash
from curriculum.training.stop import TrainingStopped, stop_requested, training_loop
from curriculum.training.trainer import resolve_stage_start, train_stage
from curriculum.training.types import StageData, StageResult, TrainListener
from curriculum.training.worker_messages import ARGS_FILE, EVENTS_FILE, WorkerArgs, replay_lines
from model.config import ModelConfig

LOG_FILE = "torchrun.log"
PRINTED_FILE = "stdout.txt"
TAIL_LINES = 30


class DistributedTrainingError(RuntimeError):
    """A training process failed (or was killed); the message holds its error."""


def torchrun_command(train_cfg: TrainConfig, folder: Path, run_id: str) -> list[str]:
    nproc = train_cfg.resolved_nproc()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if train_cfg.nnodes == 1:
        command += ["--standalone"]
    else:
        assert train_cfg.rdzv_endpoint  # TrainConfig refuses nnodes > 1 without one
        command += [
            "--nnodes", str(train_cfg.nnodes), "--node-rank", str(train_cfg.node_rank), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", train_cfg.rdzv_endpoint, "--rdzv-id", run_id,
        ]
    return command + ["-m", "curriculum.training.distributed_worker", str(folder)]


def train_stage_launched(
    curriculum: Curriculum,
    stage_index: int,
    data: StageData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: str | Path,
    *,
    train_tokens: dict[str, int],
    expect_tokenizer: dict[str, Any],
    listener: TrainListener | None = None,
) -> StageResult:
    """train_stage with train_cfg.nproc processes here (and nnodes machines): same arguments, same result."""
    run_dir = Path(run_dir).resolve()
    world_size = train_cfg.resolved_nproc() * train_cfg.nnodes
    try:
        check_batch_split(train_cfg.batch_size, train_cfg.resolved_nproc(), train_cfg.nnodes)
    except ValueError as error:  # nproc=auto, resolved here: the config's own check could not know the count
        raise ConfigError(str(error)) from None
    kwargs: dict[str, Any] = {"train_tokens": train_tokens, "expect_tokenizer": expect_tokenizer}
    start = resolve_stage_start(curriculum, stage_index, data, model_cfg, train_cfg, run_dir, **kwargs)
    if start.finished is not None:  # nothing to train: no processes to start
        return train_stage(curriculum, stage_index, data, model_cfg, train_cfg, run_dir, listener=listener, **kwargs)
    listener = listener or TrainListener()
    # Counted as a training loop from here to the end of the cleanup, so a flow that stops waits for all of it.
    with training_loop():
        reason = stop_requested()
        if reason:  # the flow stopped before the ranks started: start none
            raise TrainingStopped(f"stage {start.stage.name!r} stopped before its {world_size} processes started "
                                  f"({reason}); run the same command again to resume")
        folder = Path(tempfile.mkdtemp(prefix="curriculum-ddp-"))
        try:
            args = WorkerArgs(curriculum=curriculum, stage_index=stage_index, data=data, model_cfg=model_cfg,
                              train_cfg=train_cfg, run_dir=run_dir, **kwargs)
            (folder / ARGS_FILE).write_text(args.model_dump_json())
            run_id = f"{fingerprint_hash(start.fingerprint)[:16]}-{stage_index}"
            _run_torchrun(torchrun_command(train_cfg, folder, run_id), folder, listener, world_size)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finished = resolve_stage_start(curriculum, stage_index, data, model_cfg, train_cfg, run_dir, **kwargs).finished
    if finished is None:
        raise DistributedTrainingError(f"torchrun ended without error but stage {start.stage.name!r} has no end "
                                       f"checkpoint under {run_dir}")
    return StageResult.from_checkpoint(finished)


def _run_torchrun(command: list[str], folder: Path, listener: TrainListener, world_size: int) -> None:
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", PYTHONUNBUFFERED="1")
    # N processes share the cores: idle OpenMP threads sleep rather than spin (flows/environment.py says why).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    root = str(Path(__file__).resolve().parents[2])  # workers import this checkout, wherever they start
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    log_path, printed_path = folder / LOG_FILE, folder / PRINTED_FILE
    with (log_path.open("wb") as log_out, log_path.open("rb") as log_in, printed_path.open("wb") as printed_out,
          printed_path.open("rb") as printed_in):
        proc = subprocess.Popen(command, env=env, stdout=printed_out, stderr=log_out, start_new_session=True,
                                preexec_fn=die_with_parent)
        events = _EventReader(folder / EVENTS_FILE)
        pending = b""
        try:
            while True:
                code = proc.poll()
                events.replay(listener)
                sys.stderr.write(log_in.read().decode(errors="replace"))
                # Printed here, whole lines at a time, the stage transition message reaches what captures this
                # process's prints (the Prefect task's log_prints: the run's logs in the UI), as with one process.
                pending += printed_in.read()
                lines, _, pending = pending.rpartition(b"\n")
                if lines:
                    print(lines.decode(errors="replace"), flush=True)
                if code is not None:
                    break
                reason = stop_requested()
                if reason:  # the ranks are stopped below (finally); they resume from their last checkpoint
                    raise TrainingStopped(
                        f"training with {world_size} processes stopped ({reason}); the stage resumes from its last "
                        f"checkpoint (one every train.checkpoint_interval iterations): run the same command again"
                    )
                time.sleep(0.2)
            if pending:
                print(pending.decode(errors="replace"), flush=True)
        finally:
            _stop(proc)
    if code != 0:
        raise DistributedTrainingError(_failure_message(folder, code, world_size))


def _stop(proc: subprocess.Popen) -> None:
    """torchrun and its workers: SIGTERM (torchrun stops its workers), then SIGKILL of what is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _failure_message(folder: Path, code: int, world_size: int) -> str:
    errors = sorted(folder.glob("error-rank*.txt"))
    if errors:
        detail = "\n".join(f"--- {path.stem}:\n{_tail(path.read_text())}" for path in errors)
    else:  # killed without a traceback (a signal, out of memory): torchrun says which rank and how
        detail = f"--- torchrun:\n{_tail((folder / LOG_FILE).read_text(errors='replace'))}"
    return (f"training with {world_size} processes failed: torchrun exited with code {code}; every rank was "
            f"stopped. Running again resumes from the stage's last checkpoint.\n{detail}")


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


class _EventReader:
    """Reads the events rank 0 appends, a whole line at a time."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def replay(self, listener: TrainListener) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(self.offset)
            self.offset += replay_lines(file.read(), listener)
