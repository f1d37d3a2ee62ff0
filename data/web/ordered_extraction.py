"""Extraction of a stage's inputs on several sandboxed workers, whose results come back in input order.

Inputs are taken in batches, and a batch is extracted largest body first: the longest extractions start while there
is other work to overlap them (among the saved pages and PDFs of ../shared, one PDF takes half of all the extraction
time, and in input order it came near the end, alone). The documents, the duplicates kept out and the report do
not depend on which input finishes first, nor on the number of workers.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from data.extract.sandbox import Extracted, ExtractionPool

# Inputs read ahead of the one whose result goes out next: per worker, and bytes in all.
PENDING_INPUTS = 32
PENDING_BYTES = 256 << 20

Row = TypeVar("Row")


class OrderedExtractions(Generic[Row]):
    """`add` inputs (each with its report row) in input order; `take` their results in that order.

        extractions = OrderedExtractions(pool, workers)
        for row, body, kind in inputs:
            if extractions.add(row, body, kind):     # the batch is full: extract it, take the one before
                yield from use(extractions.take(extractions.in_last_batch))
        extractions.start()
        yield from use(extractions.take(0))
    """

    def __init__(self, pool: ExtractionPool, workers: int):
        self.pool, self.workers = pool, workers
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="extract")
        self._batch: list[tuple[Row, bytes, str, str | None, str | None]] = []
        self._batch_bytes = 0
        self._pending: collections.deque[tuple[Row, Future[Extracted], int]] = collections.deque()
        self._pending_bytes = 0
        self.in_last_batch = 0

    def __enter__(self) -> OrderedExtractions[Row]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)

    def add(self, row: Row, body: bytes, kind: str, url: str | None = None, charset: str | None = None) -> bool:
        """Queue an input; True when the batch is full and has been started (take the batches before it)."""
        self._batch.append((row, body, kind, url, charset))
        self._batch_bytes += len(body)
        if len(self._batch) >= PENDING_INPUTS * self.workers or self._batch_bytes > PENDING_BYTES // 2:
            self.start()
            return True
        return False

    def start(self) -> None:
        """Extract the queued inputs, largest first; their results still come out of `take` in input order."""
        started = {
            id(item): self._threads.submit(self.pool.extract, item[1], kind=item[2], url=item[3], charset=item[4])
            for item in sorted(self._batch, key=lambda item: -len(item[1]))
        }
        for item in self._batch:
            self._pending.append((item[0], started[id(item)], len(item[1])))
            self._pending_bytes += len(item[1])
        self.in_last_batch = len(self._batch)
        self._batch, self._batch_bytes = [], 0

    def take(self, leave: int) -> Iterator[tuple[Row, Extracted]]:
        """Results of the started inputs in input order, until `leave` are left (or fewer, when more than
        PENDING_BYTES wait)."""
        while len(self._pending) > leave or (self._pending and self._pending_bytes > PENDING_BYTES):
            row, future, size = self._pending.popleft()
            self._pending_bytes -= size
            yield row, future.result()

    def abandon(self) -> list[Row]:
        """Drop every input not taken yet (queued or started); returns their rows."""
        rows = [item[0] for item in self._batch]
        for row, future, _ in self._pending:
            future.cancel()
            rows.append(row)
        self._batch, self._pending = [], collections.deque()
        return rows
