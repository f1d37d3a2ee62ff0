"""prefect.yaml: `prefect deploy --all` to a process work pool, then `prefect worker start` trains a run of
curriculum/simple (tiny overrides) to its end, with its artifacts.

A server of its own: `prefect deploy` re-points curriculum/simple and curriculum/default at the work pool,
which would take them from the serve.py process the other tests share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.support.configs import TRAIN_OVERRIDES, write_train_config
from tests.support.prefect_server import ROOT, api_client, prefect_cli, trigger, wait_for_run
from tests.support.serving import SHARED

# A Prefect server of its own, `prefect deploy` and a worker process.
pytestmark = pytest.mark.slow

POOL = "curriculum"



def test_prefect_yaml_deploys_both_and_a_process_worker_runs_one(own_server, tmp_path, hub_mirror):
    result = prefect_cli(own_server, "work-pool", "create", POOL, "--type", "process")
    assert result.returncode == 0, result.stdout + result.stderr
    result = prefect_cli(own_server, "deploy", "--all", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    with api_client(own_server) as client:
        for name in ("simple", "default"):
            deployment = client.read_deployment_by_name(f"curriculum/{name}")
            assert deployment.work_pool_name == POOL and deployment.parameters == {"type": name}
            assert deployment.entrypoint == "flows.curriculum.curriculum"
            # Flow runs start in the project root, whatever folder the worker was started in.
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]

    log_path = tmp_path / "worker.log"
    # Runs start in the project root (the pull step); their config and data live under tmp_path and ../shared,
    # allowed through the worker's environment as docs/security.md ("Paths in parameters") says
    # (curriculum/allowed_paths.py).
    env = own_server.env(PREFECT_WORKER_QUERY_SECONDS="1", CURRICULUM_HUB_MIRROR=str(hub_mirror),
                         CURRICULUM_ALLOWED_PATHS=f"{tmp_path}:{SHARED}")
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--limit", "1"],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        config = write_train_config(tmp_path)
        out_dir = tmp_path / "run"
        started = time.monotonic()
        flow_run_id, result = trigger(own_server, "curriculum/simple", config_path=str(config),
                                      overrides={**TRAIN_OVERRIDES, "train.out_dir": str(out_dir)})
        assert result.returncode == 0, result.stdout + result.stderr
        run = wait_for_run(own_server, flow_run_id, log=log_path, timeout=300)
        print(f"\nworker run {run.state_name} {time.monotonic() - started:.1f}s after `prefect deployment run`")
        assert run.state.is_completed(), f"{run.state.message}\n{log_path.read_text()[-4000:]}"
        with api_client(own_server) as client:
            of_run = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            names = {t.name for t in client.read_task_runs(flow_run_filter=of_run)}
            artifacts = {a.key: a for a in client.read_artifacts(flow_run_filter=of_run)}
        stages = ("warmup", "books", "web")
        assert {f"{step}-{stage}" for step in ("fetch", "tokenize", "shard", "train") for stage in stages} <= names
        assert (out_dir / "final" / "model.safetensors").is_file()
        # The UI's artifacts, as a served run publishes them: progress, metrics, data summary, loss curve, summary.
        assert all(artifacts[f"tiny-train-{stage}"].data == 100.0 for stage in stages), sorted(artifacts)
        assert {"tiny-data-summary", "tiny-loss-curve", "tiny-forgetting"} <= set(artifacts), sorted(artifacts)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
