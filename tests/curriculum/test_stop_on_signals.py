"""curriculum/training/stop.py with real signals: the request reaches a training thread that Python never delivers
signals to, the main thread is still interrupted, and the handlers that were there before come back."""

from __future__ import annotations

import contextvars
import os
import signal
import threading
import time

import pytest

from curriculum.training.stop import stop_on_signals, stop_requested


def a_training_loop(seen: list[str | None], started: threading.Event) -> None:
    started.set()
    deadline = time.monotonic() + 30
    while stop_requested() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    seen.append(stop_requested())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_reaches_the_training_thread_and_then_does_what_it_did_before(signum):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    expected = KeyboardInterrupt if signum == signal.SIGINT else SystemExit
    seen: list[str | None] = []
    started = threading.Event()
    with pytest.raises(expected):
        with stop_on_signals():
            # Submitted inside the block, like a flow's tasks: in a copy of its context.
            worker = threading.Thread(target=contextvars.copy_context().run, args=(a_training_loop, seen, started))
            worker.start()
            started.wait(10)
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises in this (main) thread long before
    worker.join(10)
    # The loop saw the request, though the block was left (by the exception) before it looked.
    assert seen == [signum.name]
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert stop_requested() is None  # outside the block: nothing to stop


def test_without_a_signal_nothing_is_requested_and_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with stop_on_signals() as stop:
            assert stop_requested() is None
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            stop.request("asked by hand")  # e.g. from a thread that cannot set signal handlers
            assert stop_requested() == "asked by hand"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
