"""Experiment trackers (train.loggers): every metrics row also goes to TensorBoard and to MLflow, and neither ever
slows or stops training.

    <run_dir>/tensorboard/      TensorBoard event files (tensorboard_tracker.py): tensorboard --logdir <that>
    <run_dir>/mlflow_run.json   the MLflow run of the folder (mlflow_tracker.py): a resumed run continues it

The step of every value, in both, is the run's iteration: MetricsRow.iter_num, counted over all stages.

Each tracker of a stage's session runs on a daemon thread of its own, fed through a queue: the trainer only
enqueues. The thread asks its tracker for the last step it holds, sends metrics.jsonl's rows after that step (what
a killed session never sent, the rows of a run that turned the tracker on midway), then this session's rows; a row
at or below the last step sent is skipped, so a resumed run logs no step twice. At the stage's end the trainer waits
at most CLOSE_WAIT_S for the threads. A tracker that fails (an exception) or hangs (still busy after that wait) is
warned about once, with the reason, and left behind (as tasks/ui_artifacts.py leaves a Prefect API that is down);
metrics.jsonl has every row, and the tracker's next session sends what it missed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig
from curriculum.training.mlflow_tracker import MlflowTracker
from curriculum.training.run_dir import fingerprint_hash, read_metrics
from curriculum.training.stop import TrainingStopped
from curriculum.training.tensorboard_tracker import TENSORBOARD_DIR, TensorBoardTracker
from curriculum.training.types import MetricsRow, StageStart, TrainListener
from data.errors import UserError
from data.web.urls import redact_all
from model.config import ModelConfig

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 10.0  # how long a stage's end waits for its trackers
PARENT_WAIT_S = 30.0  # how long a comparison's arms wait for its MLflow run to exist, once (it opens as data prepares)
STEP = "iter_num"
LAST_KEY = "val_loss"  # sent last of each row: the step of a row a tracker holds
SCALARS = ("train_loss", "lr", "tokens_per_s", "stage_index", "val_loss_ema")
GROUPS = ("forgetting", "evals", "forgetting_ema", "evals_ema")  # {name: loss} -> "<group>/<name>"
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
MAX_PARAM_CHARS = 6000  # MLflow refuses longer parameter values


class TrackerNotInstalled(UserError, ImportError):
    """train.loggers names a tracker whose package is not installed."""


class Tracker(Protocol):
    name: str  # as in train.loggers
    destination: str  # where it writes, for messages: a folder, a tracking URI (redacted)

    def open(self, last_key: str) -> int:
        """Connect; the last step at which it holds `last_key` (0: none)."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self, status: str | None) -> None:
        """Flush and let go; `status` (FINISHED, FAILED, KILLED, or None: still running) where it keeps one."""


def check_trackers_installed(loggers: Sequence[str]) -> None:
    """TrackerNotInstalled before training starts if a tracker's package is missing."""
    missing = [PACKAGES[name] for name in loggers if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        raise TrackerNotInstalled(
            f"train.loggers={list(loggers)} needs {' and '.join(missing)}, not installed in this environment: install "
            "the trackers extra (pip install -c requirements-lock.txt -e '.[trackers]'), or leave it out of "
            "train.loggers"
        )


def metrics_of(row: Mapping[str, Any]) -> dict[str, float]:
    """A row's values by tracker name (`forgetting/<stage>`), LAST_KEY last; non-finite values (the tokens/s of
    a stage-end evaluation right after a resume) left out."""
    values = {key: row[key] for key in SCALARS if key in row}
    for group in GROUPS:
        values |= {f"{group}/{name}": loss for name, loss in row.get(group, {}).items()}
    values[LAST_KEY] = row[LAST_KEY]
    return {key: float(value) for key, value in values.items()
            if isinstance(value, (int, float)) and math.isfinite(value)}


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested configuration as tracker parameters, `section.key` -> text (lists as JSON), URLs' passwords
    redacted, cut to MLflow's limit."""
    params: dict[str, str] = {}
    for key, value in redact_all(dict(config)).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            params |= flat_params(value, f"{name}.")
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        params[name] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return params


def run_params(curriculum: Curriculum, model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict[str, str]:
    """The resolved configuration a stage trains with: `stages.<name>.<field>`, `model.*`, `train.*`."""
    return flat_params({"stages": stages_by_name(curriculum), "model": model_cfg.model_dump(mode="json"),
                        "train": train_cfg.model_dump(mode="json")})


def stages_by_name(curriculum: Curriculum) -> dict[str, Any]:
    return {stage.name: stage.model_dump(mode="json", exclude_none=True) for stage in curriculum.stages}


class _Health:
    """What this process knows of each destination: once a tracker to it failed or hung, later ones are not warned
    about again and do not hold a stage's end for it, until it answers again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._stuck: set[str] = set()

    def warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message)

    def is_stuck(self, key: str) -> bool:
        with self._lock:
            return key in self._stuck

    def mark_stuck(self, key: str) -> None:
        with self._lock:
            self._stuck.add(key)

    def answered(self, key: str) -> None:
        with self._lock:
            self._warned.discard(key)
            self._stuck.discard(key)


_health = _Health()


_chains_lock = threading.Lock()
_latest_of_chain: dict[str, _Feed] = {}  # the newest feed of each (tracker, destination, run folder) in this process


class _Feed:
    """One tracker on a daemon thread of its own, fed through a queue (see the module docstring).

    Feeds of one `chain` (a tracker, its destination and the run folder) run one after the other: a session left
    to finish in the background (a hung tracker at a stage's end) ends before the next one asks for its last step,
    so a tracker that answers again never gets a step from both."""

    def __init__(self, tracker: Tracker, backlog: list[dict[str, Any]], chain: str):
        self.tracker = tracker
        self.key = f"{tracker.name} {tracker.destination}"
        self.opened, self.done = threading.Event(), threading.Event()
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        for row in backlog:
            self._queue.put(("row", row))
        with _chains_lock:
            self._before = _latest_of_chain.get(chain)
            _latest_of_chain[chain] = self
        threading.Thread(target=self._run, name=f"tracker-{tracker.name}", daemon=True).start()

    def send(self, row: Mapping[str, Any]) -> None:
        if not self.done.is_set():
            self._queue.put(("row", dict(row)))

    def ask_to_close(self, status: str | None) -> None:
        self._queue.put(("close", status))

    def wait(self, deadline: float, what: str) -> bool:
        """Until the thread is done, at most until `deadline` (not at all for a destination stuck before)."""
        timeout = 0.0 if _health.is_stuck(self.key) else max(0.0, deadline - time.monotonic())
        if self.done.wait(timeout):
            return True
        _health.mark_stuck(self.key)
        self.warn(f"still busy after {CLOSE_WAIT_S:.0f} s at {what} (no answer); it is left to finish in the "
                  "background while this process runs")
        return False

    def warn(self, reason: str) -> None:
        _health.warn_once(self.key, f"the {self.tracker.name} tracker ({self.tracker.destination}) {reason}; training "
                                    "goes on without it: metrics.jsonl has every row, and its next session (a resume, "
                                    "the next stage) sends the rows it missed")

    def _run(self) -> None:
        try:
            if self._before is not None:
                self._before.done.wait()
            last = self.tracker.open(LAST_KEY)
            _health.answered(self.key)
            self.opened.set()
            while True:
                kind, item = self._queue.get()
                if kind == "close":
                    self.tracker.close(item)
                    return
                step = int(item[STEP])
                if step > last:  # at or below: sent by an earlier session (a resumed run evaluates it again)
                    self.tracker.log(step, metrics_of(item))
                    last = step
        except Exception as error:  # unreachable, refusing, misconfigured, a full disk: training goes on
            self.warn(f"failed ({type(error).__name__}: {error})")
        finally:
            self.done.set()


class StageTrackers(TrainListener):
    """A stage session's trackers, as a trainer listener: started at on_stage_start (once metrics.jsonl is rewound to
    where training resumes), fed at on_eval, ended by close()."""

    def __init__(self, train_cfg: TrainConfig, run_dir: Path, *, params: dict[str, str], tags: dict[str, str]):
        self.train_cfg, self.run_dir, self.params, self.tags = train_cfg, run_dir, params, tags
        self.feeds: list[_Feed] = []

    def trackers(self) -> list[Tracker]:
        made: list[Tracker] = []
        for name in self.train_cfg.loggers:
            if name == "tensorboard":
                made.append(TensorBoardTracker(self.run_dir / TENSORBOARD_DIR))
            else:
                made.append(MlflowTracker(self.run_dir, self.train_cfg, self.run_dir.name, params=self.params,
                                          tags=self.tags, parent_run_id=self.train_cfg.mlflow_parent_run_id))
        return made

    def on_stage_start(self, start: StageStart) -> None:
        backlog = read_metrics(self.run_dir)  # before this session evaluates: nothing appends to it meanwhile
        self.feeds = [_Feed(tracker, backlog, chain=f"{tracker.name} {tracker.destination} {self.run_dir.resolve()}")
                      for tracker in self.trackers()]

    def on_eval(self, row: MetricsRow) -> None:
        for feed in self.feeds:
            feed.send(row)

    def close(self, status: str | None, what: str) -> None:
        for feed in self.feeds:
            feed.ask_to_close(status)
        deadline = time.monotonic() + CLOSE_WAIT_S
        for feed in self.feeds:
            feed.wait(deadline, what)


@contextlib.contextmanager
def stage_trackers(train_cfg: TrainConfig, run_dir: Path, *, curriculum: Curriculum, model_cfg: ModelConfig,
                   fingerprint: dict[str, Any], stage: str, last_stage: bool) -> Iterator[TrainListener]:
    """The trackers of train.loggers for one stage's session (a listener that does nothing without any). Leaving,
    the MLflow run is marked FINISHED after the last stage, KILLED when training was stopped, FAILED on an error."""
    if not train_cfg.loggers:
        yield TrainListener()
        return
    tags = {"fingerprint_sha256": fingerprint_hash(fingerprint), "run_dir": str(run_dir)}
    trackers = StageTrackers(train_cfg, run_dir, params=run_params(curriculum, model_cfg, train_cfg), tags=tags)
    status: str | None = None
    try:
        yield trackers
        status = "FINISHED" if last_stage else None
    except (TrainingStopped, KeyboardInterrupt):
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        trackers.close(status, f"the end of stage {stage!r}")


class ComparisonRun:
    """The MLflow run of a comparison (flows/compare.py), each arm's run its child; `<folder>/mlflow_run.json`
    makes a resumed comparison continue it. Opened on a thread as a stage's trackers are."""

    def __init__(self, train_cfg: TrainConfig, folder: Path, name: str, params: dict[str, str]):
        self.tracker = MlflowTracker(folder, train_cfg, name, params=params, tags={"compare_dir": str(folder)},
                                     parent_run_id=train_cfg.mlflow_parent_run_id)
        self.feed = _Feed(self.tracker, [], chain=f"compare {self.tracker.destination} {folder.resolve()}")

    def run_id(self) -> str | None:
        """The run's id once MLflow has it, waiting at most PARENT_WAIT_S; None if it failed or did not answer (the
        arms then log as runs of their own)."""
        if not self.feed.opened.wait(0.0 if _health.is_stuck(self.feed.key) else PARENT_WAIT_S):
            if not self.feed.done.is_set():  # a failure was warned about on the thread
                _health.mark_stuck(self.feed.key)
                self.feed.warn(f"did not answer within {PARENT_WAIT_S:.0f} s as the arms started, so they are not "
                               "nested under one run")
            return None
        return self.tracker.run_id

    def close(self, status: str) -> None:
        """Mark the run FINISHED, FAILED or KILLED (a stopped comparison), waiting at most CLOSE_WAIT_S."""
        self.feed.ask_to_close(status)
        self.feed.wait(time.monotonic() + CLOSE_WAIT_S, "the end of the comparison")


@contextlib.contextmanager
def comparison_tracking(config: Any, folder: Path, settings: Mapping[str, Any]) -> Iterator[ComparisonRun | None]:
    """comparison_run for the block: its MLflow run is marked FINISHED when the block ends, KILLED when the
    comparison was stopped (Ctrl-C, SIGTERM, a cancelled run), FAILED on any other error."""
    run = comparison_run(config, folder, settings)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except (TrainingStopped, KeyboardInterrupt):
        status = "KILLED"
        raise
    finally:
        if run is not None:
            run.close(status)


def comparison_run(config: Any, folder: Path, settings: Mapping[str, Any]) -> ComparisonRun | None:
    """The MLflow run of a comparison of `config` (a RunConfig) in `folder` when its train.loggers has mlflow, named
    `<config name>-compare`; its parameters are the resolved configuration and the comparison's `settings` (arms,
    seeds, ...: `compare.*`). None without mlflow."""
    if "mlflow" not in config.train.loggers:
        return None
    check_trackers_installed(["mlflow"])
    params = {"compare": dict(settings), **config.model_dump(mode="json", exclude={"stages"}),
              "stages": stages_by_name(config)}
    return ComparisonRun(config.train, folder, f"{config.name}-compare", flat_params(params))
