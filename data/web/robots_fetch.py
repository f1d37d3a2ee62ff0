"""robots.txt fetched once per origin and kept for the crawl, with the origin's politeness gate.

Status handling follows RFC 9309: a 4xx robots.txt means no rules (crawl everything); a 5xx or an unreachable
server means "assume everything is disallowed", which here means the origin's URLs are skipped with that
reason rather than fetched. Up to five redirects are followed. A Crawl-delay over max_crawl_delay skips the
origin; any Crawl-delay means one request at a time.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from data.web.config import ScrapeConfig
from data.web.decode import BoundedDecoder, DecodeError
from data.web.politeness import HostGate, backoff_seconds
from data.web.robots import MAX_ROBOTS_BYTES, RobotsRules, robots_text
from data.web.transport import AddressNotAllowed, describe_error
from data.web.urls import join_redirect, origin_of

log = logging.getLogger(__name__)

REDIRECT_CODES = (301, 302, 303, 307, 308)
OK_CODES = (200, 203)
ROBOTS_REDIRECTS = 5  # RFC 9309: follow at least five


class Origin:
    """One scheme://host:port: its robots rules (fetched once) and its gate. Politeness is per origin."""

    def __init__(self, name: str):
        self.name = name
        self.ready: asyncio.Task[None] | None = None
        self.rules: RobotsRules | None = None
        self.gate: HostGate | None = None
        # Set when none of this origin's URLs should be tried: (status, reason, detail).
        self.blocked: tuple[str, str, str] | None = None


class Origins:
    """The origins of one crawl; `await origins.ready(url)` gives the URL's origin with its robots.txt read."""

    def __init__(self, config: ScrapeConfig, client: httpx.AsyncClient, requests: asyncio.Semaphore, agent: str):
        self.config = config
        self.client = client
        self.requests = requests  # the crawl's global in-flight limit, shared with page requests
        self.agent = agent  # the product token robots.txt files address us by
        self._origins: dict[str, Origin] = {}

    async def ready(self, url: httpx.URL) -> Origin:
        name = origin_of(url)
        origin = self._origins.get(name)
        if origin is None:
            origin = self._origins[name] = Origin(name)
            origin.ready = asyncio.get_running_loop().create_task(self._load(origin))
        assert origin.ready is not None
        # Shielded: one URL's deadline must not cancel the robots fetch other URLs wait for.
        await asyncio.shield(origin.ready)
        return origin

    def cancel(self) -> None:
        for origin in self._origins.values():
            if origin.ready is not None and not origin.ready.done():
                origin.ready.cancel()

    async def _load(self, origin: Origin) -> None:
        c = self.config
        try:
            outcome = await self._fetch(origin.name + "/robots.txt")
        except Exception as error:  # noqa: BLE001 -- one origin's surprise must not fail its URLs' neighbours
            log.warning("robots.txt of %s: unexpected %s", origin.name, describe_error(error), exc_info=True)
            origin.blocked = ("failed", "unexpected-error", f"robots.txt of {origin.name}: {describe_error(error)}")
            return
        loop = asyncio.get_running_loop()
        if not isinstance(outcome, RobotsRules):
            origin.blocked = outcome
            return
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

    async def _fetch(self, url: str) -> RobotsRules | tuple[str, str, str]:
        """The rules, or the (status, reason, detail) that blocks the origin."""
        c = self.config
        last = ""
        try:
            async with asyncio.timeout(c.url_deadline):
                for _ in range(ROBOTS_REDIRECTS):
                    for attempt in range(c.retries + 1):
                        if attempt:
                            await asyncio.sleep(backoff_seconds(attempt - 1, c.backoff, c.backoff_max))
                        async with self.requests:
                            result = await self._attempt(url)
                        if result[0] != "retry":
                            break
                        last = result[1]
                    else:
                        reason = "robots-unavailable" if last.startswith("http-") else "host-unreachable"
                        return "failed", reason, f"{url}: {last} after {c.retries + 1} attempts"
                    kind, payload = result
                    if kind == "rules":
                        return RobotsRules.from_text(payload, self.agent)
                    if kind == "none":
                        return RobotsRules.allow_all(self.agent)
                    if kind == "refused":
                        return "skipped", "address-not-allowed", payload
                    target, refusal = join_redirect(url, payload)
                    if refusal is not None or target is None:
                        return RobotsRules.allow_all(self.agent)  # a robots.txt that leads nowhere has no rules
                    url = target
                return RobotsRules.allow_all(self.agent)
        except TimeoutError:
            return "failed", "host-unreachable", f"{url} not answered within url_deadline={c.url_deadline:g} s"

    async def _attempt(self, url: str) -> tuple[str, str]:
        """("rules", text), ("none", ""), ("redirect", location), ("refused", why) or ("retry", why)."""
        try:
            async with self.client.stream("GET", url) as response:
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
                return "rules", robots_text(bytes(body[:MAX_ROBOTS_BYTES]))
        except AddressNotAllowed as error:
            return "refused", str(error)
        except httpx.TransportError as error:
            return "retry", describe_error(error)
        except DecodeError:
            return "none", ""
