"""What a `custom-scrape` stage reads: its URL list (checked line by line) and its saved HTML/PDF files."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from data.errors import UserError

ALLOWED_SCHEMES = ("http", "https")
# Saved crawls hold pages, PDFs and their assets; only these are documents. `.gz` copies are
# read through (wget --compression, hand-made archives).
DOCUMENT_SUFFIXES = {".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf"}
TEXT_SUFFIXES = (".txt", ".txt.gz")
# How much of a line that is not a URL the report shows: enough to find it, not a whole file echoed into the UI.
SHOWN_CHARS = 80
# `scheme://user:password@`: greedy up to the last `@` before the path, so `a@b@host` leaks nothing either.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


class ScrapeError(UserError, RuntimeError):
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


def redact(text: str) -> str:
    """`text` with the user info of every URL in it (`user:password@`) replaced by `***@`.

    The one helper for anything stored or shown: crawl report, cache metadata, document ids, logs.
    """
    return _USERINFO.sub(r"\1***@", text)


def redact_all(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with `redact` applied to every string in it: for
    configurations stored or shown whole (run.json, the run summary), whose stage `urls` may carry passwords."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(item) for item in value]
    return value


def shown(text: str) -> str:
    """A user's line as a report shows it: redacted, and cut short when long."""
    text = redact(text)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def check_url(text: str) -> tuple[str | None, str, str]:
    """(normalised URL, "", "") for an http(s) URL, else (None, reason, detail).

    The fragment is dropped: it never reaches the server and two URLs that differ only there are one page.
    """
    if not text or any(ch.isspace() for ch in text):
        return None, "invalid-url", f"{shown(text)!r} is not one URL (contains whitespace); write one URL per line"
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme and scheme not in ALLOWED_SCHEMES and "." not in scheme:
        return None, "unsupported-scheme", (
            f"{shown(text)!r} uses {shown(scheme)}:, the web source fetches only http and https; "
            "list saved files under the stage's `paths:` instead"
        )
    if scheme not in ALLOWED_SCHEMES:
        return None, "invalid-url", (
            f"{shown(text)!r} has no http:// or https:// scheme; write e.g. https://{shown(text)}"
        )
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as error:
        return None, "invalid-url", f"{shown(text)!r} is not a valid URL: {redact(str(error))[:SHOWN_CHARS]}"
    if not url.host:
        return None, "invalid-url", f"{shown(text)!r} has no host name; write e.g. https://example.org/page"
    problem = port_problem(url)
    if problem:
        return None, "invalid-url", f"{shown(text)!r}: {problem}"
    return str(url.copy_with(fragment=None)), "", ""


def port_problem(url: httpx.URL) -> str:
    """Why the URL's port cannot be connected to, or "" (no port, or one of 1-65535)."""
    if url.port is not None and not 1 <= url.port <= 65535:
        # Port 0 is not "the default port": no server listens there, and the OS would pick a random one.
        return f"port {url.port} is outside 1-65535; leave the port out for the scheme's default"
    return ""


def origin_of(url: httpx.URL) -> str:
    """`scheme://host:port` with the port always written and an IPv6 host in brackets: the key of an origin's
    robots.txt and politeness, and the base its robots.txt URL is built on."""
    host = url.raw_host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{host}:{port}"


def join_redirect(current: str, location: str | None) -> tuple[str | None, tuple[str, str, str] | None]:
    """The absolute next URL of a redirect, or the (status, reason, detail) that refuses it."""
    try:
        target = httpx.URL(current).join(location or "")
    except httpx.InvalidURL as error:
        return None, ("failed", "invalid-redirect", f"Location {shown(location or '')!r}: {error}")
    if target.scheme not in ALLOWED_SCHEMES:
        detail = (
            f"redirect from {redact(current)} to {shown(location or '')!r} refused: only http and https are followed"
        )
        return None, ("skipped", "unsupported-scheme", detail)
    problem = port_problem(target) or ("" if target.host else "no host name")
    if problem:
        return None, ("failed", "invalid-redirect", f"Location {shown(location or '')!r}: {problem}")
    return str(target.copy_with(fragment=None)), None


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
        item = f"{where}: {shown(text)}"
        if url is None:
            bad.append(BadLine(item, reason, detail))
        elif url in first_seen:
            bad.append(BadLine(item, "duplicate", f"{redact(url)} is already listed at {first_seen[url]}"))
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
