"""Checkpoint folders: written atomically, verified by checksum, loaded without unpickling anything.

    <run_dir>/checkpoints/<NN>-<stage>/iter-<NNNNNNN>/   in-stage, every checkpoint_interval iterations
    <run_dir>/checkpoints/<NN>-<stage>/end/              at the stage's end; the next stage starts from it

Each folder holds
    model.safetensors       the weights (the pretrained-folder layout of model/pretrained.py, with config.json)
    config.json             model shape, vocabulary and tokenizer
    optimizer.safetensors   AdamW moments and step per parameter, and the RNG states, as plain tensors
    ema.safetensors         only with train.ema: the average of the weights, under the tensor names of
                            model.safetensors (load_weights loads it into a model like the weights)
    state.json              counters (curriculum_stage_idx, epoch, iter_num, stage_iter), data position,
                            fingerprint, shards, loss bookkeeping and, for `end`, the stage's result
    manifest.json           SHA-256 of each file above; written last. Its own SHA-256 is the checkpoint's
                            checksum (StageResult.checkpoint_sha256).

A folder is written under a temporary name, every file fsynced, then renamed into place: a kill leaves
either the old state or the complete new folder, never a half-written one under a real name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from curriculum.training.faults import pause_point
from data.atomic import fsync_dir, fsync_file, is_stale_tmp, remove_stale_tmp, sha256_file, tmp_path_for
from data.errors import UserError
from model.gpt import GPT
from model.pretrained import CONFIG_FILE, WEIGHTS_FILE, load_weights, save_weights

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
END = "end"
OPTIMIZER_AND_RNG_FILE = "optimizer.safetensors"  # AdamW state and the RNG states (an older name, kept)
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
_ITER_DIR = re.compile(r"^iter-(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
EMA_FILE = "ema.safetensors"  # the weight average (train.ema), only in checkpoints of runs that keep one
# Every file of a checkpoint folder but the manifest, which lists exactly these (and EMA_FILE with train.ema).
CHECKPOINT_FILES = (WEIGHTS_FILE, OPTIMIZER_AND_RNG_FILE, CONFIG_FILE, STATE_FILE)


class CheckpointError(UserError, ValueError):
    """A checkpoint folder is incomplete, damaged or not from this run; the message says what to do."""


# Out of space, out of quota, or past a file-size limit (RLIMIT_FSIZE).
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _os_error_code(error: BaseException) -> int | None:
    """The errno behind a failed write: an OSError's own, or the one safetensors (Rust) reports in its message."""
    if isinstance(error, OSError):
        return error.errno
    match = re.search(r"\(os error (\d+)\)", str(error))
    return int(match.group(1)) if match else None


class CheckpointWriteError(UserError, OSError):
    """A checkpoint could not be written for lack of space; nothing of it is left under a real or temporary name."""

    def __init__(self, path: Path, code: int):
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:,.0f} MiB free there now"
        except OSError:
            free = "free space unknown"
        super().__init__(
            code,
            f"could not write checkpoint {path}: {os.strerror(code)} (a full disk, a quota or a file-size limit; "
            f"{free}). Nothing of it was kept. Free some space and run again: training resumes from the last "
            "checkpoint written",
        )


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str  # of manifest.json
    state: dict[str, Any]
    files: dict[str, str]  # file name -> sha256

    @property
    def weights_sha256(self) -> str:
        return self.files[WEIGHTS_FILE]


def stage_dir(run_dir: Path, stage_index: int, stage_name: str) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"{stage_index:02d}-{stage_name}"


def in_stage_dirs(folder: Path) -> list[tuple[int, Path]]:
    """(stage_iter, path) of the in-stage checkpoints in a stage folder, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _ITER_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def checkpoint_state(
    *, kind: str, stage: str, stage_index: int, stage_iter: int, iter_num: int, position: dict[str, Any],
    plan: dict[str, Any], fingerprint: dict[str, Any], fingerprint_sha256: str, start_weights_sha256: str | None,
    shards: dict[str, Any], tokenizer: dict[str, Any], runtime: dict[str, Any], progress: dict[str, Any],
    scaler: dict[str, Any] | None, result: dict | None, metrics: list[dict] | None, written_at: str,
) -> dict[str, Any]:
    """state.json of a checkpoint (read back by read_checkpoint, resume.py and the trainer): where in the run and
    the stage's data it is, the run it belongs to, the shards and tokenizer it was trained on, the loop's progress."""
    return {
        "kind": kind,
        "stage": stage,
        # Not stage_index: the field name of the reference design's checkpoints, whose fields these keep.
        "curriculum_stage_idx": stage_index,
        "stage_iter": stage_iter,
        "iter_num": iter_num,
        "epoch": position["epoch"],
        "data_position": position,
        "plan": plan,
        "fingerprint": fingerprint,
        "fingerprint_sha256": fingerprint_sha256,
        "start_weights_sha256": start_weights_sha256,
        "shards": {key: {"path": str(shard.path), "sha256": shard.sha256, "n_tokens": shard.n_tokens}
                   for key, shard in shards.items()},
        "tokenizer": tokenizer,
        "runtime": runtime,
        "progress": dict(progress),
        "scaler": scaler,
        "result": result,
        "metrics": metrics,
        "written_at": written_at,
    }


def save_checkpoint(
    path: Path,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    card: dict[str, Any],
    ema: dict[str, torch.Tensor] | None = None,
) -> Checkpoint:
    """Write a checkpoint folder at `path` atomically and return it; `ema`: the weight average by parameter name
    (WeightAverage.state), written to ema.safetensors. An existing folder at `path` (one that resume skipped as
    damaged or stale) is moved aside to `<name>.replaced-<time>`, not deleted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    tmp = tmp_path_for(path)
    try:
        tmp.mkdir()
        save_weights(model, tmp / WEIGHTS_FILE)
        save_file(optimizer_tensors(model, optimizer) | rng_tensors(), str(tmp / OPTIMIZER_AND_RNG_FILE))
        _write_json(tmp / CONFIG_FILE, card)
        state = {"format_version": FORMAT_VERSION, **state}
        _write_json(tmp / STATE_FILE, state)
        if ema is not None:
            save_file(_ema_file_tensors(model, ema, tmp / WEIGHTS_FILE), str(tmp / EMA_FILE))
        files = {}
        for name in CHECKPOINT_FILES + ((EMA_FILE,) if ema is not None else ()):
            fsync_file(tmp / name)
            files[name] = sha256_file(tmp / name)
        pause_point("checkpoint-write", state["curriculum_stage_idx"], state["stage_iter"])
        manifest = json.dumps({"format_version": FORMAT_VERSION, "files": files}, indent=2, sort_keys=True) + "\n"
        (tmp / MANIFEST_FILE).write_text(manifest, encoding="utf-8")
        fsync_file(tmp / MANIFEST_FILE)
        fsync_dir(tmp)
        if path.exists():
            aside = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
            path.rename(aside)
            log.warning("moved the checkpoint that resume skipped, %s, aside to %s", path, aside)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as error:
        # A full disk (or a file-size limit) fails a write half-way: remove the half, and say what happened.
        shutil.rmtree(tmp, ignore_errors=True)
        code = _os_error_code(error)
        if code in _DISK_FULL:
            raise CheckpointWriteError(path, code) from error
        raise
    return Checkpoint(path=path, sha256=hashlib.sha256(manifest.encode("utf-8")).hexdigest(), state=state, files=files)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_checkpoint(path: Path, expect_sha256: str | None = None) -> Checkpoint:
    """The checkpoint at `path` after checking every file against the manifest; CheckpointError if it is
    missing parts, damaged, or not the one `expect_sha256` names."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        what = "does not exist" if not path.exists() else f"has no {MANIFEST_FILE} (an unfinished write)"
        raise CheckpointError(f"checkpoint {path} {what}")
    blob = manifest_path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if expect_sha256 is not None and sha != expect_sha256:
        raise CheckpointError(f"checkpoint {path} has checksum {sha[:12]}..., expected {expect_sha256[:12]}...")
    files = _manifest_files(path, blob)
    for name, want in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {name}")
        if sha256_file(file) != want:
            raise CheckpointError(f"checkpoint {path}: {name} does not match its checksum (truncated or damaged)")
    try:
        state = json.loads((path / STATE_FILE).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path}: {STATE_FILE} is not JSON") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: {STATE_FILE} holds {type(state).__name__}, not an object")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    return Checkpoint(path=path, sha256=sha, state=state, files=files)


def _manifest_files(path: Path, blob: bytes) -> dict[str, str]:
    """The manifest's file -> sha256 table; CheckpointError unless it names exactly the files a checkpoint has,
    each with a SHA-256 (a manifest that lists fewer would leave the others unverified)."""
    try:
        manifest = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} is damaged (not JSON)") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} is damaged (no table of files)")
    if sorted(files) not in (sorted(CHECKPOINT_FILES), sorted((*CHECKPOINT_FILES, EMA_FILE))):
        raise CheckpointError(
            f"checkpoint {path}: {MANIFEST_FILE} lists {sorted(files)}; a checkpoint has exactly "
            f"{sorted(CHECKPOINT_FILES)}, and {EMA_FILE} with train.ema"
        )
    bad = [name for name, sha in files.items() if not (isinstance(sha, str) and _SHA256.match(sha))]
    if bad:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} has no valid SHA-256 for {bad}")
    return files


def load_checkpoint(checkpoint: Checkpoint, model: GPT, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Weights into `model`; moments and step into `optimizer` when given. RNG states: `restore_rng`."""
    load_weights(model, checkpoint.path / WEIGHTS_FILE)
    if optimizer is not None:
        load_optimizer(model, optimizer, load_file(str(checkpoint.path / OPTIMIZER_AND_RNG_FILE)))


def _ema_file_tensors(model: GPT, ema: dict[str, torch.Tensor], weights_file: Path) -> dict[str, torch.Tensor]:
    """The average under the tensor names the weights file beside it uses (save_model keeps one name of the
    tied embedding/head matrix), so whatever loads model.safetensors loads ema.safetensors the same way."""
    canonical = {id(p): name for name, p in model.named_parameters()}
    aliases = dict(model.named_parameters(remove_duplicate=False))
    with safe_open(str(weights_file), framework="pt") as weights:
        kept = [name for name in weights.keys() if name in aliases]
    return {name: ema[canonical[id(aliases[name])]].detach().cpu().contiguous() for name in kept}


def load_ema(checkpoint: Checkpoint, model: GPT) -> dict[str, torch.Tensor]:
    """The weight average stored in the checkpoint, by parameter name of `model` (WeightAverage's start);
    CheckpointError if the checkpoint has none or it does not fit the model."""
    if EMA_FILE not in checkpoint.files:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} has no {EMA_FILE}, but this run keeps a weight average (train.ema): it "
            "was written without one, so the average cannot continue from it. Delete that checkpoint folder to "
            "resume from an older one, or start over with --restart"
        )
    tensors = load_file(str(checkpoint.path / EMA_FILE))
    aliases = dict(model.named_parameters(remove_duplicate=False))
    canonical = {id(p): name for name, p in model.named_parameters()}
    average = {canonical[id(aliases[name])]: value for name, value in tensors.items() if name in aliases}
    missing = [name for name in canonical.values() if name not in average]
    unexpected = [name for name in tensors if name not in aliases]
    misshapen = [name for name, p in model.named_parameters() if name in average and average[name].shape != p.shape]
    if missing or unexpected or misshapen:
        raise CheckpointError(
            f"checkpoint {checkpoint.path}: {EMA_FILE} does not fit the model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, other shape {misshapen[:3]}); delete that checkpoint folder to resume from an "
            "older one, or start over with --restart"
        )
    return average


def restore_rng(checkpoint: Checkpoint) -> None:
    tensors = load_file(str(checkpoint.path / OPTIMIZER_AND_RNG_FILE))
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if "rng.mps" in tensors and torch.backends.mps.is_available():
        torch.mps.set_rng_state(tensors["rng.mps"])


def optimizer_tensors(model: GPT, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Per-parameter optimizer state named `optim.<parameter name>.<key>`; hyperparameters come from the
    config (checked by the fingerprint) and the LR from the schedule, so they need not be stored."""
    names = {id(p): name for name, p in model.named_parameters()}
    tensors = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            tensors[f"optim.{names[id(param)]}.{key}"] = value.detach().cpu().contiguous()
    return tensors


def load_optimizer(model: GPT, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    names = {id(p): name for name, p in model.named_parameters()}
    current = optimizer.state_dict()
    index = {}  # parameter name -> its index in the optimizer's state dict
    i = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            index[names[id(param)]] = i
            i += 1
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        name, field = key[len("optim.") :].rsplit(".", 1)
        if name not in index:
            raise CheckpointError(f"optimizer state for unknown parameter {name!r}: the model shape differs")
        state.setdefault(index[name], {})[field] = value
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    if torch.backends.mps.is_available():
        tensors["rng.mps"] = torch.mps.get_rng_state()
    return tensors


def prune_in_stage(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` in-stage checkpoints of a stage folder (stage-end ones stay)."""
    for _, path in in_stage_dirs(folder)[:-keep]:
        # Rename first: a kill during rmtree then leaves a temporary name, never a half-deleted checkpoint.
        doomed = tmp_path_for(path)
        path.rename(doomed)
        shutil.rmtree(doomed)
    # Checkpoints that resume skipped and a save moved aside: the newest stays for inspection, older ones go.
    replaced = [p for p in folder.glob("*.replaced-*") if not p.name.startswith(".")]
    for path in sorted(replaced, key=lambda p: p.stat().st_mtime)[:-1]:
        doomed = tmp_path_for(path)
        path.rename(doomed)
        shutil.rmtree(doomed)
    remove_stale_tmp_dirs(folder)


def remove_stale_tmp_dirs(folder: Path) -> None:
    """Temporary folders of writes or deletions a kill interrupted (a live writer's stay)."""
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.is_dir() and is_stale_tmp(path):
            shutil.rmtree(path, ignore_errors=True)


def copy_pretrained(checkpoint: Checkpoint, folder: Path) -> None:
    """Copy a checkpoint's weights, config.json and (with train.ema) ema.safetensors to `folder` (e.g. final/),
    atomically as a whole."""
    names = (WEIGHTS_FILE, CONFIG_FILE) + ((EMA_FILE,) if EMA_FILE in checkpoint.files else ())
    if all((folder / name).is_file() and sha256_file(folder / name) == checkpoint.files[name] for name in names):
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(folder)
    tmp = tmp_path_for(folder)
    try:
        tmp.mkdir()
        for name in names:
            shutil.copyfile(checkpoint.path / name, tmp / name)
            fsync_file(tmp / name)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: no half copy left behind
        raise
    if folder.exists():
        old = tmp_path_for(folder)  # final/ is a copy: the checkpoint it came from stays
        folder.rename(old)
        shutil.rmtree(old)
    os.replace(tmp, folder)
    fsync_dir(folder.parent)
