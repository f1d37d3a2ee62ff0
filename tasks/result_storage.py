"""The tasks' cached result records are read back only if they are the JSON records this pipeline writes.

A Prefect result record names its own serializer, and Prefect reads a record with the serializer the record
names. Whoever can rewrite a record in a data or run folder could switch it to `pickle` and run code on the
next cache lookup, or keep JSON and name a decoder or a class to import. So a record is checked before
Prefect sees it: the serializer must be Prefect's plain JSON one and every object in it must be one of this
project's classes. Before each step, tasks/caching.py sets aside any record that is not (renamed, with a
warning, never deserialized), so Prefect finds no record, runs the step again and writes a good one.
(Prefect reads a record through its result storage, which a task may only name as a folder or a block saved
on the server; checking the folder before the step needs neither.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefect.serializers import JSONSerializer

log = logging.getLogger(__name__)

# Prefect's own JSON serializer with its default settings, as our tasks write it (result_serializer="json").
TRUSTED_SERIALIZER = JSONSerializer().model_dump(mode="json")
UNTRUSTED_SUFFIX = ".untrusted"
# Packages whose classes a record may hold (`__class__` in Prefect's JSON encoding).
TRUSTED_PACKAGES = ("curriculum", "data", "model", "tasks")


class UntrustedRecord(ValueError):
    """A cached result record this pipeline did not write in that form; it is never deserialized."""


def check_record(content: bytes, path: str | Path) -> None:
    """Raise UntrustedRecord unless `content` is a JSON result record in the form our tasks write."""
    try:
        record = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UntrustedRecord(f"cached result record {path} is not JSON") from None
    serializer = record.get("metadata", {}).get("serializer") if isinstance(record, dict) else None
    if serializer != TRUSTED_SERIALIZER:
        kind = serializer.get("type") if isinstance(serializer, dict) else serializer
        raise UntrustedRecord(
            f"cached result record {path} names the serializer {kind!r} with other settings than the JSON "
            "one this pipeline writes; it was not written by this pipeline and is not read"
        )
    try:
        result = json.loads(record.get("result") or "null")
    except (TypeError, json.JSONDecodeError):
        raise UntrustedRecord(f"cached result record {path} holds a result that is not JSON") from None
    for name in _class_names(result):
        if name.split(".")[0] not in TRUSTED_PACKAGES:
            raise UntrustedRecord(
                f"cached result record {path} asks to build {name!r}, not a class of this project "
                f"({', '.join(TRUSTED_PACKAGES)}); it is not read"
            )


def _class_names(value: Any):
    if isinstance(value, dict):
        for key in ("__class__", "__exc_type__"):
            if isinstance(value.get(key), str):
                yield value[key]
        for item in value.values():
            yield from _class_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _class_names(item)


def set_aside_untrusted_records(folder: Path) -> list[Path]:
    """Rename every record in `folder` that fails `check_record` to `<name>.untrusted`, where Prefect never
    looks, with a warning each; returns the new names."""
    set_aside = []
    for path in sorted(folder.iterdir()):
        if path.suffix == UNTRUSTED_SUFFIX or not path.is_file():
            continue
        try:
            check_record(path.read_bytes(), path)
        except UntrustedRecord as error:
            aside = path.with_name(path.name + UNTRUSTED_SUFFIX)
            path.replace(aside)
            set_aside.append(aside)
            log.warning("%s; set aside as %s and the step runs again (a record cut short by a killed run looks "
                        "like this too; otherwise see docs/security.md: data and run folders must be trusted)",
                        error, aside.name)
    return set_aside
