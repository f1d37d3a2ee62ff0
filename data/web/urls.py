"""What a `custom-scrape` stage reads: its URL list (checked line by line) and its saved HTML/PDF files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import httpx

ALLOWED_SCHEMES = ("http", "https")
# Saved crawls hold pages, PDFs and their assets; only these are documents. `.gz` copies are
# read through (wget --compression, hand-made archives).
DOCUMENT_SUFFIXES = {".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf"}
TEXT_SUFFIXES = (".txt", ".txt.gz")


class ScrapeError(RuntimeError):
    """The web source cannot give a stage anything to train on; the message says why and what to do."""


class UrlListError(ScrapeError):
    """A stage's URL list file is missing or unreadable."""


@dataclass(frozen=True)
class BadLine:
    """A line of a URL list that is not an http(s) URL, kept for the report."""

    item: str  # "file:line: text", "urls[i]: text", or a path
    reason: str  # invalid-url, unsupported-scheme, duplicate, missing-path or local-txt
    detail: str
    origin: str = "list"  # list (a URL list entry) or path (under `paths:`), as in the crawl report


@dataclass(frozen=True)
class UrlList:
    urls: list[str]
    bad: list[BadLine]
    origin: str  # what the user would edit: the file name, or "the stage's `urls:`"


def check_url(text: str) -> tuple[str | None, str, str]:
    """(normalised URL, "", "") for an http(s) URL, else (None, reason, detail).

    The fragment is dropped: it never reaches the server and two URLs that differ only there are one page.
    """
    if not text or any(ch.isspace() for ch in text):
        return None, "invalid-url", f"{text!r} is not one URL (contains whitespace); write one URL per line"
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme and scheme not in ALLOWED_SCHEMES and "." not in scheme:
        return None, "unsupported-scheme", (
            f"{text!r} uses {scheme}:, the web source fetches only http and https; "
            "list saved files under the stage's `paths:` instead"
        )
    if scheme not in ALLOWED_SCHEMES:
        return None, "invalid-url", f"{text!r} has no http:// or https:// scheme; write e.g. https://{text}"
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as error:
        return None, "invalid-url", f"{text!r} is not a valid URL: {error}"
    if not url.host:
        return None, "invalid-url", f"{text!r} has no host name; write e.g. https://example.org/page"
    return str(url.copy_with(fragment=None)), "", ""


def strip_comment(line: str) -> str:
    """The URL part of a list line: `#` starts a comment at the line start or after a space or tab.

    A `#` right after a URL is its fragment, so it is not a comment.
    """
    text = line.strip()
    if text.startswith("#"):
        return ""
    for mark in (" #", "\t#"):
        text = text.split(mark, 1)[0].strip()
    return text


def load_url_list(urls: Iterable[str] = (), urls_file: str | Path | None = None) -> UrlList:
    """A stage's `urls:` followed by the lines of its `urls_file`, in order, each URL once."""
    entries = [(f"urls[{i}]", text) for i, text in enumerate(urls)]
    if urls_file is not None:
        path = Path(urls_file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise UrlListError(
                f"urls_file {str(path)!r} does not exist (working directory {os.getcwd()}); "
                "fix the stage's `urls_file`, or give the URLs under `urls:`"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise UrlListError(
                f"urls_file {str(path)!r} cannot be read as UTF-8 text ({error}); "
                "write one http(s) URL per line, '#' for comments"
            ) from None
        entries += [(f"{path}:{n}", line) for n, line in enumerate(text.splitlines(), start=1)]
    out: list[str] = []
    bad: list[BadLine] = []
    first_seen: dict[str, str] = {}
    for where, line in entries:
        text = strip_comment(line)
        if not text:
            continue
        url, reason, detail = check_url(text)
        item = f"{where}: {text}"
        if url is None:
            bad.append(BadLine(item, reason, detail))
        elif url in first_seen:
            bad.append(BadLine(item, "duplicate", f"{url} is already listed at {first_seen[url]}"))
        else:
            first_seen[url] = where
            out.append(url)
    parts = ([str(urls_file)] if urls_file is not None else []) + (["the stage's `urls:`"] if urls else [])
    return UrlList(urls=out, bad=bad, origin=" and ".join(parts) or "the stage's `urls:`")


@dataclass(frozen=True)
class LocalFile:
    path: Path
    kind: str | None  # "html"/"pdf" by name, None when only the content can tell


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[LocalFile], list[BadLine]]:
    """Files under the stage's `paths:`, sorted, each once; `.txt` and missing paths come back as bad."""
    found: dict[Path, LocalFile] = {}
    bad: list[BadLine] = []
    for entry in paths:
        root = Path(entry)
        if not root.exists():
            bad.append(BadLine(
                str(root), "missing-path",
                f"{str(root)!r} does not exist (working directory {os.getcwd()}); fix the stage's `paths:`",
                origin="path",
            ))
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            name = path.name.lower()
            if name.endswith(TEXT_SUFFIXES):
                bad.append(BadLine(
                    str(path), "local-txt",
                    "local .txt files belong to a local-files stage (foundation), not to custom-scrape",
                    origin="path",
                ))
                continue
            key = path.resolve()
            if key not in found:
                stem = name[:-3] if name.endswith(".gz") else name
                found[key] = LocalFile(path, DOCUMENT_SUFFIXES.get(Path(stem).suffix))
    return sorted(found.values(), key=lambda f: str(f.path)), bad
