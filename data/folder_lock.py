"""One writer per folder: a run holds its data folder and run folder locked while it writes to them.

The lock is `flock` on an open file beside the folder (`.<folder name>.<purpose>-lock`: a file inside would move
with the folder when --restart moves it aside), so the kernel releases it when its holder exits, however it exits
(a SIGKILL, a crash): a lock is never left "stuck". The file holds JSON naming the holder (pid, host, flow run,
start time) so the run that is turned away can say who has the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from data.errors import UserError


class FolderLocked(UserError, RuntimeError):
    """Another process is writing the folder; the message names it and what to do."""


def lock_path(folder: str | Path, purpose: str) -> Path:
    folder = Path(folder).resolve()
    return folder.with_name(f".{folder.name}.{purpose}-lock")


def read_holder(folder: str | Path, purpose: str) -> dict[str, Any] | None:
    """Who holds (or last held) the folder's lock, as it wrote itself down; None if unknown."""
    try:
        holder = json.loads(lock_path(folder, purpose).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    run = holder.get("flow_run_name") or holder.get("flow_run_id")
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}"
        + (f", flow run {run!r}" if run else "")
        + (f" ({holder['flow_run_id']})" if holder.get("flow_run_name") and holder.get("flow_run_id") else "")
        + f", since {holder.get('started', '?')}"
    )


WAIT_POLL_S = 0.5  # how often a waiting run tries the lock again
WAIT_REPORT_S = 60.0  # how often it says again whom it waits for


def folder_in_use(folder: str | Path, purpose: str) -> bool:
    """Whether another open file holds the folder's lock now (tried and released at once; nothing is written)."""
    path = lock_path(folder, purpose)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _take(fd: int, folder: Path, purpose: str, on_wait: Callable[[dict[str, Any] | None], None] | None) -> bool:
    """Lock `fd`: True at once if free; with `on_wait`, wait for the holder to leave (calling `on_wait` with
    whom it waits for, then every WAIT_REPORT_S) and return True; without, False when it is held."""
    reported = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if on_wait is None:
                return False
        if reported is None or time.monotonic() - reported >= WAIT_REPORT_S:
            on_wait(read_holder(folder, purpose))
            reported = time.monotonic()
        time.sleep(WAIT_POLL_S)


@contextlib.contextmanager
def folder_lock(
    folder: str | Path, purpose: str, *, flow_run_id: str | None = None, flow_run_name: str | None = None,
    on_wait: Callable[[dict[str, Any] | None], None] | None = None,
) -> Iterator[Path]:
    """Hold `folder` for this process while the block runs; FolderLocked at once if another process holds it,
    or, given `on_wait`, wait until it leaves (`on_wait(holder)` says whom it waits for, then every minute).

    `purpose` ("data" or "run") names the lock file, so one folder can serve as both a data and a run folder.
    Locks are per open file, not per process: a second lock of the same folder within one process (two served
    flow runs in one worker) is refused (or waits) as well.
    """
    folder = Path(folder)
    path = lock_path(folder, purpose)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _take(fd, folder, purpose, on_wait):
            holder = read_holder(folder, purpose)
            raise FolderLocked(
                f"the {purpose} folder {folder.resolve()} is in use by {describe_holder(holder)}: two runs writing "
                "one folder would spoil each other's files. Wait for that run to finish (or cancel it), or give "
                f"this run another {'--data-dir' if purpose == 'data' else '--out-dir'}, or start it with --wait "
                "to queue behind it (a deployment run: the parameter wait=true)"
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "flow_run_id": flow_run_id,
            "flow_run_name": flow_run_name,
            "purpose": purpose,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays, naming its last holder
