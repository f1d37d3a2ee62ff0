"""Stopping training when its flow ends early (Ctrl-C, SIGTERM, a cancelled run, a failing stage): at its next step,
with a checkpoint.

Training runs on a task runner's thread, and Python raises a signal's exception in the main thread only. Without
this, Ctrl-C interrupted the flow's main thread, which then waited for the training thread to finish its whole
stage (measured: a stage with 3 minutes left ran them all). `stop_on_exit()` goes around a flow's body: when an
exception leaves it (KeyboardInterrupt from Ctrl-C, Prefect's TerminationSignal from SIGTERM or a cancellation,
any error), it asks the training loops started inside it to stop, waits until they have, and lets the exception go
on. A loop stops after the step it is on, saves a checkpoint of that step and raises TrainingStopped, so running
the same command again resumes from there. Signal handlers are left as they are (Prefect's own SIGTERM handler
is how a cancelled run is acknowledged as Cancelled).

The request travels in a context variable: tasks submitted inside the block run in a copy of its context.
"""

from __future__ import annotations

import contextvars
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = ("interrupted: a stage in training saved a checkpoint of the step it was on, and finished steps stay "
               "cached; run the same command again to resume")  # what the command lines print on Ctrl-C (exit 130)


class TrainingStopped(RuntimeError):
    """Training stopped on request; the message names the stage, the step and the checkpoint to resume from."""


class StopRequest:
    """One flow body's stop: the reason once requested, and the training loops still running under it."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._running = 0
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        """How many training loops under this request have not ended yet."""
        with self._changed:
            return self._running

    def request(self, reason: str) -> None:
        with self._changed:
            self.reason = self.reason or reason

    def wait_stopped(self) -> None:
        """Until every training loop under this request has ended (a loop ends within a step once asked)."""
        with self._changed:
            while self._running:
                self._changed.wait(0.5)  # a timeout, so a second Ctrl-C is raised here at once

    @contextmanager
    def loop(self) -> Iterator[None]:
        with self._changed:
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


_current: contextvars.ContextVar[StopRequest | None] = contextvars.ContextVar("curriculum_stop", default=None)


def stop_requested() -> str | None:
    """Why the training in this context should stop (e.g. "SIGINT"), or None to go on."""
    current = _current.get()
    return current.reason if current is not None else None


@contextmanager
def training_loop() -> Iterator[None]:
    """Around a training loop: the flow body it runs under waits for it to end before leaving on an exception."""
    current = _current.get()
    if current is None:
        yield
        return
    with current.loop():
        yield


def reason_of(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "SIGINT"
    signum = getattr(error, "signal", None)  # Prefect's TerminationSignal
    if isinstance(signum, int):
        return signal.Signals(signum).name
    return f"the flow is ending: {type(error).__name__}"


@contextmanager
def stop_on_exit() -> Iterator[StopRequest]:
    """Around a flow's body: an exception leaving it stops the training loops started inside, at their next step,
    before it goes on (so the run folder's lock, held outside, is released only once their checkpoints are
    written)."""
    stop = StopRequest()
    token = _current.set(stop)
    try:
        yield stop
    except BaseException as error:
        stop.request(reason_of(error))
        if isinstance(error, KeyboardInterrupt) or getattr(error, "signal", None) is not None:
            print(f"\n{stop.reason}: training stops at its next step, with a checkpoint", file=sys.stderr, flush=True)
        stop.wait_stopped()
        raise
    finally:
        _current.reset(token)
