"""flows/cli.py's run_flow: a UserError ends a command line with its message alone, anything else with its
traceback; every error a user can cause is a UserError (tests/flows/test_cli_errors.py runs the command lines)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from curriculum.allowed_paths import PathNotAllowed
from curriculum.config import ConfigError
from curriculum.prepare import ChunkFailed
from curriculum.training.checkpoints import CheckpointError, CheckpointWriteError
from curriculum.training.run_dir import EarlierRunFound, RunMismatchError
from curriculum.training.schedule import ScheduleError
from curriculum.training.stage_loop import NonFiniteLossError
from data.errors import UserError
from data.folder_lock import FolderLocked
from data.hf_reader import HubUnreachable
from data.shards import ShardError, ShardMissing
from data.split import SplitTooSmall
from data.text_files import NoTextFiles
from data.web.urls import ScrapeError, UrlListError
from flows.cli import _WithoutUserErrorTraceback, run_flow
from flows.stage_prep import BatchFailed

# Each user error and the builtin it also is, so an `except ValueError` (or OSError, ...) written before still holds.
USER_ERRORS = {
    ConfigError: ValueError, PathNotAllowed: ValueError, ScheduleError: ValueError, RunMismatchError: ValueError,
    EarlierRunFound: FileExistsError, CheckpointError: ValueError, CheckpointWriteError: OSError,
    NonFiniteLossError: FloatingPointError, FolderLocked: RuntimeError, ChunkFailed: RuntimeError,
    BatchFailed: RuntimeError, ShardError: ValueError, ShardMissing: FileNotFoundError, SplitTooSmall: ValueError,
    NoTextFiles: FileNotFoundError, HubUnreachable: ConnectionError, ScrapeError: RuntimeError,
    UrlListError: RuntimeError,
}


@pytest.mark.parametrize("error, builtin", USER_ERRORS.items(), ids=[e.__name__ for e in USER_ERRORS])
def test_each_user_error_derives_from_the_base_and_keeps_its_builtin(error, builtin):
    assert issubclass(error, UserError) and issubclass(error, builtin)


@pytest.mark.parametrize("error", [ChunkFailed, BatchFailed])  # costly to provoke through a command line
def test_a_user_error_from_the_flow_ends_with_its_message_and_status_1(error, capsys):
    message = "tokenize-web-2/3 failed: TypeError: boom; fix that and run the same command again"

    def flow() -> None:
        raise error(message)

    assert run_flow(flow) == (1, None)
    assert capsys.readouterr().err == f"error: {message}\n"


def test_any_other_error_leaves_with_its_traceback():
    def flow() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        run_flow(flow)


def logged(error: Exception) -> tuple[str, str]:
    """What the terminal and a handler before it (as Prefect's API handler on its run loggers) show of `error`
    logged by a child logger with its traceback, as Prefect logs a failed task or flow run."""
    parent, child = logging.getLogger("cli-test"), logging.getLogger("cli-test.runs")
    terminal, api = io.StringIO(), io.StringIO()
    terminal_handler, api_handler = logging.StreamHandler(terminal), logging.StreamHandler(api)
    terminal_handler.setFormatter(_WithoutUserErrorTraceback(logging.Formatter("%(levelname)s %(message)s")))
    parent.addHandler(terminal_handler)
    child.addHandler(api_handler)
    parent.propagate = False
    try:
        try:
            raise error
        except Exception:
            child.exception("Encountered exception during execution: %r", sys.exc_info()[1])
    finally:
        parent.removeHandler(terminal_handler)
        child.removeHandler(api_handler)
    return terminal.getvalue(), api.getvalue()


def test_the_terminal_shows_a_user_errors_message_without_its_traceback_and_the_ui_log_keeps_it():
    terminal, api = logged(FolderLocked("the run folder /x is in use; give this run another --out-dir"))
    assert terminal == ("ERROR Encountered exception during execution: "
                        "FolderLocked('the run folder /x is in use; give this run another --out-dir')\n")
    assert "Traceback" in api and "--out-dir" in api


def test_the_terminal_shows_the_traceback_of_any_other_error():
    terminal, _ = logged(KeyError("a bug"))
    assert "Traceback" in terminal and "KeyError: 'a bug'" in terminal
