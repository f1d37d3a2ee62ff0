"""How hard we may press one host: requests in flight, spacing between them, back-off between retries."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import AsyncIterator


class HostGate:
    """At most `limit` requests in flight to one host, their starts at least `delay` seconds apart (jittered).

    The spacing is scheduled, not slept under a lock: each request books the next free start time, so
    waiting requests queue in order and no one holds the host while sleeping for someone else.
    """

    def __init__(self, limit: int, delay: float, not_before: float = 0.0):
        self.limit = limit
        self.delay = delay
        self._slots = asyncio.Semaphore(limit)
        self._next_start = not_before

    def pause_until(self, when: float) -> None:
        """No request to this host starts before `when` (loop time): the host asked us to wait."""
        self._next_start = max(self._next_start, when)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            loop = asyncio.get_running_loop()
            now = loop.time()
            start = max(now, self._next_start)
            # Jitter only lengthens the gap: a Crawl-delay is a floor, never a target to undercut.
            self._next_start = start + self.delay * random.uniform(1.0, 1.5)
            if start > now:
                await asyncio.sleep(start - now)
            yield


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential back-off with jitter for retry `attempt` (0 = first retry)."""
    return min(cap, base * (2**attempt)) * random.uniform(1.0, 1.5)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
