"""Two served runs of one run folder: the second queues on the folder's concurrency limit (flows/run_folders.py),
shown as waiting in the UI, and trains once the first has ended; both complete.

A server of its own, served by a serve.py that runs two flow runs at once (the shared one runs one at a time, so
two of its runs never meet at a folder).
"""

from __future__ import annotations

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

from flows.run_folders import folder_slot
from tests.support.configs import TRAIN_OVERRIDES, write_train_config
from tests.support.pause import pause_env, wait_until_paused
from tests.support.prefect_server import api_client, trigger, wait_for, wait_for_run
from tests.support.serving import start_serve

# A Prefect server of its own, serve.py and two served training runs.
pytestmark = pytest.mark.slow



def task_runs(server, flow_run_id) -> dict:
    with api_client(server) as client:
        found = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in found}


def run_logs(server, flow_run_id) -> str:
    with api_client(server) as client:
        found = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(entry.message for entry in found)


def test_a_second_served_run_of_one_run_folder_waits_for_the_first_then_trains(own_server, hub_mirror, tmp_path):
    paused = tmp_path / "paused"
    # Every run of this serve.py stops after iteration 2 of its first stage until the test deletes `paused`.
    served = start_serve(own_server, tmp_path, {"CURRICULUM_HUB_MIRROR": str(hub_mirror),
                                                **pause_env(paused, "step", stage_index=0, stage_iter=2)},
                         args=("--limit", "2"))
    config_path = write_train_config(tmp_path)
    out_dir = tmp_path / "run"
    parameters = {"config_path": str(config_path), "overrides": {**TRAIN_OVERRIDES, "train.out_dir": str(out_dir)}}
    try:
        first_id, result = trigger(own_server, "curriculum/simple", **parameters)
        assert result.returncode == 0, result.stdout + result.stderr
        wait_until_paused(served.process, paused, log=served.log)  # the first run holds the run folder, mid-stage

        # The second starts over in the same folder (the first's is moved aside when it gets the folder).
        second_id, result = trigger(own_server, "curriculum/simple", restart=True, **parameters)
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: "wait-for-run-folder" in task_runs(own_server, second_id), "the second run to wait",
                 timeout=240, interval=0.5)
        waiting = task_runs(own_server, second_id)
        assert waiting["wait-for-run-folder"].state.is_running()
        assert not any(name.startswith("train-") for name in waiting), sorted(waiting)
        with api_client(own_server) as client:
            assert client.read_flow_run(second_id).state.is_running()
            slot = client.read_global_concurrency_limit_by_name(folder_slot(out_dir, "run"))
            assert (slot.limit, slot.active_slots) == (1, 1)
            first_name = client.read_flow_run(first_id).name
        # The run's log (sent to the server in batches) names the folder and the run that holds it.
        said = f"waiting for the run folder {out_dir.resolve()}: in use by pid"
        wait_for(lambda: said in run_logs(own_server, second_id), "the waiting run's log", timeout=60,
                 interval=0.5)
        assert f"flow run {first_name!r}" in run_logs(own_server, second_id)

        paused.unlink()  # the first run goes on; the second gets the folder once it ends, then pauses in turn
        first = wait_for_run(own_server, first_id, log=served.log_path, timeout=300)
        assert first.state.is_completed(), served.log()[-3000:]
        wait_until_paused(served.process, paused, log=served.log)
        paused.unlink()
        second = wait_for_run(own_server, second_id, log=served.log_path, timeout=300)
        assert second.state.is_completed(), served.log()[-3000:]
    finally:
        paused.unlink(missing_ok=True)
        served.stop()

    second_tasks = task_runs(own_server, second_id)
    assert second_tasks["wait-for-run-folder"].state.is_completed()
    assert second_tasks["wait-for-run-folder"].start_time < first.end_time
    # The second trained only after the first had ended, from fresh weights, into the folder the first had left.
    assert min(run.start_time for name, run in second_tasks.items() if name.startswith("train-")) >= first.end_time
    assert (out_dir / "final" / "model.safetensors").is_file()
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run") and p != out_dir and p.is_dir()]
    assert len(moved) == 1 and (moved[0] / "final" / "model.safetensors").is_file(), moved
    with api_client(own_server) as client:
        assert client.read_global_concurrency_limit_by_name(folder_slot(out_dir, "run")).active_slots == 0
