"""Served runs shared by the deployment and UI tests, each made once per session through `prefect deployment run`.

- `prepared_run`: curriculum/simple, prepare-only, of the one-stage TINY_CONFIG.
- `trained_run`: curriculum/simple of the three-stage TRAIN_CONFIG, overrides passed as a parameter.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import TINY_CONFIG, TRAIN_OVERRIDES, write_train_config
from tests.support.prefect_server import trigger, wait_for_run
from tests.support.serving import Served


@dataclass
class PreparedRun:
    flow_run: Any  # prefect.client.schemas.objects.FlowRun, in its terminal state
    config_path: Path
    data_dir: Path
    seconds: float  # from `prefect deployment run` to the terminal state


@pytest.fixture(scope="session")
def prepared_run(served: Served) -> PreparedRun:
    """curriculum/simple with prepare_only and a one-stage, 300-story YAML, run to its end once per session."""
    folder = Path(tempfile.mkdtemp(prefix="prepared-run-"))
    config_path = folder / "tiny.yaml"
    config_path.write_text(TINY_CONFIG.format(data_dir=folder / "data"))
    started = time.monotonic()
    flow_run_id, result = trigger(served.server, "curriculum/simple", prepare_only=True, config_path=str(config_path))
    assert result.returncode == 0 and flow_run_id, result.stdout + result.stderr
    run = wait_for_run(served.server, flow_run_id, log=served.log_path)
    prepared = PreparedRun(run, config_path, folder / "data", time.monotonic() - started)
    print(f"served prepare-only run {run.name} {run.state_name} in {prepared.seconds:.1f}s", flush=True)
    return prepared


@dataclass
class TrainedRun:
    flow_run: Any
    config_path: Path
    data_dir: Path
    out_dir: Path
    seconds: float


@pytest.fixture(scope="session")
def trained_run(served: Served) -> TrainedRun:
    """curriculum/simple with a three-stage YAML and overrides through parameters: prepared and trained once."""
    folder = Path(tempfile.mkdtemp(prefix="trained-run-"))
    config_path = write_train_config(folder)
    out_dir = folder / "run"
    started = time.monotonic()
    flow_run_id, result = trigger(served.server, "curriculum/simple", config_path=str(config_path),
                                  overrides={**TRAIN_OVERRIDES, "train.out_dir": str(out_dir)})
    assert result.returncode == 0 and flow_run_id, result.stdout + result.stderr
    run = wait_for_run(served.server, flow_run_id, log=served.log_path, timeout=300)
    trained = TrainedRun(run, config_path, folder / "data", out_dir, time.monotonic() - started)
    print(f"served training run {run.name} {run.state_name} in {trained.seconds:.1f}s", flush=True)
    return trained
