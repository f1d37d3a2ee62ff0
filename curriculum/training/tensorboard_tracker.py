"""The TensorBoard side of the experiment trackers (trackers.py runs it on a thread of its own): scalars in event
files under `<run_dir>/tensorboard/`, one new file per session; each row is flushed once written, so a killed
session loses none that it sent. torch's SummaryWriter writes them (it needs the tensorboard package), imported on
the tracker's thread; a new session reads the files back with tensorboard's own reader to find where they end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


class TensorBoardTracker:
    """Scalars in event files under `folder`, as trackers.py drives a tracker."""

    name = "tensorboard"

    def __init__(self, folder: Path):
        self.folder, self.destination = folder, str(folder)
        self.writer: Any = None

    def open(self, last_key: str) -> int:
        from torch.utils.tensorboard import SummaryWriter

        last = last_event_step(self.folder, last_key)
        self.writer = SummaryWriter(log_dir=str(self.folder))  # a new event file per session
        return last

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, status: str | None) -> None:
        self.writer.close()


def last_event_step(folder: Path, key: str) -> int:
    """The last step of scalar `key` in the event files under `folder` (0: none)."""
    if not any(folder.glob("events.out.tfevents.*")):
        return 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: every event, none sampled away
    events.Reload()
    return max((event.step for event in events.Scalars(key)), default=0) if key in events.Tags()["scalars"] else 0
