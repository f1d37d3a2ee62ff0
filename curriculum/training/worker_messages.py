"""What the launching task and its torchrun workers tell each other, as JSON: train_stage's arguments one way,
rank 0's listener events the other.

JSON rather than pickle: the project never unpickles anything (docs/security.md), and a pickle read back from a
folder anyone on the machine could write to would run whatever it holds. Every type here is a pydantic model or
a dataclass pydantic validates field by field, so a message that does not fit fails with the field named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig
from curriculum.training.types import CheckpointInfo, StageData, StageResult, StageStart, StepInfo, TrainListener
from model.config import ModelConfig

ARGS_FILE = "args.json"
EVENTS_FILE = "events.jsonl"

# A diverging run's loss is NaN or inf; JSON's own `null` would not read back as a float.
_FLOATS_AS_WRITTEN = ConfigDict(frozen=True, ser_json_inf_nan="constants", protected_namespaces=())


class WorkerArgs(BaseModel):
    """train_stage's arguments (curriculum.training.trainer.train_stage), the same for every rank."""

    model_config = _FLOATS_AS_WRITTEN

    curriculum: Curriculum
    stage_index: int
    data: StageData
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    run_dir: Path
    train_tokens: dict[str, int]
    expect_tokenizer: dict[str, Any]


E = TypeVar("E")


class _Event(BaseModel, Generic[E]):
    model_config = _FLOATS_AS_WRITTEN

    event: E


# TrainListener's methods and what each receives (MetricsRow is a TypedDict: a plain dict at run time).
_EVENTS: dict[str, type[_Event]] = {
    "on_stage_start": _Event[StageStart],
    "on_step": _Event[StepInfo],
    "on_eval": _Event[dict[str, Any]],
    "on_checkpoint": _Event[CheckpointInfo],
    "on_stage_end": _Event[StageResult],
}


def event_line(name: str, event: object) -> bytes:
    """One event as one line: `<listener method> <JSON>`."""
    return name.encode() + b" " + _EVENTS[name](event=event).model_dump_json().encode() + b"\n"


def replay_lines(data: bytes, listener: TrainListener) -> int:
    """Calls `listener` with each whole line's event; returns how many bytes that consumed (a last line still
    being written is left for the next call)."""
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        name, _, body = line.partition(b" ")
        method = name.decode()
        getattr(listener, method)(_EVENTS[method].model_validate_json(body).event)
    return end


class EventWriter(TrainListener):
    """Rank 0's events appended to EVENTS_FILE, flushed one by one so the launcher sees each as it comes."""

    def __init__(self, path: Path):
        self.file = path.open("ab")

    def _write(self, name: str, event: object) -> None:
        self.file.write(event_line(name, event))
        self.file.flush()

    def on_stage_start(self, start: StageStart) -> None:
        self._write("on_stage_start", start)

    def on_step(self, step: StepInfo) -> None:
        self._write("on_step", step)

    def on_eval(self, row: Any) -> None:
        self._write("on_eval", row)

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        self._write("on_checkpoint", checkpoint)

    def on_stage_end(self, result: StageResult) -> None:
        self._write("on_stage_end", result)
