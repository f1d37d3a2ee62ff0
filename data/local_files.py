"""Files a local source reads: found under folders, files and globs, and hashed by their names and bytes."""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterable
from pathlib import Path

from data.atomic import sha256_file


def find_files(locations: Iterable[str], suffixes: tuple[str, ...]) -> list[Path]:
    """Every file with one of `suffixes` (lower case, e.g. ".txt") under the given folders, files and globs:
    sorted within each location, in location order, without repeats."""
    found: dict[Path, None] = {}
    for location in locations:
        path = Path(location).expanduser()
        if glob.has_magic(location):
            matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
        elif path.is_dir():
            matches = sorted(match for suffix in suffixes for match in path.rglob(f"*{suffix}"))
        else:
            matches = [path] if path.exists() else []
        for match in matches:
            if match.is_file() and match.suffix.lower() in suffixes:
                found.setdefault(match.resolve(), None)
    return list(found)


def files_fingerprint(paths: Iterable[Path]) -> str:
    """Hash of each file's name and bytes (streamed: any size): a moved folder keeps its cache, an edited file
    does not."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()
