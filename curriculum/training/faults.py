"""A test-only pause at a named point of training, so a test can SIGKILL the process exactly there.

Set CURRICULUM_PAUSE_AT="<point>:<stage_index>:<stage_iter>" and CURRICULUM_PAUSED_FILE=<path>: when training
reaches that point it appends a line to the file (so a test can wait for every rank) and sleeps until killed, or
until the test deletes the file (then it goes on).
Points:
  step              after the optimizer step that completed iteration <stage_iter>
  checkpoint-write  inside a checkpoint write at <stage_iter>: files written, not yet renamed into place
  fetch             (data preparation; give 0:0) as each stage's fetch starts, its folders locked
  shard-write       (data preparation; give 0:0) a stage's train and val shards written under temporary
                    names, neither renamed into place
Unset (always, outside tests), this costs one environment lookup.

Set CURRICULUM_NAN_AT="<stage_index>:<stage_iter>" and the loss of that iteration becomes NaN, as a diverging run's
would: the test of what training does with a non-finite loss.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT_ENV = "CURRICULUM_PAUSE_AT"
PAUSED_FILE_ENV = "CURRICULUM_PAUSED_FILE"
NAN_AT_ENV = "CURRICULUM_NAN_AT"


def pause_point(point: str, stage_index: int, stage_iter: int) -> None:
    spec = os.environ.get(PAUSE_AT_ENV)
    if not spec or spec != f"{point}:{stage_index}:{stage_iter}":
        return
    paused = Path(os.environ[PAUSED_FILE_ENV])
    with paused.open("a") as file:  # a line per process that pauses (every rank of a stage does): one write each
        file.write(f"{spec} pid {os.getpid()}\n")
    while paused.exists():  # wait for the test's SIGKILL, or for it to delete the file
        time.sleep(0.1)


def nan_loss_at(stage_index: int, stage_iter: int) -> bool:
    return os.environ.get(NAN_AT_ENV) == f"{stage_index}:{stage_iter}"
