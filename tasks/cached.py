"""Running a cached task so that a cache hit whose files were deleted or damaged runs the step again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

from prefect import Task, get_run_logger

from tasks.caching import results_dir


class Intact(Protocol):
    def is_intact(self) -> bool: ...


R = TypeVar("R", bound=Intact)


def run_cached(task: Task[..., R], storage: str | Path, **parameters: Any) -> tuple[R, bool]:
    """Run `task` with its results stored under `storage`; returns (record, came from cache).

    A record from the cache is trusted only if its files are still whole; otherwise the step runs
    again (refresh_cache overwrites the stale record) instead of failing later.
    """
    bound = task.with_options(result_storage=results_dir(storage))
    state = bound(**parameters, return_state=True)
    record = state.result()
    if state.name != "Cached":
        return record, False
    if record.is_intact():
        return record, True
    get_run_logger().warning(
        "cached result of %s points to files that are missing or damaged; running it again", task.name
    )
    state = bound.with_options(refresh_cache=True)(**parameters, return_state=True)
    return state.result(), False
