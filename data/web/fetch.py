"""Polite, bounded fetching of one URL at a time over a shared httpx client (asyncio).

For each URL: robots.txt of its origin (fetched once), a slot of the origin's HostGate, a GET with
conditional headers when a cached copy exists, retries with back-off on 429/5xx/connection errors,
redirects followed by hand (only to http/https, each hop checked against its own robots.txt), and a
body streamed under a decoded-size cap and typed by its first bytes. Every URL ends in a FetchResult;
none raises, whatever goes wrong. One deadline covers a URL from its first request to its last byte.
Connections go only to addresses the AddressPolicy allows (transport.py); robots.txt is read in
robots_fetch.py. URLs are shown redacted (no `user:password@`) in every result.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from data.web.addresses import AddressPolicy
from data.web.cache import CachedResponse, ResponseCache
from data.web.config import ScrapeConfig
from data.web.decode import ACCEPT_ENCODING, BoundedDecoder, DecodeError
from data.web.politeness import backoff_seconds, parse_retry_after
from data.web.robots_fetch import OK_CODES, REDIRECT_CODES, Origins
from data.web.sniff import HTML_TYPES, PDF_TYPES, SNIFF_BYTES, parse_content_type, sniff
from data.web.transport import AddressNotAllowed, crawler_client, describe_error
from data.web.urls import join_redirect, port_problem, redact

log = logging.getLogger(__name__)

AGENT = "curriculum-gpt"  # the token robots.txt files address us by
AGENT_VERSION = "0.1"


def user_agent(contact_url: str) -> str:
    """Who we are and where to reach us; no browser disguise (sites may block us, and that is their call)."""
    return f"{AGENT}/{AGENT_VERSION} (+{contact_url}; language-model pretraining crawler)"


@dataclass(frozen=True)
class FetchResult:
    """How one URL ended. `status` is ok, skipped (we chose not to take it) or failed (we could not get it)."""

    url: str
    status: str
    reason: str = ""
    detail: str = ""
    http_status: int | None = None
    final_url: str | None = None  # after redirects; the cache key of the body
    kind: str | None = None  # html or pdf, when ok
    charset: str | None = None  # from the Content-Type header, for the extractor
    n_bytes: int = 0  # decoded body bytes
    sha256: str | None = None  # of the decoded body
    seconds: float = 0.0  # from the first request to the end, politeness waits before it excluded
    attempts: int = 0
    revalidated: bool = False  # a conditional GET answered 304 and the cached body was used


@dataclass
class _Progress:
    """How far one URL got: for its result, whichever way its fetch ends."""

    current: str  # the hop being fetched
    start: float | None = None  # loop time of the first request
    attempts: int = 0


@dataclass
class _Outcome:
    """One HTTP attempt, before retry and redirect decisions."""

    status: str  # ok, skipped, failed, retry, redirect
    reason: str = ""
    detail: str = ""
    http_status: int | None = None
    location: str | None = None
    retry_after: float | None = None
    entry: CachedResponse | None = None
    kind: str | None = None
    charset: str | None = None
    revalidated: bool = False


class Fetcher:
    """Fetches URLs politely; use inside one event loop, as `async with Fetcher(...) as fetcher`."""

    def __init__(self, config: ScrapeConfig, cache_dir: str | Path):
        self.config = config
        self.cache = ResponseCache(cache_dir)
        self.agent = user_agent(config.contact_url)
        self.policy = AddressPolicy.from_setting(config.allow_private)
        self._client: httpx.AsyncClient | None = None
        self._global: asyncio.Semaphore | None = None
        self._origins: Origins | None = None

    async def __aenter__(self) -> Fetcher:
        c = self.config
        self._global = asyncio.Semaphore(c.max_concurrency)
        self._client = crawler_client(
            self.policy,
            timeout=httpx.Timeout(connect=c.connect_timeout, read=c.read_timeout, write=c.read_timeout, pool=None),
            max_connections=c.max_concurrency,
            headers={
                "User-Agent": self.agent,
                "Accept": "text/html,application/xhtml+xml,application/pdf;q=0.9,*/*;q=0.1",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self._origins = Origins(c, self._client, self._global, AGENT)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._origins is not None:
            self._origins.cancel()

    # -- one URL ---------------------------------------------------------------------------------

    async def fetch(self, url: str) -> FetchResult:
        """Never raises (cancellation aside): whatever a server, the network or a bug does, the result says."""
        state = _Progress(current=url)
        try:
            return await self._fetch(url, state)
        except Exception as error:  # noqa: BLE001 -- one URL must never stop the stage; logged with its traceback
            log.warning("fetching %s: unexpected %s", redact(url), describe_error(error), exc_info=True)
            detail = f"{describe_error(error)} (an input the crawler did not expect; its other URLs went on)"
            return self._result(url, state.current, _Outcome("failed", "unexpected-error", detail), state)

    async def _fetch(self, url: str, state: _Progress) -> FetchResult:
        seen = [url]
        current = url
        try:
            async with asyncio.timeout(None) as budget:
                for _ in range(self.config.max_redirects + 1):
                    outcome = await self._fetch_hop(current, budget, state)
                    if outcome.status != "redirect":
                        return self._result(url, current, outcome, state)
                    target, refusal = join_redirect(current, outcome.location)
                    if refusal is not None:
                        return self._result(url, current, _Outcome(*refusal), state)
                    assert target is not None  # join_redirect gives one or the other
                    if target in seen:
                        loop_path = " -> ".join([*seen[seen.index(target) :], target])
                        return self._result(
                            url, current, _Outcome("failed", "redirect-loop", loop_path, outcome.http_status), state
                        )
                    seen.append(target)
                    current = state.current = target
                detail = f"more than max_redirects={self.config.max_redirects}: {' -> '.join(seen)}"
                return self._result(url, current, _Outcome("failed", "too-many-redirects", detail), state)
        except TimeoutError:
            detail = (
                f"not done within url_deadline={self.config.url_deadline:g} s "
                "(slow server, slow-drip body or long retries)"
            )
            return self._result(url, current, _Outcome("failed", "deadline", detail), state)

    def _result(self, url: str, final: str, outcome: _Outcome, state: _Progress) -> FetchResult:
        start = state.start
        seconds = asyncio.get_running_loop().time() - start if start is not None else 0.0
        entry = outcome.entry
        return FetchResult(
            url=redact(url),
            status=outcome.status,
            reason=outcome.reason,
            detail=redact(outcome.detail),
            http_status=outcome.http_status,
            final_url=redact(final),
            kind=outcome.kind,
            charset=outcome.charset,
            n_bytes=entry.n_bytes if entry else 0,
            sha256=entry.sha256 if entry else None,
            seconds=round(seconds, 3),
            attempts=state.attempts,
            revalidated=outcome.revalidated,
        )

    async def _fetch_hop(self, url: str, budget: asyncio.Timeout, state: _Progress) -> _Outcome:
        """One URL of a redirect chain: robots, then attempts with retries."""
        assert self._origins is not None
        parsed = httpx.URL(url)
        problem = port_problem(parsed)
        if problem:  # a URL not checked by load_url_list: the resolver would raise on it
            return _Outcome("failed", "invalid-url", f"{url}: {problem}")
        origin = await self._origins.ready(parsed)
        if origin.blocked is not None:
            return _Outcome(*origin.blocked)
        assert origin.rules is not None and origin.gate is not None  # set together with `blocked` unset
        if not origin.rules.allowed(url):
            return _Outcome("skipped", "robots-disallowed", f"{origin.name}/robots.txt disallows it for {AGENT}")
        c = self.config
        conditional = True
        attempt = 0
        while True:
            async with origin.gate.slot():
                if origin.blocked is not None:  # the host told another URL to go away while we queued
                    return _Outcome(*origin.blocked)
                assert self._global is not None
                async with self._global:
                    if state.start is None:
                        # The deadline starts with the first request, not while queued behind other URLs.
                        state.start = asyncio.get_running_loop().time()
                        budget.reschedule(state.start + c.url_deadline)
                    state.attempts += 1
                    outcome = await self._attempt(url, conditional=conditional)
            if outcome.status == "refetch":
                conditional = False  # a 304 whose cached body is gone: ask again, unconditionally
                continue
            if outcome.status != "retry":
                return outcome
            wait = backoff_seconds(attempt, c.backoff, c.backoff_max)
            if outcome.retry_after is not None:
                if outcome.retry_after > c.max_retry_after:
                    # Waiting that long would stall the stage; leave the host alone for this run.
                    detail = (
                        f"HTTP {outcome.http_status} with Retry-After {outcome.retry_after:g} s, more than "
                        f"max_retry_after={c.max_retry_after:g} s; the host's other URLs are skipped too"
                    )
                    origin.blocked = ("failed", "rate-limited", detail)
                    return _Outcome("failed", "rate-limited", detail, outcome.http_status)
                wait = max(wait, outcome.retry_after)
                origin.gate.pause_until(asyncio.get_running_loop().time() + outcome.retry_after)
            if attempt >= c.retries:
                return _Outcome("failed", outcome.reason, f"{outcome.detail} (after {attempt + 1} attempts)",
                                outcome.http_status)
            deadline = budget.when()
            if deadline is not None and asyncio.get_running_loop().time() + wait >= deadline:
                # Say what went wrong, not just that the clock ran out while waiting to retry it.
                detail = f"{outcome.detail} (after {attempt + 1} attempts; a retry would pass url_deadline)"
                return _Outcome("failed", outcome.reason, detail, outcome.http_status)
            attempt += 1
            await asyncio.sleep(wait)

    async def _attempt(self, url: str, conditional: bool) -> _Outcome:
        cached = self.cache.get(url) if conditional else None
        headers = {}
        if cached is not None and cached.revalidatable:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        assert self._client is not None
        target, auth = httpx.URL(url), None
        if target.userinfo:
            # Sent as a header, never in the URL: httpx logs every request's URL.
            auth = httpx.BasicAuth(target.username, target.password)
            target = target.copy_with(userinfo=b"")
        try:
            async with self._client.stream("GET", target, headers=headers, auth=auth) as response:
                return await self._handle(url, response, cached if headers else None)
        except AddressNotAllowed as error:  # a redirect, or DNS that changed its answer since robots.txt
            return _Outcome("skipped", "address-not-allowed", str(error))
        except httpx.ConnectError as error:
            return _Outcome("retry", "connect-error", describe_error(error))
        except httpx.TimeoutException as error:
            # Not "timeout": that reason belongs to the extractor (a document over its time limit).
            return _Outcome("retry", "network-timeout", describe_error(error))
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as error:
            return _Outcome("retry", "connection-error", describe_error(error))
        except DecodeError as error:
            return _Outcome("failed", "bad-encoding", str(error))

    async def _handle(self, url: str, response: httpx.Response, cached: CachedResponse | None) -> _Outcome:
        code = response.status_code
        if code in REDIRECT_CODES:
            location = response.headers.get("location")
            if not location:
                return _Outcome("failed", f"http-{code}", "redirect without a Location header", code)
            return _Outcome("redirect", http_status=code, location=location)
        if code == 304:
            if cached is None:
                return _Outcome("failed", "http-304", "304 Not Modified to a request that was not conditional", code)
            body = await asyncio.to_thread(self.cache.body, cached)  # reads and hashes: off the loop
            if body is None:
                return _Outcome("refetch", http_status=code)
            verdict = sniff(body[:SNIFF_BYTES], parse_content_type(cached.content_type))
            if verdict.kind is None:
                return _Outcome("skipped", verdict.reason, verdict.detail, code)
            return self._ok(cached, verdict.kind, code, revalidated=True)
        if code == 429 or code >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return _Outcome("retry", f"http-{code}", f"HTTP {code} {response.reason_phrase}", code, None, retry_after)
        if code not in OK_CODES:
            return _Outcome("failed", f"http-{code}", f"HTTP {code} {response.reason_phrase}", code)
        return await self._read(url, response)

    async def _read(self, url: str, response: httpx.Response) -> _Outcome:
        """Streams the body under the cap of its kind, refusing as early as the bytes allow."""
        c = self.config
        code = response.status_code
        ctype = parse_content_type(response.headers.get("content-type"))
        if ctype.mime in PDF_TYPES:
            cap, cap_name = c.max_pdf_bytes, "max_pdf_bytes"
        elif ctype.mime in HTML_TYPES:
            cap, cap_name = c.max_html_bytes, "max_html_bytes"
        else:  # the first bytes will tell; until then the larger cap holds
            cap, cap_name = max(c.max_html_bytes, c.max_pdf_bytes), "max_pdf_bytes"
        length = _content_length(response)
        if length is not None and length > cap:
            return _Outcome("skipped", "too-large", f"Content-Length {length} > {cap_name}={cap}", code)
        decoder = BoundedDecoder(response.headers.get("content-encoding"))
        body = bytearray()
        kind: str | None = None
        async for chunk in response.aiter_raw():
            body += decoder.feed(chunk, cap - len(body))
            if kind is None and len(body) >= SNIFF_BYTES:
                verdict = sniff(bytes(body[:SNIFF_BYTES]), ctype)
                if verdict.kind is None:
                    return _Outcome("skipped", verdict.reason, verdict.detail, code)
                kind = verdict.kind
                cap, cap_name = (c.max_pdf_bytes, "max_pdf_bytes") if kind == "pdf" else (
                    c.max_html_bytes, "max_html_bytes")
            if len(body) > cap:
                return _Outcome("skipped", "too-large", f"more than {cap_name}={cap} decoded bytes", code)
        decoder.finish()
        if kind is None:
            verdict = sniff(bytes(body), ctype)
            if verdict.kind is None:
                return _Outcome("skipped", verdict.reason, verdict.detail, code)
            kind = verdict.kind
        entry = await asyncio.to_thread(  # fsyncs a body of up to max_pdf_bytes: off the loop
            self.cache.put,
            url,
            bytes(body),
            content_type=response.headers.get("content-type"),
            content_encoding=response.headers.get("content-encoding"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )
        return self._ok(entry, kind, code)

    @staticmethod
    def _ok(entry: CachedResponse, kind: str, code: int, revalidated: bool = False) -> _Outcome:
        charset = parse_content_type(entry.content_type).charset
        return _Outcome("ok", http_status=code, entry=entry, kind=kind, charset=charset, revalidated=revalidated)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None
