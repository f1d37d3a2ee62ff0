"""The project's one way into the `datasets` library, safe to use from many threads at once.

Stages are prepared side by side on threads, so two hub sources are often opened at the same moment. Two
things in the libraries below `datasets` break then, and both are handled here, once, for every caller:

- tqdm's `thread_map` (which `datasets` uses to resolve data files) creates a class-wide lock when it finds
  none and deletes it when it leaves. Two threads that both found none both delete it: the second raises
  `AttributeError: type object 'tqdm' has no attribute '_lock'`, and a bar still running in a third thread
  loses its lock. Creating the lock on tqdm's base class before any load means every `thread_map` finds one,
  so none ever deletes it.
- A streamed Parquet dataset that is left before its end (a stage that takes its first `n_items`) keeps a
  pyarrow scanner in a reference cycle. Freed only at interpreter exit, it aborts the process ("terminate
  called without an active exception", apache/arrow#45214; `datasets` applies its workaround only up to
  pyarrow 24). `rows` closes the iterator and collects that cycle as soon as the caller is done.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

_setup_lock = threading.Lock()
_ready = False


def datasets_library() -> ModuleType:
    """The `datasets` module, with tqdm's class lock in place before any load can race for it."""
    global _ready
    with _setup_lock:
        if not _ready:
            import datasets  # noqa: F401  (imported under the lock: its import sets up tqdm classes too)
            from tqdm.std import tqdm

            tqdm.get_lock()  # every bar class (tqdm.auto's, datasets') inherits it
            _ready = True
    import datasets

    return datasets


def load_dataset(path: str, **options: Any) -> Any:
    return datasets_library().load_dataset(path, **options)


def load_from_disk(path: str) -> Any:
    return datasets_library().load_from_disk(path)


@contextmanager
def rows(dataset: Iterable[dict[str, Any]]) -> Iterator[Iterator[dict[str, Any]]]:
    """Iterate `dataset`; on leaving, close the iterator and free what it holds (see the module's docstring)."""
    iterator = iter(dataset)
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        del iterator
        gc.collect()
