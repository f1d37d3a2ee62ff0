"""Inputs extracted on several sandboxed workers, largest first within a batch, results in input order."""

from __future__ import annotations

import time

from data.extract.sandbox import ExtractionPool
from data.web.ordered_extraction import OrderedExtractions


def sleep_body(seconds: float, width: int) -> bytes:
    """A body the worker's test-sleep kind sleeps on for `seconds`; its length (spaces) stands for its size."""
    return f"{seconds}".ljust(width).encode()


def test_the_largest_input_starts_first_and_results_keep_input_order():
    # Ten short inputs, then a long one: first come, first served, two workers would spend 0.5 s on the short ones
    # and 1.2 s on the long one alone (1.7 s); largest first, the long one overlaps the short ones (1.2 s).
    inputs = [(f"short-{i}", sleep_body(0.1, 10)) for i in range(10)] + [("long", sleep_body(1.2, 100))]
    with ExtractionPool(workers=2, timeout=10) as pool, OrderedExtractions[str](pool, workers=2) as extractions:
        for row, _ in inputs:  # warm the two workers up first: a worker's start is not what is measured
            extractions.add(row, sleep_body(0.0, 1), "test-sleep")
        extractions.start()
        list(extractions.take(0))
        started = time.monotonic()
        for row, body in inputs:
            assert not extractions.add(row, body, "test-sleep")  # 11 inputs: less than a batch
        extractions.start()
        rows = [row for row, result in extractions.take(0)]
        seconds = time.monotonic() - started
    assert rows == [row for row, _ in inputs]
    assert seconds < 1.55, seconds


def test_a_full_batch_starts_itself_and_abandon_names_every_input_not_taken():
    with ExtractionPool(workers=1, timeout=10) as pool, OrderedExtractions[int](pool, workers=1) as extractions:
        full = [extractions.add(i, sleep_body(0.0, 1), "test-sleep") for i in range(40)]
        assert full.index(True) == 31 and extractions.in_last_batch == 32  # 32 inputs per worker
        assert [row for row, _ in extractions.take(35)] == []  # 32 started, none over the 35 to leave
        assert [row for row, _ in extractions.take(30)] == [0, 1]
        assert sorted(extractions.abandon()) == list(range(2, 40))  # started (2-31) and still queued (32-39)
