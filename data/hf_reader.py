"""The Hugging Face source: hub ids, dataset folders, `save_to_disk` folders and a local hub mirror."""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from data import hf_datasets
from data.atomic import sha256_file
from data.documents import Document, SkipReport
from data.errors import UserError

MIRROR_ENV = "CURRICULUM_HUB_MIRROR"
# When a dataset has no `text` column, these are tried before giving up.
TEXT_FIELD_GUESSES = ("text", "content", "story", "document", "body", "article")
DATA_SUFFIXES = (".parquet", ".arrow", ".json", ".jsonl", ".csv", ".txt", ".gz", ".zst")
HUB_TIMEOUT_S = 10.0  # per hub call: a stalled hub fails the step instead of hanging it


class HubUnreachable(UserError, ConnectionError):
    """A hub id could not be resolved: no network and no local mirror."""


@dataclass(frozen=True)
class Location:
    kind: str  # "saved" (save_to_disk folder), "folder" (files in the hub layout) or "hub"
    target: str  # a folder path, or the hub id


def resolve(dataset_key: str, mirror: str | os.PathLike | None = None) -> Location:
    """Where a dataset key's data lives: an existing folder wins, then `<mirror>/<org>/<name>`, then the hub."""
    path = Path(dataset_key).expanduser()
    if path.is_dir():
        return _folder_location(path)
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror:
        candidate = Path(mirror).expanduser() / dataset_key
        if candidate.is_dir():
            return _folder_location(candidate)
    return Location("hub", dataset_key)


def _folder_location(path: Path) -> Location:
    saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
    return Location("saved" if saved else "folder", str(path.resolve()))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Cheap check before `datasets` spends ~25 s retrying a hub it cannot reach."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    # getaddrinfo takes no timeout, and socket.setdefaulttimeout would change every socket of the process
    # (Prefect's, other threads'): wait for the lookup in a thread instead, and give up on it after `timeout`.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-dns")
    try:
        pool.submit(socket.getaddrinfo, host, 443).result(timeout=timeout)
        return True
    except (OSError, concurrent.futures.TimeoutError):
        return False
    finally:
        pool.shutdown(wait=False)


def _unreachable(dataset_key: str, mirror: Any, why: str) -> HubUnreachable:
    org_name = dataset_key if "/" in dataset_key else f"<org>/{dataset_key}"
    return HubUnreachable(
        f"cannot read Hugging Face dataset {dataset_key!r}: {why}. Without network, point "
        f"{MIRROR_ENV} (or data.hub_mirror) at a folder that holds a copy in the hub layout, "
        f"'<mirror>/{org_name}' (e.g. {MIRROR_ENV}=../shared/hub); current mirror: {mirror or 'not set'}"
    )


def _hash_folder(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix in DATA_SUFFIXES or path.name in ("state.json", "dataset_dict.json", "dataset_info.json"):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


class HuggingFaceReader:
    """Documents from a Hugging Face dataset, in the dataset's own order, at most `n_items`.

    With `n_items` set (or a local folder) the dataset is streamed, so taking the first N of a
    huge dataset never downloads or converts the whole of it.
    """

    def __init__(
        self,
        dataset_key: str,
        *,
        split: str = "train",
        text_field: str = "text",
        revision: str | None = None,
        n_items: int | None = None,
        mirror: str | os.PathLike | None = None,
    ):
        self.dataset_key = dataset_key
        self.split = split
        self.text_field = text_field
        self.revision = revision
        self.n_items = n_items
        self.mirror = mirror
        self.location = resolve(dataset_key, mirror)
        self.commit: str | None = None  # the hub commit `revision` pointed to when first asked; then fixed

    def fingerprint(self) -> str:
        """Local data: a hash of its files. Hub data: the commit the revision points to."""
        if self.location.kind != "hub":
            return _hash_folder(Path(self.location.target))
        return f"hub:{self.dataset_key}@{self.hub_commit()}"

    def hub_commit(self) -> str:
        """The commit `revision` (a branch, tag or commit; default the main branch) points to, resolved once:
        the documents are then read at that commit, so a branch that moves on meanwhile cannot change them."""
        if self.commit is None:
            if not _hub_reachable():
                raise _unreachable(self.dataset_key, self.mirror, "the hub is not reachable (offline?)")
            from huggingface_hub import HfApi

            try:
                info = HfApi().dataset_info(self.dataset_key, revision=self.revision, timeout=HUB_TIMEOUT_S)
            except Exception as error:  # the hub client raises many types; all mean "cannot resolve"
                raise _unreachable(self.dataset_key, self.mirror, f"{type(error).__name__}: {error}") from error
            if not info.sha:
                raise _unreachable(self.dataset_key, self.mirror, f"the hub named no commit for {self.revision!r}")
            self.commit = info.sha
        return self.commit

    def _rows(self) -> Iterable[dict[str, Any]]:
        kind, target = self.location.kind, self.location.target
        if kind == "saved":
            loaded = hf_datasets.load_from_disk(target)
            if isinstance(loaded, hf_datasets.datasets_library().DatasetDict):
                if self.split not in loaded:
                    raise ValueError(
                        f"split {self.split!r} not in {target}; splits: {sorted(loaded)} (set the stage's `split`)"
                    )
                loaded = loaded[self.split]
            # Batched iteration over the memory-mapped Arrow table: bounded memory.
            return (row for batch in loaded.iter(batch_size=1024) for row in _batch_rows(batch))
        streaming = kind == "folder" or self.n_items is not None
        revision = self.hub_commit() if kind == "hub" else None
        try:
            return hf_datasets.load_dataset(target, split=self.split, streaming=streaming, revision=revision)
        except ConnectionError as error:
            raise _unreachable(self.dataset_key, self.mirror, str(error)) from error

    def documents(self, report: SkipReport) -> Iterator[Document]:
        with hf_datasets.rows(self._rows()) as rows:
            first = next(rows, None)
            if first is None:
                return
            field = self._text_field(first, report)
            for index, row in enumerate(itertools.chain([first], rows)):
                if self.n_items is not None and index >= self.n_items:
                    return
                text = row.get(field)
                if not isinstance(text, str):
                    report.skip(f"{self.dataset_key}[{index}]", "not-text", f"{field} is {type(text).__name__}")
                elif not text.strip():
                    report.skip(f"{self.dataset_key}[{index}]", "empty")
                else:
                    yield Document(id=f"{self.split}:{index}", text=text)

    def _text_field(self, row: dict[str, Any], report: SkipReport) -> str:
        if self.text_field in row:
            return self.text_field
        if self.text_field == "text":
            for guess in TEXT_FIELD_GUESSES:
                if isinstance(row.get(guess), str):
                    report.note(f"{self.dataset_key} has no 'text' column; using {guess!r}")
                    return guess
        raise KeyError(
            f"dataset {self.dataset_key!r} has no column {self.text_field!r}; its columns are "
            f"{sorted(row)}; set the stage's `text_field` to one of them"
        )


def _batch_rows(batch: dict[str, list]) -> Iterator[dict[str, Any]]:
    keys = list(batch)
    for values in zip(*(batch[key] for key in keys), strict=True):
        yield dict(zip(keys, values, strict=True))
