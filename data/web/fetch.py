"""Polite, bounded fetching of one URL at a time over a shared httpx client (asyncio).

For each URL: robots.txt of its origin (fetched once), a slot of the origin's HostGate, a GET with
conditional headers when a cached copy exists, retries with back-off on 429/5xx/connection errors,
redirects followed by hand (only to http/https, each hop checked against its own robots.txt), and a
body streamed under a decoded-size cap and typed by its first bytes. Every URL ends in a FetchResult;
none raises. One deadline covers a URL from its first request to its last byte.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx

from data.web.cache import CachedResponse, ResponseCache
from data.web.config import ScrapeConfig
from data.web.decode import ACCEPT_ENCODING, BoundedDecoder, DecodeError
from data.web.politeness import HostGate, backoff_seconds, parse_retry_after
from data.web.robots import MAX_ROBOTS_BYTES, RobotsRules
from data.web.sniff import HTML_TYPES, PDF_TYPES, SNIFF_BYTES, ContentType, parse_content_type, sniff
from data.web.urls import ALLOWED_SCHEMES

AGENT = "curriculum-gpt"  # the token robots.txt files address us by
AGENT_VERSION = "0.1"
REDIRECT_CODES = (301, 302, 303, 307, 308)
OK_CODES = (200, 203)


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


def _origin(url: httpx.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{url.host}:{port}"


class _Origin:
    """One scheme://host:port: its robots rules (fetched once) and its gate. Politeness is per origin."""

    def __init__(self, name: str):
        self.name = name
        self.ready: asyncio.Task[None] | None = None
        self.rules: RobotsRules | None = None
        self.gate: HostGate | None = None
        # Set when none of this origin's URLs should be tried: (status, reason, detail).
        self.blocked: tuple[str, str, str] | None = None


class Fetcher:
    """Fetches URLs politely; use inside one event loop, as `async with Fetcher(...) as fetcher`."""

    def __init__(self, config: ScrapeConfig, cache_dir: str | Path):
        self.config = config
        self.cache = ResponseCache(cache_dir)
        self.agent = user_agent(config.contact_url)
        self._origins: dict[str, _Origin] = {}
        self._client: httpx.AsyncClient | None = None
        self._global: asyncio.Semaphore | None = None

    async def __aenter__(self) -> Fetcher:
        c = self.config
        self._global = asyncio.Semaphore(c.max_concurrency)
        self._client = httpx.AsyncClient(
            follow_redirects=False,  # each hop is checked (scheme, robots, politeness) by us
            timeout=httpx.Timeout(connect=c.connect_timeout, read=c.read_timeout, write=c.read_timeout, pool=None),
            limits=httpx.Limits(max_connections=c.max_concurrency, max_keepalive_connections=c.max_concurrency),
            headers={
                "User-Agent": self.agent,
                "Accept": "text/html,application/xhtml+xml,application/pdf;q=0.9,*/*;q=0.1",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()
        for origin in self._origins.values():
            if origin.ready is not None and not origin.ready.done():
                origin.ready.cancel()

    # -- one URL ---------------------------------------------------------------------------------

    async def fetch(self, url: str) -> FetchResult:
        """Never raises for anything a server or the network does; the result says what happened."""
        state = {"start": None, "attempts": 0}
        seen = [url]
        current = url
        try:
            async with asyncio.timeout(None) as budget:
                for _ in range(self.config.max_redirects + 1):
                    outcome = await self._fetch_hop(current, budget, state)
                    if outcome.status != "redirect":
                        return self._result(url, current, outcome, state)
                    target, refusal = _redirect_target(current, outcome.location)
                    if refusal is not None:
                        return self._result(url, current, refusal, state)
                    if target in seen:
                        loop_path = " -> ".join([*seen[seen.index(target) :], target])
                        return self._result(
                            url, current, _Outcome("failed", "redirect-loop", loop_path, outcome.http_status), state
                        )
                    seen.append(target)
                    current = target
                detail = f"more than max_redirects={self.config.max_redirects}: {' -> '.join(seen)}"
                return self._result(url, current, _Outcome("failed", "too-many-redirects", detail), state)
        except TimeoutError:
            detail = (
                f"not done within url_deadline={self.config.url_deadline:g} s "
                "(slow server, slow-drip body or long retries)"
            )
            return self._result(url, current, _Outcome("failed", "deadline", detail), state)

    def _result(self, url: str, final: str, outcome: _Outcome, state: dict) -> FetchResult:
        start = state["start"]
        seconds = asyncio.get_running_loop().time() - start if start is not None else 0.0
        entry = outcome.entry
        return FetchResult(
            url=url,
            status=outcome.status,
            reason=outcome.reason,
            detail=outcome.detail,
            http_status=outcome.http_status,
            final_url=final,
            kind=outcome.kind,
            charset=outcome.charset,
            n_bytes=entry.n_bytes if entry else 0,
            sha256=entry.sha256 if entry else None,
            seconds=round(seconds, 3),
            attempts=state["attempts"],
            revalidated=outcome.revalidated,
        )

    async def _fetch_hop(self, url: str, budget: asyncio.Timeout, state: dict) -> _Outcome:
        """One URL of a redirect chain: robots, then attempts with retries."""
        origin = await self._ready_origin(httpx.URL(url))
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
                    if state["start"] is None:
                        # The deadline starts with the first request, not while queued behind other URLs.
                        state["start"] = asyncio.get_running_loop().time()
                        budget.reschedule(state["start"] + c.url_deadline)
                    state["attempts"] += 1
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
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                return await self._handle(url, response, cached if headers else None)
        except httpx.ConnectError as error:
            return _Outcome("retry", "connect-error", _describe(error))
        except httpx.TimeoutException as error:
            # Not "timeout": that reason belongs to the extractor (a document over its time limit).
            return _Outcome("retry", "network-timeout", _describe(error))
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as error:
            return _Outcome("retry", "connection-error", _describe(error))
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

    # -- robots.txt ------------------------------------------------------------------------------

    async def _ready_origin(self, url: httpx.URL) -> _Origin:
        name = _origin(url)
        origin = self._origins.get(name)
        if origin is None:
            origin = self._origins[name] = _Origin(name)
            origin.ready = asyncio.get_running_loop().create_task(self._load_robots(origin))
        assert origin.ready is not None
        # Shielded: one URL's deadline must not cancel the robots fetch other URLs wait for.
        await asyncio.shield(origin.ready)
        return origin

    async def _load_robots(self, origin: _Origin) -> None:
        c = self.config
        outcome = await self._fetch_robots(origin.name + "/robots.txt")
        loop = asyncio.get_running_loop()
        if isinstance(outcome, RobotsRules):
            delay = outcome.delay()
            if delay is not None and delay > c.max_crawl_delay:
                origin.blocked = (
                    "skipped",
                    "crawl-delay-too-long",
                    f"{origin.name}/robots.txt asks for {delay:g} s between requests, more than "
                    f"max_crawl_delay={c.max_crawl_delay:g} s; raise it to crawl this host that slowly",
                )
                return
            origin.rules = outcome
            # A host that sets a Crawl-delay wants one request at a time.
            limit = 1 if delay is not None else c.per_host
            spacing = max(c.per_host_delay, delay or 0.0)
            origin.gate = HostGate(limit, spacing, not_before=loop.time() + spacing)
        else:
            origin.blocked = outcome

    async def _fetch_robots(self, url: str) -> RobotsRules | tuple[str, str, str]:
        """The rules, or the (status, reason, detail) that blocks the origin."""
        c = self.config
        assert self._client is not None and self._global is not None
        last = ""
        try:
            async with asyncio.timeout(c.url_deadline):
                for _ in range(5):  # RFC 9309: follow at least five redirects
                    for attempt in range(c.retries + 1):
                        if attempt:
                            await asyncio.sleep(backoff_seconds(attempt - 1, c.backoff, c.backoff_max))
                        async with self._global:
                            result = await self._robots_attempt(url)
                        if result[0] != "retry":
                            break
                        last = result[1]
                    else:
                        status = "failed"
                        if last.startswith("http-"):
                            return status, "robots-unavailable", f"{url}: {last} after {c.retries + 1} attempts"
                        return status, "host-unreachable", f"{url}: {last} after {c.retries + 1} attempts"
                    kind, payload = result
                    if kind == "rules":
                        return RobotsRules.from_text(payload, AGENT)
                    if kind == "none":
                        return RobotsRules.allow_all(AGENT)
                    target, refusal = _redirect_target(url, payload)
                    if refusal is not None or target is None:
                        return RobotsRules.allow_all(AGENT)  # a robots.txt that leads nowhere has no rules
                    url = target
                return RobotsRules.allow_all(AGENT)
        except TimeoutError:
            return "failed", "host-unreachable", f"{url} not answered within url_deadline={c.url_deadline:g} s"

    async def _robots_attempt(self, url: str) -> tuple[str, str]:
        """("rules", text), ("none", ""), ("redirect", location) or ("retry", why)."""
        assert self._client is not None
        try:
            async with self._client.stream("GET", url) as response:
                code = response.status_code
                if code in REDIRECT_CODES and response.headers.get("location"):
                    return "redirect", response.headers["location"]
                if code == 429 or code >= 500:
                    return "retry", f"http-{code}"
                if code not in OK_CODES:
                    return "none", ""  # 4xx: the site has no rules for anyone
                decoder = BoundedDecoder(response.headers.get("content-encoding"))
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += decoder.feed(chunk, MAX_ROBOTS_BYTES - len(body))
                    if len(body) >= MAX_ROBOTS_BYTES:
                        break  # the rules that matter are at the top; cut, do not refuse
                return "rules", bytes(body[:MAX_ROBOTS_BYTES]).decode("utf-8", errors="replace")
        except httpx.TransportError as error:
            return "retry", _describe(error)
        except DecodeError:
            return "none", ""


def _redirect_target(current: str, location: str | None) -> tuple[str | None, _Outcome | None]:
    """The absolute next URL of a redirect, or the outcome that refuses it."""
    try:
        target = httpx.URL(current).join(location or "")
    except httpx.InvalidURL as error:
        return None, _Outcome("failed", "invalid-redirect", f"Location {location!r}: {error}")
    if target.scheme not in ALLOWED_SCHEMES:
        detail = f"redirect from {current} to {location!r} refused: only http and https are followed"
        return None, _Outcome("skipped", "unsupported-scheme", detail)
    return str(target.copy_with(fragment=None)), None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if not text.startswith(type(error).__name__) else text
