"""The Prefect task runner that data preparation is submitted to, built from the run's `prepare:` section."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from curriculum.prepare_config import PrepareConfig


def prepare_task_runner(config: PrepareConfig, api_url: str | None = None) -> TaskRunner:
    """A runner to enter as a context manager (it starts a local cluster, or connects to a scheduler, then).
    `api_url`: the Prefect API a local cluster's workers report to; default: this process's."""
    if config.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=config.resolved_workers)
    from prefect_dask import DaskTaskRunner

    if config.is_address:
        return DaskTaskRunner(address=config.task_runner)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": config.resolved_workers,
            # Processes, one task each: extraction and the Python parts of tokenizing hold the GIL.
            "processes": True,
            "threads_per_worker": 1,
            # Loopback only, the dashboard too, on a free port: two runs on one machine never collide.
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
            # The workers report their task runs to this process's Prefect API, also when that is the temporary
            # server Prefect starts for a run without PREFECT_API_URL (each worker would start its own).
            "env": {"PREFECT_API_URL": api_url or str(get_client(sync_client=True).api_url)},
        },
    )
