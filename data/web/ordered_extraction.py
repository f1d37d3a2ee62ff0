"""Extraction of a stage's inputs on several sandboxed workers, whose results come back in input order.

Inputs are taken in batches, and a batch is extracted largest body first: the longest extractions start while there
is other work to overlap them (among the saved pages and PDFs of ../shared, one PDF takes half of all the extraction
time, and in input order it came near the end, alone). The documents, the duplicates kept out and the report do
not depend on which input finishes first, nor on the number of workers: an input left out as it is read comes
back from `take` in its turn too (with no result), to be reported then.
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
        self._batch: list[tuple[Row, bytes | None, str, str | None, str | None]] = []
        self._batch_bytes = 0
        self._pending: collections.deque[tuple[Row, Future[Extracted | None], int]] = collections.deque()
        self._pending_bytes = 0
        self.in_last_batch = 0

    def __enter__(self) -> OrderedExtractions[Row]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)

    def add(self, row: Row, body: bytes | None, kind: str = "", url: str | None = None,
            charset: str | None = None) -> bool:
        """Queue an input (body None: one left out when it was read, which `take` gives back in its turn with no
        result); True when the batch is full and has been started (take the batches before it)."""
        self._batch.append((row, body, kind, url, charset))
        self._batch_bytes += len(body or b"")
        if len(self._batch) >= PENDING_INPUTS * self.workers or self._batch_bytes > PENDING_BYTES // 2:
            self.start()
            return True
        return False

    def start(self) -> None:
        """Extract the queued inputs, largest first; their results still come out of `take` in input order."""
        started: dict[int, Future[Extracted | None]] = {}
        for index in sorted(range(len(self._batch)), key=lambda i: -len(self._batch[i][1] or b"")):
            row, body, kind, url, charset = self._batch[index]
            if body is None:
                started[index] = Future()
                started[index].set_result(None)
            else:
                started[index] = self._threads.submit(self.pool.extract, body, kind=kind, url=url, charset=charset)
        for index, (row, body, *_) in enumerate(self._batch):
            self._pending.append((row, started[index], len(body or b"")))
            self._pending_bytes += len(body or b"")
        self.in_last_batch = len(self._batch)
        self._batch, self._batch_bytes = [], 0

    def take(self, leave: int) -> Iterator[tuple[Row, Extracted | None]]:
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
        self._batch_bytes = self._pending_bytes = 0
        return rows
