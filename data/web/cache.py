"""Fetched bodies on disk, by URL, with the validators (ETag, Last-Modified) that let a re-run ask "changed?".

Layout: `<cache_dir>/<sha[:2]>/<sha>.body` and `<sha>.json`, where sha is the SHA-256 of the URL. The body
is written before its metadata, both atomically, so a metadata file always describes a whole body. URLs are
keyed and stored redacted: a `user:password@` in a listed URL never reaches the disk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from data.atomic import atomic_write_bytes, atomic_write_text
from data.web.urls import redact

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedResponse:
    url: str
    content_type: str | None
    content_encoding_seen: str | None  # what the server sent; the stored body is already decoded
    etag: str | None
    last_modified: str | None
    sha256: str  # of the decoded body
    n_bytes: int

    @property
    def revalidatable(self) -> bool:
        return bool(self.etag or self.last_modified)


class ResponseCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(redact(url).encode("utf-8")).hexdigest()
        folder = self.root / key[:2]
        return folder / f"{key}.json", folder / f"{key}.body"

    def get(self, url: str) -> CachedResponse | None:
        """The cached response of `url`, or None when absent, from another cache version, or damaged."""
        meta_path, body_path = self._paths(url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if meta.pop("version", None) != CACHE_VERSION or meta.get("url") != redact(url):
            return None
        try:
            entry = CachedResponse(**meta)
        except TypeError:
            return None
        if not body_path.is_file() or body_path.stat().st_size != entry.n_bytes:
            return None
        return entry

    def body(self, entry: CachedResponse) -> bytes | None:
        """The stored body, or None when it no longer matches its hash (then the URL is fetched afresh)."""
        _, body_path = self._paths(entry.url)
        try:
            data = body_path.read_bytes()
        except FileNotFoundError:
            return None
        return data if hashlib.sha256(data).hexdigest() == entry.sha256 else None

    def put(
        self,
        url: str,
        body: bytes,
        content_type: str | None,
        content_encoding: str | None,
        etag: str | None,
        last_modified: str | None,
    ) -> CachedResponse:
        entry = CachedResponse(
            url=redact(url),
            content_type=content_type,
            content_encoding_seen=content_encoding,
            etag=etag,
            last_modified=last_modified,
            sha256=hashlib.sha256(body).hexdigest(),
            n_bytes=len(body),
        )
        meta_path, body_path = self._paths(url)
        atomic_write_bytes(body_path, body)
        atomic_write_text(meta_path, json.dumps({"version": CACHE_VERSION, **asdict(entry)}, indent=1) + "\n")
        return entry
