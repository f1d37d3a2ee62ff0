"""curriculum/training/stop.py: an exception leaving a flow's body (a real Ctrl-C here) reaches the training thread,
which Python never raises a signal's exception in, and the body waits for that thread to stop first."""

from __future__ import annotations

import contextvars
import os
import signal
import threading
import time

import pytest
from prefect.exceptions import TerminationSignal

from curriculum.training.stop import stop_on_exit, stop_requested, training_loop


def a_training_loop(seen: list[str | None], started: threading.Event, ended: threading.Event) -> None:
    with training_loop():
        started.set()
        deadline = time.monotonic() + 30
        while stop_requested() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(stop_requested())
        time.sleep(0.5)  # the checkpoint of the step it stopped at
        ended.set()


def start_loop(seen, started, ended) -> threading.Thread:
    # Submitted inside the block, as a flow submits its tasks: in a copy of its context.
    worker = threading.Thread(target=contextvars.copy_context().run, args=(a_training_loop, seen, started, ended))
    worker.start()
    assert started.wait(10)
    return worker


def test_ctrl_c_stops_the_training_thread_which_ends_before_the_interrupt_goes_on():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    seen: list[str | None] = []
    started, ended = threading.Event(), threading.Event()
    with pytest.raises(KeyboardInterrupt):
        with stop_on_exit():
            worker = start_loop(seen, started, ended)
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here, in the main thread
            time.sleep(10)
    assert ended.is_set()  # waited for, before the interrupt left the block
    assert seen == ["SIGINT"]
    worker.join(10)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # Prefect's SIGTERM handler stays its own
    assert stop_requested() is None  # outside the block: nothing to stop


@pytest.mark.parametrize(("error", "reason"), [
    (TerminationSignal(signal.SIGTERM), "SIGTERM"),  # what Prefect's SIGTERM handler raises (also on cancel)
    (ValueError("a later stage failed to prepare"), "the flow is ending: ValueError"),
])
def test_any_exception_leaving_the_body_stops_training_and_goes_on(error, reason):
    seen: list[str | None] = []
    started, ended = threading.Event(), threading.Event()
    with pytest.raises(type(error)):
        with stop_on_exit():
            start_loop(seen, started, ended)
            raise error
    assert ended.is_set() and seen == [reason]


def test_a_body_that_ends_normally_requests_nothing_and_a_loop_outside_any_body_never_stops():
    with stop_on_exit():
        assert stop_requested() is None
    with training_loop():
        assert stop_requested() is None
