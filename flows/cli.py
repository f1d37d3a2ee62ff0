"""Command line of `python flows/curriculum.py`: arguments become the flow's parameters; `run_flow` ends it, and
`python flows/compare.py`, with the message of a UserError instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from curriculum.config import ConfigError, load_run_config, parse_override, parse_value
from curriculum.presets import PRESETS
from curriculum.training.stop import INTERRUPTED
from data.errors import UserError
from flows.temporary_server import use_temporary_server

EPILOG = """
examples:
  python flows/curriculum.py --type simple --prepare-only      # prepare all stages (cached)
  python flows/curriculum.py --type simple                     # prepare and train (resumes if interrupted)
  python flows/curriculum.py --config my.yaml --set train.max_iters=50 --set model.preset=tiny
  python flows/curriculum.py --type default --restart          # start over; the old run folder is kept aside
  python flows/curriculum.py --type default --task-runner dask --workers 4   # prepare on a local Dask cluster

offline: CURRICULUM_HUB_MIRROR=../shared/hub TIKTOKEN_CACHE_DIR=../shared/tiktoken
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python flows/curriculum.py",
        description="Curriculum pretraining of a GPT: prepare each stage's data, then train stage by stage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--type", help=f"preset curriculum: {', '.join(PRESETS)} (default: simple)")
    source.add_argument("--config", metavar="FILE.yaml", help="a YAML run config instead of a preset")
    parser.add_argument("--prepare-only", action="store_true", help="prepare (fetch, tokenize, shard) and stop")
    parser.add_argument("--data-dir", metavar="DIR", help="where shards and data caches go (default: out/data)")
    parser.add_argument("--out-dir", metavar="DIR", help="run folder for checkpoints (default: out/runs/<name>)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one setting, repeatable: --set model.n_layer=2 --set stages.warmup.n_items=1000",
    )
    parser.add_argument(
        "--nproc", metavar="N", help="training processes on this machine (train.nproc): a number, or auto = one per GPU"
    )
    parser.add_argument(
        "--task-runner", metavar="RUNNER",
        help="where data preparation runs (prepare.task_runner): threads (default), dask (a local Dask cluster), "
        "or a Dask scheduler's address, e.g. tcp://10.0.0.5:8786",
    )
    parser.add_argument(
        "--workers", metavar="N", help="threads or local Dask workers that prepare at once (prepare.workers; "
        "default: this machine's cores)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="when another run is writing the run or data folder, wait for it to "
        "finish instead of stopping at once (served runs wait by default)",
    )
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoints (default)")
    resume.add_argument("--restart", action="store_true", help="start over; the old run folder is moved aside")
    return parser


def flow_parameters(args: argparse.Namespace) -> dict[str, Any]:
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.data_dir:
        overrides["data.data_dir"] = args.data_dir
    if args.out_dir:
        overrides["train.out_dir"] = args.out_dir
    if args.nproc:
        overrides["train.nproc"] = parse_value(args.nproc)
    if args.task_runner:
        overrides["prepare.task_runner"] = args.task_runner
    if args.workers:
        overrides["prepare.workers"] = parse_value(args.workers)
    # Validate here too, so a mistake is reported before Prefect starts anything.
    load_run_config(type=args.type, config_path=args.config, overrides=overrides)
    return {
        "type": args.type or "simple",
        "config_path": args.config,
        "overrides": overrides,
        "restart": args.restart,
        "prepare_only": args.prepare_only,
        "wait": True if args.wait else None,
    }


def main(flow: Callable[..., Any], argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parameters = flow_parameters(args)
    except ConfigError as error:
        print(f"error: {error}")
        return 2
    try:
        use_temporary_server()
    except UserError as error:  # ServerStartError
        print(f"error: {error}", file=sys.stderr)
        return 1
    exit_code, _ = run_flow(flow, **parameters)
    return exit_code


def run_flow(flow: Callable[..., Any], **parameters: Any) -> tuple[int, Any]:
    """Run `flow` from a command line: (0, its result); (1, None) after a UserError, which ends with its message
    alone (the terminal shows no traceback for it, the run's log in the UI keeps one); (130, None) after Ctrl-C.
    Any other exception is a bug and leaves with its traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    hide_user_error_tracebacks()
    try:
        return 0, flow(**parameters)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1, None
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130, None


class _WithoutUserErrorTraceback(logging.Formatter):
    """The terminal's formatter, except that a record logged with a UserError (Prefect logs the exception that
    fails a task or flow run with its traceback) shows its message alone: the message says what to do."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            # A copy: the handlers before this one (Prefect's API handler, the UI's log) keep the traceback.
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return self.inner.format(record)


def hide_user_error_tracebacks() -> None:
    """Wrap the formatters of the root logger's handlers (Prefect's console handler: its task and flow run
    loggers reach the terminal through it) in _WithoutUserErrorTraceback, once."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _WithoutUserErrorTraceback):
            handler.setFormatter(_WithoutUserErrorTraceback(handler.formatter))
