"""The run folder: its fingerprint (which curriculum and settings it belongs to), metrics.jsonl, runtime.jsonl.

    <run_dir>/run.json          fingerprint of the curriculum, model and training settings; git commit
    <run_dir>/runtime.jsonl     one row per training session: device, dtype, compile, torch version, threads
    <run_dir>/metrics.jsonl     one row per evaluation, in training order (the loss curve across stages)
    <run_dir>/token_ledger.json per stage and source: tokens planned and trained, epochs realised (ledger.py)
    <run_dir>/checkpoints/...   see curriculum/training/checkpoints.py
    <run_dir>/final/            the last stage's weights and config.json, for sampling and evaluation
    <run_dir>/tensorboard/      with train.loggers: TensorBoard event files (tensorboard_tracker.py)
    <run_dir>/mlflow_run.json   with train.loggers: the MLflow run this folder logs to (mlflow_tracker.py)
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curriculum.sources import LOCATION_FIELDS
from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.config import BOOKKEEPING_FIELDS, TrainConfig
from data.atomic import atomic_write_text
from data.checksums import json_sha256
from data.errors import UserError
from data.web.urls import redact_all
from model.config import ModelConfig

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
RUNTIME_FILE = "runtime.jsonl"


class RunMismatchError(UserError, ValueError):
    """The run folder (or a checkpoint in it) belongs to another curriculum or other settings."""


class EarlierRunFound(UserError, FileExistsError):
    """The run folder holds an earlier run's checkpoints, and this run was told not to resume them."""


def run_fingerprint(curriculum: Curriculum, model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict[str, Any]:
    """Everything that changes the trained weights: every stage, the resolved model shape, and the training
    settings except bookkeeping (where to write, how often to evaluate or checkpoint, which device).

    Where a stage's files live is left out: a moved checkout or data folder still resumes, and what the
    files hold is checked anyway, by the shard checksums every checkpoint records."""
    model = model_cfg.with_block_size(curriculum.max_block_size)
    return {
        "curriculum": {  # stage `urls` may carry `user:password@`: run.json keeps them redacted
            stage.name: redact_all(stage.model_dump(mode="json", exclude=_fingerprint_exclude(stage)))
            for stage in curriculum.stages
        },
        "stage_order": [stage.name for stage in curriculum.stages],
        "model": model.model_dump(mode="json", exclude={"preset"}),
        "train": train_cfg.model_dump(
            mode="json", exclude=set(BOOKKEEPING_FIELDS) | _unused_later_train_fields(train_cfg)
        ),
    }


def _fingerprint_exclude(stage: CurriculumStage) -> dict[str, Any]:
    """Locations (the stage's and each source's), and stage fields added after run folders existed while they
    are unset, so older folders still resume."""
    exclude: dict[str, Any] = {name: True for name in LOCATION_FIELDS}
    exclude |= {name: True for name in ("max_iters", "tokens", "batch_size", "lr", "sources", "id_field")
                if getattr(stage, name) is None}
    if stage.sources:
        exclude["sources"] = {index: set(LOCATION_FIELDS) | ({"id_field"} if source.id_field is None else set())
                              for index, source in enumerate(stage.sources)}
    return exclude


def _unused_later_train_fields(train_cfg: TrainConfig) -> set[str]:
    """Training settings added after run folders existed, left out while they change nothing (unset, or for
    another schedule): older folders still resume."""
    unused = set() if train_cfg.tokens_per_step is not None else {"tokens_per_step"}
    if train_cfg.ema is None:
        unused.add("ema")
    return unused if train_cfg.lr_schedule == "wsd" else unused | {"decay_fraction"}


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    return json_sha256(fingerprint)


def describe_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """One line per differing leaf, `path: old -> new`, e.g. `train.learning_rate: 0.0006 -> 0.001`."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                lines.append(f"{sub}: {old[key]!r} -> (absent)")
            elif key not in old:
                lines.append(f"{sub}: (absent) -> {new[key]!r}")
            else:
                lines.extend(describe_differences(old[key], new[key], sub))
        return lines
    return [] if old == new else [f"{path or '(value)'}: {old!r} -> {new!r}"]


def mismatch_message(where: str, differences: list[str], run_dir: Path) -> str:
    shown = "\n".join(f"  - {line}" for line in differences[:20])
    more = f"\n  ... and {len(differences) - 20} more" if len(differences) > 20 else ""
    return (
        f"{where} was trained with other settings than this run (old -> new):\n{shown}{more}\n"
        "Resume with the settings it was started with (the same --type / --config and --set options), "
        f"or start over with --restart (moves {run_dir} aside to {run_dir.name}.old-<time>; nothing is deleted)."
    )


def _read_run_file(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunMismatchError(
            f"{path} is not valid JSON ({error}); it records which settings this run folder belongs to. "
            "Restore it, or start over with --restart (moves the folder aside)"
        ) from None


def check_run_dir(run_dir: Path, fingerprint: dict[str, Any]) -> bool:
    """Raise RunMismatchError if the folder was started with other settings; False if it has no run.json.

    Only the sections present in `fingerprint` are compared, so a caller may record more in run.json."""
    record = _read_run_file(run_dir)
    if record is None:
        return False
    stored = record.get("fingerprint")
    if not isinstance(stored, dict):  # run.json of an older layout, or edited by hand
        stored = {}
    differences = describe_differences({key: stored.get(key) for key in fingerprint}, fingerprint)
    if differences:
        raise RunMismatchError(mismatch_message(f"run folder {run_dir}", differences, run_dir))
    return True


def run_owner(run_dir: str | Path) -> str | None:
    """Who created the folder (e.g. a workflow run id), as given to prepare_run_dir; None if not recorded."""
    record = _read_run_file(Path(run_dir))
    return record.get("owner") if record else None


def prepare_run_dir(
    run_dir: str | Path, fingerprint: dict[str, Any], restart: bool = False, owner: str | None = None
) -> Path:
    """Make `run_dir` ready for a run with these settings and return it.

    A new folder records the fingerprint in run.json. An existing folder with the same fingerprint is resumed;
    one with a different fingerprint is refused with the list of differences, unless `restart`, which moves
    the old folder aside to `<run_dir>.old-<time>` (never deleting it) and starts a new one. `owner` is
    recorded in a new folder's run.json (see run_owner).
    """
    run_dir = Path(run_dir)
    if restart and run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
            n += 1
        run_dir.rename(aside)
        log.warning("--restart: moved the previous run folder %s aside to %s", run_dir, aside)
    if check_run_dir(run_dir, fingerprint):
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: its records decide what resumes
    record = {
        "fingerprint": fingerprint,
        "fingerprint_sha256": fingerprint_hash(fingerprint),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "owner": owner,
    }
    atomic_write_text(run_dir / RUN_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return run_dir


def git_commit() -> str | None:
    """The git commit of this code (with '+dirty' when files differ from it), or None outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def append_jsonl(path: Path, row: Mapping[str, Any]) -> None:
    # One short write per row: a kill leaves at most a torn last line, which read_jsonl skips.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s line %d is torn (a killed write); skipped", path, number)
    return rows


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / METRICS_FILE)


def rewind_metrics(run_dir: Path, stage_index: int, stage_iter: int) -> int:
    """Drop the rows written after the point training resumes from (stage_index, stage_iter), so the file
    holds each evaluation once even after a kill; returns how many rows were dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    rows = read_jsonl(path)
    kept = [row for row in rows if (row["stage_index"], row["stage_iter"]) <= (stage_index, stage_iter)]
    # Rewritten even when nothing is dropped: that also removes a torn last line.
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in kept))
    return len(rows) - len(kept)


def restore_stage_metrics(run_dir: Path, stage_index: int, rows: list[dict[str, Any]]) -> bool:
    """Put a finished stage's rows (kept in its end checkpoint) back into metrics.jsonl if they are missing
    there, e.g. after an earlier stage was retrained or the file was deleted; True if it wrote."""
    path = Path(run_dir) / METRICS_FILE
    current = read_jsonl(path)
    if [row["stage_iter"] for row in current if row["stage_index"] == stage_index] == [r["stage_iter"] for r in rows]:
        return False
    merged = [row for row in current if row["stage_index"] != stage_index] + rows
    merged.sort(key=lambda row: (row["stage_index"], row["stage_iter"]))
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in merged))
    return True
