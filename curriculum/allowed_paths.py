"""Confinement of a served run's paths: parameters may only name folders under the roots the operator allowed.

Whoever can start a deployment run chooses its parameters, and a path among them (`config_path`, `data_dir`,
`out_dir`, a stage's path options as its kind lists them in curriculum/sources.py: `files`, `paths`, `urls_file`, a
dataset folder) would let the worker read, overwrite
or move (`restart`) any folder it can reach. A served run therefore checks every such path, after resolving
symlinks and `..`, against the serving folder and the roots given to `deployments/serve.py --allow-path`.
A run from the command line is the user's own and is not confined.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from curriculum.config import ConfigError, RunConfig
from curriculum.sources import kind_named

# Set by deployments/serve.py in its own environment, which the runs it starts inherit: a run's parameters
# cannot change it. os.pathsep-separated absolute folders.
ALLOWED_PATHS_ENV = "CURRICULUM_ALLOWED_PATHS"


class PathNotAllowed(ConfigError):
    """A served run's parameter names a path outside the allowed roots."""


def allowed_roots(environ: dict[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    """The working folder of the run plus the folders in CURRICULUM_ALLOWED_PATHS, resolved."""
    environ = dict(os.environ) if environ is None else environ
    roots = [(cwd or Path.cwd()).resolve()]
    for entry in environ.get(ALLOWED_PATHS_ENV, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(entry.strip()).expanduser().resolve())
    return list(dict.fromkeys(roots))


def check_path(name: str, value: str | os.PathLike, roots: Iterable[Path], *, strictly_inside: bool = False) -> Path:
    """`value` resolved (symlinks, `..`, relative to the working folder); refused unless under one of `roots`.

    `strictly_inside` refuses a root itself: a folder the run writes into and may move aside (`restart`).
    """
    roots = list(roots)
    resolved = Path(value).expanduser().resolve()
    if any(resolved.is_relative_to(root) and not (strictly_inside and resolved == root) for root in roots):
        return resolved
    where = "inside" if strictly_inside else "under"
    raise PathNotAllowed(
        f"served run refused: {name} = {str(value)!r} resolves to {resolved}, not {where} the folders a served "
        f"run may use: {', '.join(str(r) for r in roots)}. Use a path {where} one of them, or have the operator "
        f"restart deployments/serve.py with --allow-path {resolved.parent}"
    )


# Folders a run writes into; the run folder is moved aside whole by `restart`.
WRITTEN_FOLDERS = ("data.data_dir", "train.out_dir")


def config_paths(config: RunConfig) -> Iterator[tuple[str, str]]:
    """Every path a run reads, writes or moves: (field name as in the config, value)."""
    yield "data.data_dir", str(config.data_dir)
    yield "train.out_dir", str(config.out_dir)
    if config.data.hub_mirror is not None:
        yield "data.hub_mirror", str(config.data.hub_mirror)
    for stage in config.components():  # a mixed stage's sources each as a stage
        prefix = f"stages.{stage.name}"
        kind = kind_named(stage.data_key)
        for option in kind.paths:  # the registry's path options of the stage's kind (curriculum/sources.py)
            value = getattr(stage, option)
            if isinstance(value, str):
                yield f"{prefix}.{option}", glob_base(value)
            for index, location in enumerate(value if isinstance(value, list) else ()):
                yield f"{prefix}.{option}[{index}]", glob_base(location)
        if kind.key_is_path and _names_a_folder(stage.data_key):
            yield f"{prefix}.dataset_key", stage.data_key
            if config.data.hub_mirror is not None:  # a key that is no folder here is looked up under the mirror
                yield f"{prefix}.dataset_key", str(Path(config.data.hub_mirror).expanduser() / stage.data_key)


def glob_base(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (`/data/**/*.txt` -> `/data`): what it can reach.

    A `..` after a wildcard can climb out of that folder again (`*/../../etc/*.txt`; `**` may match no folder at all,
    so no count of levels is safe): such a pattern is refused outright."""
    parts = Path(pattern).parts
    first_magic = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    if ".." in parts[first_magic:]:  # a `..` before the first wildcard is resolved by the check like any path
        raise PathNotAllowed(
            f"served run refused: the file pattern {pattern!r} has both a wildcard and '..', which can reach "
            f"outside the folders a served run may use; write the folder without '..'"
        )
    for index, part in enumerate(parts):
        if glob.has_magic(part):
            return str(Path(*parts[:index])) if index else "."
    return pattern


def _names_a_folder(dataset_key: str) -> bool:
    # A hub id `org/name` resolves under the operator's mirror; an absolute path, `~`, `..` or a folder that
    # exists here is read as a dataset folder (data/hf_reader.py's resolve), so it is a path to check.
    path = Path(dataset_key).expanduser()
    return path.is_absolute() or ".." in path.parts or path.exists()


def confine_paths(config: RunConfig, roots: Iterable[Path]) -> None:
    """Refuse the run if any of its paths leaves `roots`, naming the first such field, its value and the roots."""
    roots = list(roots)
    for name, value in config_paths(config):
        check_path(name, value, roots, strictly_inside=name in WRITTEN_FOLDERS)
