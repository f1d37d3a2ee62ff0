"""Stopping training on request (Ctrl-C, SIGTERM, a cancelled flow run): at its next step, with a checkpoint.

Training runs on a task runner's thread, and Python runs signal handlers in the main thread only. Without this,
Ctrl-C interrupted the flow's main thread, which then waited for the training thread to finish its whole stage
(measured: a stage with 3 minutes left ran to its end after Ctrl-C). `stop_on_signals()`, around a flow's body in
the main thread, makes the first SIGINT or SIGTERM ask the training loops started inside it to stop: a loop saves
a checkpoint at the step it is on and raises TrainingStopped, so running the same command again resumes from that
step. The signal then does what it did before (KeyboardInterrupt, or Prefect's own handler), so the main thread
stops waiting too.

The request travels in a context variable: tasks submitted inside the block run in a copy of its context and keep
seeing it after the block has been left (the flow's main thread leaves it first, while training still runs).
"""

from __future__ import annotations

import contextvars
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED = ("interrupted: training saved a checkpoint at the step it was on, finished steps stay cached; run the "
               "same command again to resume")  # what the command lines print on Ctrl-C (exit code 130)


class TrainingStopped(RuntimeError):
    """Training stopped on request; the message names the stage, the step and the checkpoint to resume from."""


class StopRequest:
    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason


_current: contextvars.ContextVar[StopRequest | None] = contextvars.ContextVar("curriculum_stop", default=None)


def stop_requested() -> str | None:
    """Why the training in this context should stop (e.g. "SIGINT"), or None to go on."""
    current = _current.get()
    return current.reason if current is not None else None


@contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """While inside: the first of `signals` requests a stop, then runs the handler it had before. Outside the main
    thread (where Python cannot set handlers) the request can still be made by calling the yielded object's
    `request`. A signal someone set to be ignored stays ignored."""
    stop = StopRequest()
    token = _current.set(stop)
    previous: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.getsignal(sig) for sig in signals}

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.reason is None:
            print(f"\n{signal.Signals(signum).name}: training stops at its next step, with a checkpoint "
                  "(Ctrl-C again to leave at once)", file=sys.stderr, flush=True)
        stop.request(signal.Signals(signum).name)
        before = previous[signal.Signals(signum)]
        if callable(before):
            before(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)  # the default action ends the process: end it, after the checkpoint

    for sig, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for sig, before in previous.items():
            if before is not signal.SIG_IGN and before is not None:
                signal.signal(sig, before)  # type: ignore[arg-type]
        _current.reset(token)
