"""The folders a flow run writes: which ones a served run may use, whether a run folder may be resumed, and one
writer per folder, queued or refused.

A run holds its run folder (and, while it prepares, its data folder; a comparison its comparison folder) locked
(data/folder_lock.py). A second run of the same folder either stops at once with FolderLocked (a CLI run, the
default) or waits for it (a served run, the default, or `--wait`):

- it queues on a Prefect global concurrency limit of one slot named after the folder (`folder-<purpose>-<name>-
  <hash>`, made on first use; the UI's Concurrency page lists it with its holder), so the server hands the folder to
  the waiting runs one at a time, whichever worker or serve.py process they run in;
- while it waits, a task run `wait-for-<purpose>-folder` in its graph is Running and its log names the run that
  holds the folder;
- once it has the slot, it takes the folder's lock as well, waiting for a process that holds the folder outside
  Prefect (a CLI run on a server of its own, whose slot is not this server's).

A run killed while it holds the slot gives the folder's lock back at once (the kernel releases it) and the slot when
its lease runs out (FOLDER_SLOT_LEASE_S), so a waiting run starts at most that long after.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import deployment, flow_run

from curriculum.allowed_paths import allowed_roots
from curriculum.config import RunConfig
from curriculum.training.run_dir import EarlierRunFound, check_run_dir, run_fingerprint, run_owner
from data.folder_lock import describe_holder, folder_in_use, folder_lock, read_holder

FOLDER_SLOT_LEASE_S = 60.0  # renewed while the holder lives; how long a killed holder keeps its slot at most
SLOT_POLL_S = 1.0
SLOT_TRY_S = 5.0  # how long a run that saw the slot free tries for it before waiting (in view) again


def served_run_roots() -> list[Path] | None:
    """The folders a run started from a deployment may use (curriculum/allowed_paths.py); None for a CLI run."""
    return allowed_roots() if deployment.get_id() else None  # the server's record of the run, not a parameter


def waits_for_folders(wait: bool | None) -> bool:
    """A flow's `wait` parameter: None is the default, which queues served runs and refuses at once on the CLI."""
    return bool(deployment.get_id()) if wait is None else wait


def folder_slot(folder: str | Path, purpose: str) -> str:
    """The name of the folder's concurrency limit: readable, and unique per resolved path."""
    resolved = Path(folder).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.name).strip("-.")[:40] or "root"
    return f"folder-{purpose}-{readable}-{digest}"


def ensure_slot(name: str) -> None:
    """The concurrency limit `name` with one slot, made if missing (two runs making it at once is fine)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def slot_taken(name: str) -> bool:
    with get_client(sync_client=True) as client:
        found = client.read_global_concurrency_limit_by_name(name)
    return found.active_slots >= found.limit


def _waiting_message(folder: Path, purpose: str) -> str:
    return (f"waiting for the {purpose} folder {folder}: in use by {describe_holder(read_holder(folder, purpose))}; "
            "this run starts when that one ends")


@task(name="wait-for-folder", task_run_name="wait-for-{purpose}-folder")
def wait_for_folder(folder: Path, purpose: str, slot: str) -> float:
    """Wait until the folder's slot and lock are free; the seconds waited. The task run is what the UI shows."""
    logger = get_run_logger()
    started = reported = time.monotonic()
    logger.info(_waiting_message(folder, purpose))
    while slot_taken(slot) or folder_in_use(folder, purpose):
        if time.monotonic() - reported >= 60:
            logger.info(_waiting_message(folder, purpose))
            reported = time.monotonic()
        time.sleep(SLOT_POLL_S)
    waited = time.monotonic() - started
    logger.info(f"the {purpose} folder {folder} is free after {waited:.0f} s of waiting")
    return waited


@contextlib.contextmanager
def hold_folder(folder: Path, purpose: str, *, wait: bool = False) -> Iterator[Path]:
    """The folder locked for this flow run; FolderLocked names the run that holds it, or, with `wait`, this run
    queues for it (module docstring)."""
    run_id, run_name = flow_run.get_id(), flow_run.get_name()
    if not wait:
        with folder_lock(folder, purpose, flow_run_id=run_id, flow_run_name=run_name) as path:
            yield path
        return
    folder = Path(folder).resolve()
    slot = folder_slot(folder, purpose)
    ensure_slot(slot)
    # A lease renewal that fails once (a busy server) must not stop a run that holds the folder's lock anyway.
    options: dict[str, Any] = {"lease_duration": FOLDER_SLOT_LEASE_S, "strict": True,
                               "raise_on_lease_renewal_failure": False, "timeout_seconds": SLOT_TRY_S}
    if run_id:
        options["holder"] = ConcurrencyLeaseHolder(type="flow_run", id=run_id)
    with contextlib.ExitStack() as held:
        # Runs that waited together race for the slot when it frees: the ones that lose wait again, in view.
        while True:
            if slot_taken(slot) or folder_in_use(folder, purpose):
                wait_for_folder(folder, purpose, slot)
            try:
                held.enter_context(concurrency(slot, occupy=1, **options))
                break
            except TimeoutError:  # another run took it first
                continue
        # The lock then waits for a writer outside this server (a CLI run on a server of its own).
        yield held.enter_context(folder_lock(
            folder, purpose, flow_run_id=run_id, flow_run_name=run_name,
            on_wait=lambda _holder: get_run_logger().info(_waiting_message(folder, purpose)),
        ))


def check_run_folder(config: RunConfig, *, resume: bool, restart: bool) -> bool:
    """Refuse a run folder of other settings before any data is prepared; returns whether to restart.

    A retry of the flow run that created the folder (after a crash) always resumes it: its `restart` or
    `resume=False` were meant for the folder it found, not for the one it made itself.
    """
    run_dir = config.out_dir.resolve()
    if run_owner(run_dir) == flow_run.get_id():
        return False
    if not resume and not restart and (run_dir / "checkpoints").is_dir():
        raise EarlierRunFound(
            f"run folder {run_dir} holds checkpoints of an earlier run and resume=False; resume it (the default), "
            "or start over with --restart (the old folder is moved aside), or choose another --out-dir"
        )
    if not restart:
        check_run_dir(run_dir, run_fingerprint(config.curriculum, config.model, config.train))
    return restart
