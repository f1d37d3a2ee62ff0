"""Where preparation runs (`prepare:`, --task-runner, --workers): valid settings reach the run config and the task
runner, each mistake is named with what is allowed; a stage's plan needs no later stage under the per-stage schedule."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from curriculum import ConfigError, load_run_config
from curriculum.prepare_config import threads_per_task
from curriculum.training.config import TrainConfig
from curriculum.training.schedule import plan_curriculum
from flows.cli import build_parser, flow_parameters
from tasks.runners import prepare_task_runner


def test_cli_options_become_the_prepare_section():
    args = build_parser().parse_args(["--type", "simple", "--task-runner", "dask", "--workers", "3"])
    overrides = flow_parameters(args)["overrides"]
    assert overrides == {"prepare.task_runner": "dask", "prepare.workers": 3}
    config = load_run_config(type="simple", overrides=overrides)  # as a deployment's `overrides` parameter too
    assert (config.prepare.task_runner, config.prepare.resolved_workers) == ("dask", 3)


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "tcp://scheduler.cluster:8786", "tls://[::1]:8786"])
def test_a_scheduler_address_is_a_task_runner(address):
    config = load_run_config(type="simple", overrides={"prepare.task_runner": address})
    runner = prepare_task_runner(config.prepare)
    assert isinstance(runner, DaskTaskRunner) and runner.address == address


def test_an_unknown_runner_lists_what_is_allowed():
    with pytest.raises(ConfigError) as error:
        load_run_config(type="simple", overrides={"prepare.task_runner": "ray"})
    message = str(error.value)
    assert "prepare.task_runner" in message and "'ray'" in message
    assert "threads" in message and "dask" in message and "tcp://" in message


def test_workers_with_a_scheduler_address_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="has the workers started there with `dask worker`; drop --workers"):
        load_run_config(type="simple", overrides={"prepare.task_runner": "tcp://10.0.0.5:8786", "prepare.workers": 2})
    with pytest.raises(ConfigError, match="prepare.workers"):
        load_run_config(type="simple", overrides={"prepare.workers": 0})


def test_the_local_runners_stay_on_this_machine():
    threads = prepare_task_runner(load_run_config(type="simple", overrides={"prepare.workers": 2}).prepare)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 2
    config = load_run_config(type="simple", overrides={"prepare.task_runner": "dask", "prepare.workers": 2})
    dask = prepare_task_runner(config.prepare, api_url="http://127.0.0.1:4200/api")
    assert isinstance(dask, DaskTaskRunner)
    kwargs = dask.cluster_kwargs
    assert (kwargs["n_workers"], kwargs["processes"], kwargs["host"]) == (2, True, "127.0.0.1")
    assert kwargs["dashboard_address"].startswith("127.0.0.1:")
    assert kwargs["env"] == {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}  # the workers report to the run's API


def test_a_stage_is_planned_without_later_stages_only_under_the_per_stage_schedule():
    curriculum = load_run_config(type="default").curriculum
    first = {curriculum.stages[0].name: 10_000}
    per_stage = TrainConfig(batch_size=2)
    assert [plan.stage for plan in plan_curriculum(curriculum, first, per_stage, upto=0)] == ["warmup"]
    with pytest.raises(ValueError, match="no count for stage"):
        plan_curriculum(curriculum, first, per_stage.model_copy(update={"lr_schedule": "global"}), upto=0)
    with pytest.raises(ValueError, match="no count for stage"):  # wsd decays over the whole curriculum too
        plan_curriculum(curriculum, first, per_stage.model_copy(update={"lr_schedule": "wsd"}), upto=0)


def test_a_local_runners_tasks_share_the_machines_cores_unless_threads_are_set():
    def prepare(**settings):
        return load_run_config(type="simple", overrides={f"prepare.{k}": v for k, v in settings.items()}).prepare

    assert threads_per_task(0, prepare(workers=2), cores=8) == 4  # two tasks at once, four threads each
    assert threads_per_task(0, prepare(workers=16), cores=8) == 1
    assert threads_per_task(0, prepare(task_runner="dask", workers=3), cores=8) == 2
    assert threads_per_task(3, prepare(workers=2), cores=8) == 3  # data.threads set: as given
    assert threads_per_task(0, prepare(task_runner="tcp://10.0.0.5:8786"), cores=8) == 0  # each worker's own cores
