"""Caching of the pipeline's tasks: keys from input content and code, never from paths; persisted results beside
the data they describe; a cache hit whose files were deleted or damaged runs the step again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from prefect import Task, get_run_logger
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.filesystems import LocalFileSystem
from prefect.futures import PrefectFuture
from prefect.results import ResultStore
from prefect.task_runners import TaskRunner

from data.checksums import json_sha256
from tasks.result_storage import set_aside_untrusted_records

RESULTS_DIRNAME = ".prefect-results"
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the project's packages


def code_identity(*code: str, root: Path = SOURCE_ROOT) -> str:
    """The code a step runs, as one hash: every `.py` file of the named packages (a package: all of its files,
    its subpackages' too) and modules (`data.shards`), each by its path relative to `root` and its bytes, in path
    order. Editing, adding, removing or renaming one of them changes it; nothing else does (not where the source
    lies, not __pycache__, not file times), so machines with the same source agree. Read once per process."""
    return _code_identity(code, Path(root).resolve())


@cache
def _code_identity(code: tuple[str, ...], root: Path) -> str:
    files = {path.relative_to(root).as_posix(): path for name in code for path in _source_files(name, root)}
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.encode("utf-8") + b"\0" + hashlib.sha256(files[relative].read_bytes()).digest())
    return digest.hexdigest()[:16]


def _source_files(name: str, root: Path) -> list[Path]:
    path = root.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        # Not an editor's lock or backup file (.#name.py): Python imports no name that starts with a dot.
        return [p for p in path.rglob("*.py") if p.is_file() and not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts)]
    if path.with_suffix(".py").is_file():
        return [path.with_suffix(".py")]
    raise ValueError(
        f"a step's code names {name!r}, which is neither a package ({path}/__init__.py) nor a module "
        f"({path}.py) under {root}: name the project's packages and modules by their import names "
        "(curriculum.training, data.shards)"
    )


def hash_key(*parts: Any) -> str:
    return json_sha256(parts)


class ContentKey:
    """A Prefect `cache_key_fn` hashing `identity(parameters)` with the code the step runs (code_identity of
    `code`, the packages and modules it runs, read under `root`).

    `identity` picks what matters from the task's parameters (checksums and settings); returning
    None disables caching for that call (e.g. a web crawl that only fetching can tell apart).
    """

    def __init__(self, identity: Callable[[dict[str, Any]], Any], *code: str, root: Path = SOURCE_ROOT):
        self.identity, self.code, self.root = identity, code, root

    def __call__(self, context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        return self.key(context.task.name, parameters)

    def key(self, task_name: str, parameters: dict[str, Any]) -> str | None:
        """The key a run of the task named `task_name` with `parameters` is cached under."""
        content = self.identity(parameters)
        if content is None:
            return None
        return hash_key(task_name, code_identity(*self.code, root=self.root), content)


def keyed_by(identity: Callable[[dict[str, Any]], Any], *code: str, root: Path = SOURCE_ROOT) -> ContentKey:
    return ContentKey(identity, *code, root=root)


def results_dir(base: str | Path) -> Path:
    """Where persisted task results (small JSON records) live: inside the folder the records point into.

    A data or run folder this creates, and the records' folder always, are private (0700): a record that
    others could rewrite would decide what the next run trusts (tasks/result_storage.py).
    """
    base = Path(base).resolve()
    base.parent.mkdir(parents=True, exist_ok=True)
    base.mkdir(mode=0o700, exist_ok=True)
    path = base / RESULTS_DIRNAME
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)  # also when an earlier version made it with the umask's mode
    return path


class Intact(Protocol):
    def is_intact(self) -> bool: ...


R = TypeVar("R", bound=Intact)


def run_cached(task: Task[..., R], storage: str | Path, **parameters: Any) -> tuple[R, bool]:
    """Run `task` with its results stored under `storage`; returns (record, came from cache).

    A record from the cache is trusted only if its files are still whole; otherwise the step runs
    again (refresh_cache overwrites the stale record) instead of failing later.
    """
    return run_cached_in(task, trusted_records(storage), **parameters)


def run_cached_in(task: Task[..., R], records: Path, **parameters: Any) -> tuple[R, bool]:
    """run_cached with a records folder from trusted_records: for steps run while others write their records
    (a step called by a step), where setting records aside could catch one half-written."""
    state = task.with_options(result_storage=records)(**parameters, return_state=True)
    return _checked(task, records, state, parameters)


def trusted_records(storage: str | Path) -> Path:
    """The records folder of `storage`, with every record we did not write set aside. Call it before submitting
    steps, never while they run: a record being written would look untrusted."""
    records = results_dir(storage)
    set_aside_untrusted_records(records)  # never let Prefect deserialize a record we did not write
    return records


def submit_cached(
    task: Task[..., R], records: Path, runner: TaskRunner | None = None, wait_for: Iterable[Any] | None = None,
    refresh: bool = False, **parameters: Any,
) -> PrefectFuture[R]:
    """Submit `task` with its results under `records` (from trusted_records) to `runner`, or to the flow's own
    task runner; futures among `parameters` are resolved by Prefect before the step runs. `refresh`: run it even
    if the cache holds a record (one that stored() found stale), and store the new one in its place."""
    bound = task.with_options(result_storage=records, refresh_cache=True) if refresh else task.with_options(
        result_storage=records)
    if runner is None:
        return bound.submit(**parameters, wait_for=wait_for)
    return runner.submit(bound, parameters, wait_for)


class Stored(NamedTuple):
    record: Any  # the intact record the cache holds for the call, or None
    stale: bool  # the cache holds a record whose files are missing or damaged


def stored(task: Task[..., R], records: Path, **parameters: Any) -> Stored:
    """What the cache holds for `task` called with `parameters` (settled records, no futures), without running it:
    for a flow that submits a step's parts only when the step itself is not cached."""
    key_fn = task.cache_key_fn
    key = key_fn.key(task.name, parameters) if isinstance(key_fn, ContentKey) else None
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(records)))
    if key is None or not store.exists(key):
        return Stored(None, False)
    try:
        record = store.read(key).result
    except Exception as error:  # being written by a run of the same step elsewhere, or unreadable: run it
        get_run_logger().info("cached result of %s could not be read (%s); running it again", task.name, error)
        return Stored(None, True)
    return Stored(record, False) if record.is_intact() else Stored(None, True)


class Settled(NamedTuple):
    record: Any
    cached: bool  # the record came from the cache
    ran_again: bool  # the step ran again here, so the steps that took its submitted result must too


def settle_cached(
    future: PrefectFuture[R], task: Task[..., R], records: Path, *, inputs_ran_again: bool = False, **parameters: Any
) -> Settled:
    """The record of a submitted step, as run_cached would give it: a cached record whose files are missing or
    damaged runs the step again. `inputs_ran_again`: an input of the step was run again after the step was
    submitted; the step runs again on the new input (`parameters`, settled records), whatever its future gave."""
    future.wait()
    if inputs_ran_again:
        # A step that ran on the stale input may have stored a wrong record under the right key: replace it. One
        # that came from the cache never saw that input, and its record is as trustworthy as any.
        ran_on_stale_input = future.state.name != "Cached"
        bound = task.with_options(result_storage=records, refresh_cache=ran_on_stale_input)
        record, cached = _checked(task, records, bound(**parameters, return_state=True), parameters)
        return Settled(record, cached, True)
    record, cached = _checked(task, records, future.state, parameters)
    return Settled(record, cached, not cached and future.state.name == "Cached")


def _checked(task: Task[..., R], records: Path, state: State, parameters: dict[str, Any]) -> tuple[R, bool]:
    record = state.result()
    if state.name != "Cached":
        return record, False
    if record.is_intact():
        return record, True
    get_run_logger().warning(
        "cached result of %s points to files that are missing or damaged; running it again", task.name
    )
    bound = task.with_options(result_storage=records, refresh_cache=True)
    return bound(**parameters, return_state=True).result(), False
