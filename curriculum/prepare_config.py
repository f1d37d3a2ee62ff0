"""Where data preparation runs (the `prepare:` section of a run config): threads here, a local Dask cluster, or
the Dask scheduler of a cluster. The output bytes never depend on it, so this is not part of any cache key."""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

LOCAL_RUNNERS = ("threads", "dask")
# A running Dask scheduler, as `dask scheduler` prints it: tcp://host:8786 (tls:// when it serves TLS).
SCHEDULER_ADDRESS = re.compile(r"(tcp|tls)://[^\s/:]+(:\d+)?|(tcp|tls)://\[[0-9a-fA-F:.]+\](:\d+)?")
RUNNER_HELP = (
    "threads (this process, the default), dask (a local Dask cluster of `workers` processes), or the address of "
    "a running Dask scheduler such as tcp://10.0.0.5:8786 (docs/scale-out.md: 'Preparing on a Dask cluster')"
)


class PrepareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task_runner: str = Field("threads", description=f"Prefect task runner of the preparation tasks: {RUNNER_HELP}.")
    workers: PositiveInt | None = Field(
        None,
        description="Threads (threads) or worker processes (dask) that prepare at once; default: the cores of "
        "this machine. A scheduler address brings its own workers (`dask worker`).",
    )

    @field_validator("task_runner")
    @classmethod
    def _check_runner(cls, value: str) -> str:
        if value in LOCAL_RUNNERS or SCHEDULER_ADDRESS.fullmatch(value):
            return value
        raise ValueError(f"task_runner={value!r} is not a task runner; use {RUNNER_HELP}")

    @model_validator(mode="after")
    def _workers_only_for_local_runners(self) -> PrepareConfig:
        if self.workers is not None and self.is_address:
            raise ValueError(
                f"workers={self.workers} applies to threads and dask only: the scheduler at {self.task_runner} "
                "has the workers started there with `dask worker`; drop --workers (prepare.workers)"
            )
        return self

    @property
    def is_address(self) -> bool:
        return self.task_runner not in LOCAL_RUNNERS

    @property
    def resolved_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


def threads_per_task(threads: int, prepare: PrepareConfig, cores: int | None = None) -> int:
    """The threads a preparation task encodes on, given `data.threads` (`threads`; 0: every core): on a local runner
    its `workers` tasks share this machine's cores; the workers of a scheduler's cluster each use their machine's."""
    if threads or prepare.is_address:
        return threads
    return max(1, (cores or os.cpu_count() or 1) // prepare.resolved_workers)
