"""Writing files so that a reader never sees half of one: temporary name, fsync, rename."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

TMP_MARK = ".tmp-"
_TMP_WRITER = re.compile(re.escape(TMP_MARK) + r"(\d+)-[0-9a-f]+$")


def tmp_path_for(path: Path) -> Path:
    """A sibling name no reader looks for; unique per writer: `.<name>.tmp-<pid>-<random>`."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def is_stale_tmp(path: Path) -> bool:
    """Whether `path` is a temporary name whose writer is gone: its pid (in the name) is not alive on this host.
    A live writer's temporary, this process's own included, is never stale. Another host's writers are kept
    out by the folder lock (data/folder_lock.py), not by this check."""
    match = _TMP_WRITER.search(path.name)
    return match is not None and path.name.startswith(".") and not _pid_alive(int(match.group(1)))


def remove_stale_tmp(path: Path) -> None:
    """Temporary files or folders that a killed writer of `path` left behind (a live writer's stay)."""
    for stale in path.parent.glob(f".{path.name}{TMP_MARK}*"):
        if not is_stale_tmp(stale):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary sibling of `path`; on success it is fsynced and renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode) as handle:
            # open() with a str mode is typed IO[Any]; the mode is binary ("wb" by default and in every caller).
            yield cast(BinaryIO, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(payload)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
