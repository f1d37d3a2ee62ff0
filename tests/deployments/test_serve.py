"""`python deployments/serve.py` against a real Prefect server, runs started with `prefect deployment run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.support.configs import TINY_CONFIG
from tests.support.prefect_server import ROOT, api_client, trigger, wait_for_run

# A Prefect server and serve.py processes (the check without a server starts serve.py too).
pytestmark = pytest.mark.slow


def task_runs_of(server, flow_run_id):
    with api_client(server) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_both_deployments_are_served_with_their_preset_and_a_typed_form(served):
    with api_client(served.server) as client:
        for name in ("simple", "default"):
            deployment = client.read_deployment_by_name(f"curriculum/{name}")
            assert deployment.parameters == {"type": name}
            # Imported as a module: loading flows/curriculum.py by path would hide the `curriculum` package.
            assert deployment.entrypoint == "flows.curriculum.curriculum"
            assert deployment.enforce_parameter_schema
            properties = deployment.parameter_openapi_schema["properties"]
            assert properties["type"]["enum"] == ["simple", "default"]
            assert {"config_path", "overrides", "resume", "restart", "prepare_only"} <= set(properties)


def test_a_prepare_only_run_completes_with_a_task_run_per_step_and_stage(prepared_run, served):
    run = prepared_run.flow_run
    assert run.state.is_completed(), f"{run.state_name}: {run.state.message}\n{served.log()[-4000:]}"
    assert run.parameters == {"type": "simple", "prepare_only": True, "config_path": str(prepared_run.config_path)}
    task_runs = {task_run.name: task_run for task_run in task_runs_of(served.server, run.id)}
    for name in ("fetch-warmup", "tokenize-warmup", "shard-warmup"):
        assert name in task_runs, sorted(task_runs)
        assert task_runs[name].state.is_completed()
    # The run wrote where the YAML said, not into the serving process's folder.
    assert sorted(p.name for p in prepared_run.data_dir.glob("*.bin")) == [
        "train_warmup_pretrain.bin", "val_warmup_pretrain.bin"]
    assert not (served.cwd / "out").exists()


def test_a_prepare_only_run_publishes_its_data_summary(prepared_run, served):
    with api_client(served.server) as client:
        of_run = FlowRunFilter(id=FlowRunFilterId(any_=[prepared_run.flow_run.id]))
        artifacts = client.read_artifacts(flow_run_filter=of_run)
    tables = {artifact.key: artifact for artifact in artifacts if artifact.type == "table"}
    assert "tiny-data-summary" in tables, sorted(a.key or "" for a in artifacts)
    rows = json.loads(tables["tiny-data-summary"].data)
    assert [row["stage"] for row in rows] == ["warmup"]
    assert rows[0]["documents"] == 300 and rows[0]["train tokens"] > 0 and rows[0]["val tokens"] > 0


def test_an_unknown_type_is_refused_before_a_run_exists(served):
    with api_client(served.server) as client:
        before = len(client.read_flow_runs())
    flow_run_id, result = trigger(served.server, "curriculum/simple", type="fancy")
    assert result.returncode != 0 and not flow_run_id
    output = result.stdout + result.stderr
    assert "Validation failed for field 'type'" in output
    assert "'fancy' is not one of ['simple', 'default']" in output
    with api_client(served.server) as client:
        assert len(client.read_flow_runs()) == before


def test_a_misspelled_override_fails_the_run_before_any_work(served, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(data_dir=tmp_path / "data"))
    flow_run_id, result = trigger(served.server, "curriculum/simple", prepare_only=True, config_path=str(config),
                                  overrides={"model.n_layr": 2})
    assert result.returncode == 0, result.stdout + result.stderr
    run = wait_for_run(served.server, flow_run_id, log=served.log_path)
    assert run.state.is_failed()
    message = run.state.message
    assert "model.n_layr: unknown key 'n_layr'" in message
    assert "n_layer" in message  # what is allowed
    assert task_runs_of(served.server, run.id) == []
    assert not (tmp_path / "data").exists()


def test_serving_without_a_server_says_how_to_start_one(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)  # no profile that names a server
    result = subprocess.run([sys.executable, str(ROOT / "deployments" / "serve.py")], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "PREFECT_API_URL is not set" in result.stderr
    assert "prefect server start" in result.stderr and "export PREFECT_API_URL=" in result.stderr
