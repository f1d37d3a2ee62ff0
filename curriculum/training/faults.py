"""A test-only pause at a named point of training, so a test can SIGKILL the process exactly there.

Set CURRICULUM_PAUSE_AT="<point>:<stage_index>:<stage_iter>" and CURRICULUM_PAUSED_FILE=<path>: when training
reaches that point it writes the file and sleeps until killed. Points:
  step              after the optimizer step that completed iteration <stage_iter>
  checkpoint-write  inside a checkpoint write at <stage_iter>: files written, not yet renamed into place
Unset (always, outside tests), this costs one environment lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT_ENV = "CURRICULUM_PAUSE_AT"
PAUSED_FILE_ENV = "CURRICULUM_PAUSED_FILE"


def pause_point(point: str, stage_index: int, stage_iter: int) -> None:
    spec = os.environ.get(PAUSE_AT_ENV)
    if not spec or spec != f"{point}:{stage_index}:{stage_iter}":
        return
    Path(os.environ[PAUSED_FILE_ENV]).write_text(spec)
    while True:  # wait for the test's SIGKILL
        time.sleep(1)
