"""Cache keys from input content and code, never from paths; persisted results beside the data they describe."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from prefect.context import TaskRunContext

RESULTS_DIRNAME = ".prefect-results"


@lru_cache(maxsize=None)
def code_version(*modules: str) -> str:
    """Hash of the source of the modules that implement a step: editing them invalidates its cache."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(inspect.getsource(importlib.import_module(name)).encode("utf-8"))
    return digest.hexdigest()[:16]


def hash_key(*parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def keyed_by(identity: Callable[[dict[str, Any]], Any], *modules: str):
    """A Prefect `cache_key_fn` hashing `identity(parameters)` with the code version of `modules`.

    `identity` picks what matters from the task's parameters (checksums and settings); returning
    None disables caching for that call (e.g. a web crawl that only fetching can tell apart).
    """

    def cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        content = identity(parameters)
        if content is None:
            return None
        return hash_key(context.task.name, code_version(*modules), content)

    return cache_key


def results_dir(base: str | Path) -> Path:
    """Where persisted task results (small JSON records) live: inside the folder the records point into."""
    path = Path(base).resolve() / RESULTS_DIRNAME
    path.mkdir(parents=True, exist_ok=True)
    return path
