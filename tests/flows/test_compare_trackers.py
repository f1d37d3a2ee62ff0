"""`python flows/compare.py --set train.loggers=[mlflow]`: one MLflow run for the comparison, and each arm's run a
child (nested) run of it, on a real MLflow server; every arm's rows in its own run, each step once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from curriculum.training.mlflow_tracker import RUN_FILE
from curriculum.training.run_dir import read_metrics
from curriculum.training.trackers import metrics_of
from tests.support.configs import COMPARE_TAIL
from tests.support.prefect_server import ROOT

pytestmark = pytest.mark.slow  # a Prefect server, an MLflow server and a comparison

CONFIG = """\
stages:
  - {{name: warmup, dataset_key: roneneldan/TinyStories, block_size: 32, n_epochs: 1, n_items: 200}}
  - {{name: books, dataset_key: local-files, files: [{book}], block_size: 64, n_epochs: 1}}
""" + COMPARE_TAIL
ARMS = ("curriculum", "flat")
EXPERIMENT = "compare-arms"


def test_compare_arms_are_child_runs_of_one_parent(prefect_server, mlflow_server, shared, hub_mirror, tmp_path):
    config = tmp_path / "tiny2.yaml"
    config.write_text(CONFIG.format(book=shared / "corpora" / "books" / "paine_common-sense_pg147.txt",
                                    data_dir=tmp_path / "data"))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "compare.py"), "--config", str(config), "--seeds", "1",
         "--arms", ",".join(ARMS), "--evals", "4", "--out-dir", str(out), "--set", "train.loggers=[mlflow]"],
        cwd=ROOT, env=prefect_server.env(CURRICULUM_COMPARE_WORKERS="2", CURRICULUM_HUB_MIRROR=str(hub_mirror),
                                         PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=mlflow_server.url,
                                         MLFLOW_EXPERIMENT_NAME=EXPERIMENT),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    client = mlflow_server.client()
    parent_id = json.loads((out / RUN_FILE).read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "tiny2-compare" and parent.info.status == "FINISHED"
    assert json.loads(parent.data.params["compare.arms"]) == list(ARMS) and parent.data.params["compare.seeds"] == "1"

    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 + len(ARMS)  # the parent and one run per arm and seed, nothing else
    children = {run.info.run_name: run for run in runs if run.info.run_id != parent_id}
    assert sorted(children) == sorted(f"{arm}-seed1" for arm in ARMS)
    for name, child in children.items():
        run_dir = out / name
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.info.run_id == json.loads((run_dir / RUN_FILE).read_text())["run_id"]
        assert child.info.status == "FINISHED"
        rows = read_metrics(run_dir)
        for key in ("val_loss", "evals/books"):  # its own val set, and the target every arm is judged on
            history = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, key))
            assert history == [(row["iter_num"], metrics_of(row)[key]) for row in rows], (name, key)
