"""Where a stage starts: finished already, its newest usable in-stage checkpoint, or the previous stage's end.

A checkpoint is usable when every file matches its manifest (else: a warning, and the next older one), it was
written with this run's settings and shards (else: RunMismatchError, nothing changes), and it descends from the
previous stage's current end checkpoint (else it is stale: that stage was retrained since; a warning).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from curriculum.stages import Curriculum
from curriculum.training.checkpoints import END, Checkpoint, CheckpointError, in_stage_dirs, read_checkpoint, stage_dir
from curriculum.training.run_dir import RunMismatchError, describe_differences, fingerprint_hash, mismatch_message
from data.shards import read_header

log = logging.getLogger(__name__)


def previous_end(run_dir: Path, curriculum: Curriculum, stage_index: int, fingerprint: dict) -> Checkpoint | None:
    """The end checkpoint of the stage before `stage_index`, if it is there and intact."""
    if stage_index == 0:
        return None
    prev = curriculum.stages[stage_index - 1]
    checkpoint = _usable(stage_dir(run_dir, stage_index - 1, prev.name) / END, fingerprint, run_dir)
    return checkpoint


def finished_stage(
    run_dir: Path, curriculum: Curriculum, stage_index: int, fingerprint: dict, shards: dict[str, Path],
    start: Checkpoint | None,
) -> Checkpoint | None:
    """The stage's end checkpoint if the stage is finished: intact, and trained from `start` (the previous
    stage's end). A finished stage needs no data, but shards that are there must be the ones it trained on."""
    stage = curriculum.stages[stage_index]
    checkpoint = _usable(stage_dir(run_dir, stage_index, stage.name) / END, fingerprint, run_dir)
    if checkpoint is None:
        return None
    check_shards(checkpoint, {key: read_header(path)["sha256"] for key, path in shards.items() if path.is_file()},
                 run_dir)
    return checkpoint if _descends_from(checkpoint, start) else None


def newest_in_stage(
    run_dir: Path, curriculum: Curriculum, stage_index: int, fingerprint: dict, shard_sha256: dict[str, str],
    start: Checkpoint | None,
) -> Checkpoint | None:
    """The newest usable in-stage checkpoint of the stage, or None to start at its first iteration."""
    stage = curriculum.stages[stage_index]
    if stage_index > 0 and start is None:
        prev = curriculum.stages[stage_index - 1].name
        raise CheckpointError(
            f"stage {stage.name!r} starts from the end checkpoint of stage {prev!r}, which is missing or damaged "
            f"({stage_dir(run_dir, stage_index - 1, prev) / END}); train stage {prev!r} first (running the "
            "curriculum again retrains it), or start over with --restart"
        )
    for _, path in reversed(in_stage_dirs(stage_dir(run_dir, stage_index, stage.name))):
        checkpoint = _usable(path, fingerprint, run_dir)
        if checkpoint is None:
            continue
        check_shards(checkpoint, shard_sha256, run_dir)
        if _descends_from(checkpoint, start):
            return checkpoint
    return None


def check_settings(checkpoint: Checkpoint, fingerprint: dict[str, Any], run_dir: Path) -> None:
    """RunMismatchError if the checkpoint was trained with other settings than `fingerprint`."""
    if checkpoint.state.get("fingerprint_sha256") != fingerprint_hash(fingerprint):
        differences = describe_differences(checkpoint.state["fingerprint"], fingerprint)
        raise RunMismatchError(mismatch_message(f"checkpoint {checkpoint.path}", differences, run_dir))


def check_shards(checkpoint: Checkpoint, current: dict[str, str], run_dir: Path) -> None:
    """RunMismatchError if a shard the checkpoint trained on has changed since (re-prepared other data)."""
    recorded = {key: shard["sha256"] for key, shard in checkpoint.state["shards"].items()}
    changed = [
        f"{key}: {recorded[key][:12]}... -> {sha[:12]}..."
        for key, sha in current.items()
        if key in recorded and recorded[key] != sha
    ]
    if changed:
        raise RunMismatchError(
            f"checkpoint {checkpoint.path} was trained on other data than the shards there now (sha256 old -> new):\n"
            + "\n".join(f"  - {line}" for line in changed)
            + f"\nRestore the shards it was trained on, or start over with --restart (moves {run_dir} aside)."
        )


def warn_if_runtime_changed(checkpoint: Checkpoint, runtime: dict[str, Any]) -> None:
    differences = describe_differences(checkpoint.state["runtime"], runtime)
    if differences:
        log.warning(
            "resuming %s with another runtime than it was written with (%s): training continues, but the result "
            "will not be bit-identical to an uninterrupted run",
            checkpoint.path, "; ".join(differences),
        )


def _usable(path: Path, fingerprint: dict, run_dir: Path) -> Checkpoint | None:
    """The checkpoint at `path`: None if absent, None with a warning if damaged; RunMismatchError if it was
    written with other settings."""
    if not path.exists():
        return None
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        log.warning("%s is unusable, falling back to the previous good checkpoint: %s", path, error)
        return None
    check_settings(checkpoint, fingerprint, run_dir)
    return checkpoint


def _descends_from(checkpoint: Checkpoint, start: Checkpoint | None) -> bool:
    """Whether the checkpoint was trained from the weights `start` holds now (True when unknown)."""
    if start is None or checkpoint.state["start_weights_sha256"] == start.weights_sha256:
        return True
    log.warning(
        "%s was trained from other weights than %s holds now (that stage was retrained); not resuming from it",
        checkpoint.path, start.path,
    )
    return False
