"""Fetching a URL list on an event loop in a background thread, while the caller takes results in list order.

Why a thread: the source is a plain iterator (the data step writes documents as they come, and Prefect may
already run an event loop in the caller's thread), while fetching is naturally async. Fetching runs ahead of
extraction in list order; bodies wait in the on-disk cache, so memory does not grow with the list.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

from data.web.config import ScrapeConfig
from data.web.fetch import Fetcher, FetchResult


class BackgroundCrawl:
    """`with BackgroundCrawl(urls, config, cache_dir) as crawl: crawl.result(i)` for i in list order."""

    def __init__(self, urls: list[str], config: ScrapeConfig, cache_dir: str | Path):
        self.urls = urls
        self.config = config
        self.cache_dir = Path(cache_dir)
        self._results: dict[int, FetchResult] = {}
        self._error: BaseException | None = None
        self._done = False
        self._stop = False
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="web-crawl", daemon=True)

    def __enter__(self) -> BackgroundCrawl:
        if self.urls:
            self._thread.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def result(self, index: int) -> FetchResult:
        """The result of `urls[index]`, waiting for it; re-raises a crash of the crawl itself."""
        with self._cond:
            while index not in self._results:
                if self._error is not None:
                    raise RuntimeError(f"the web crawl stopped unexpectedly: {self._error!r}") from self._error
                if self._done:
                    raise RuntimeError(f"the web crawl ended without a result for {self.urls[index]}")
                self._cond.wait()
            return self._results.pop(index)

    def has_result(self, index: int) -> bool:
        """Whether `result(index)` would return without waiting (or raise)."""
        with self._cond:
            return index in self._results or self._error is not None or self._done

    def close(self) -> None:
        """Stops fetching (e.g. the stage has its n_items documents) and waits for the thread to end."""
        with self._cond:
            self._stop = True  # seen by a crawl that has not published its loop yet
            loop, main = self._loop, self._main
        if loop is not None and main is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(main.cancel)
            except RuntimeError:
                pass  # the loop closed between our check and the call: the crawl is already over
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._crawl())
        except asyncio.CancelledError:
            pass  # close() asked for it
        except BaseException as error:  # noqa: BLE001 -- handed to the consumer thread, which re-raises it
            with self._cond:
                self._error = error
                self._cond.notify_all()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    async def _crawl(self) -> None:
        with self._cond:
            self._loop = asyncio.get_running_loop()
            self._main = asyncio.current_task()
            if self._stop:
                return
        async with Fetcher(self.config, self.cache_dir) as fetcher:

            async def one(index: int, url: str) -> None:
                result = await fetcher.fetch(url)
                with self._cond:
                    self._results[index] = result
                    self._cond.notify_all()

            await asyncio.gather(*(one(i, url) for i, url in enumerate(self.urls)))
