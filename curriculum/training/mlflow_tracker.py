"""The MLflow side of the experiment trackers (trackers.py runs it on a thread of its own): one MLflow run per run
folder, continued by every later session of that folder.

    <folder>/mlflow_run.json   {"run_id", "experiment_id", "experiment"}: written once the run exists (to a
                               temporary name, then renamed), read by every later session

A recorded run the server does not have (another server, a deleted run) is replaced by a new one. The run's
parameters are the resolved configuration, flattened (`train.batch_size`); MLflow never changes a parameter, so a
session only adds the ones the run lacks (a resumed run keeps the values it started with). mlflow is imported on
the tracker's thread: it takes seconds, and the extra may be missing where no tracker is asked for.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from curriculum.training.config import TrainConfig
from data.atomic import atomic_write_text
from data.web.urls import redact

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"
DEFAULT_EXPERIMENT = "curriculum"
PARAMS_PER_CALL = 100  # MLflow's limit of parameters per log_batch


def tracking_uri(train_cfg: TrainConfig) -> str | None:
    """train.mlflow_tracking_uri, else MLFLOW_TRACKING_URI; None: MLflow's own default."""
    return train_cfg.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def experiment_name(train_cfg: TrainConfig) -> str:
    """train.mlflow_experiment, else MLFLOW_EXPERIMENT_NAME, else 'curriculum'."""
    return train_cfg.mlflow_experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


class MlflowTracker:
    """The MLflow run of one folder (a run folder, or a comparison's folder), as trackers.py drives it."""

    name = "mlflow"

    def __init__(self, folder: Path, train_cfg: TrainConfig, run_name: str, *, params: dict[str, str],
                 tags: dict[str, str], parent_run_id: str | None = None):
        self.folder, self.run_name, self.params, self.tags = folder, run_name, params, tags
        self.uri, self.experiment = tracking_uri(train_cfg), experiment_name(train_cfg)
        self.parent_run_id = parent_run_id
        self.destination = redact(self.uri) if self.uri else "MLflow's default tracking URI"
        self.run_id: str | None = None  # set by open()
        self.client: Any = None

    def open(self, last_key: str) -> int:
        """Find or create the folder's run, mark it running, add missing parameters; the last step of `last_key`
        it holds (0: none)."""
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        run = self._recorded_run()
        if run is None:
            run = self._create_run()
        elif run.info.status != "RUNNING":
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.run_id = run.info.run_id
        self._log_params({key: value for key, value in self.params.items() if key not in run.data.params})
        history = self.client.get_metric_history(self.run_id, last_key)
        return max((metric.step for metric in history), default=0)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        # One request per row, `last_key` last in it: a row the server has is a row it has whole.
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, stamp, step) for key, value in metrics.items()],
                              synchronous=True)

    def close(self, status: str | None) -> None:
        if status is not None:
            self.client.set_terminated(self.run_id, status)

    def _recorded_run(self) -> Any:
        """The run mlflow_run.json names, if the server has it and it is not deleted; else None."""
        from mlflow.exceptions import MlflowException

        path = self.folder / RUN_FILE
        if not path.is_file():
            return None
        try:
            run_id = json.loads(path.read_text(encoding="utf-8"))["run_id"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s is unreadable (%s); a new MLflow run is started for %s", path, error, self.folder)
            return None
        try:
            run = self.client.get_run(run_id)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            log.warning("MLflow at %s has no run %s (recorded in %s): a new run is started", self.destination,
                        run_id, path)
            return None
        return None if run.info.lifecycle_stage == "deleted" else run

    def _create_run(self) -> Any:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        tags = dict(self.tags)
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
            # A child lives in its parent's experiment: the UI nests runs only within one.
            experiment_id = self.client.get_run(self.parent_run_id).info.experiment_id
        else:
            experiment_id = self._experiment_id()
        run = self.client.create_run(experiment_id, tags=tags, run_name=self.run_name)
        record = {"run_id": run.info.run_id, "experiment_id": experiment_id, "experiment": self.experiment}
        atomic_write_text(self.folder / RUN_FILE, json.dumps(record, indent=2) + "\n")
        log.info("MLflow run %s (%s) at %s for %s", run.info.run_id, self.run_name, self.destination, self.folder)
        return run

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return str(self.client.create_experiment(self.experiment))
            except MlflowException:  # created meanwhile, by a run beside this one (compare's arms)
                found = self.client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise ValueError(f"the MLflow experiment {self.experiment!r} is deleted: restore it (mlflow experiments "
                             "restore) or name another (train.mlflow_experiment or MLFLOW_EXPERIMENT_NAME)")
        return str(found.experiment_id)

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=items[start: start + PARAMS_PER_CALL], synchronous=True)
