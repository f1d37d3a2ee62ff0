"""tasks/caching.py: cache keys from content and code, never paths; a cache hit whose files are gone runs again.

The cached-run tests run a real Prefect task inside a real flow on the session's Prefect server, with a project
record whose `is_intact()` checks a real file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task
from prefect.settings import PREFECT_API_URL, temporary_settings

from curriculum.prepare import DocumentsRecord
from data.atomic import sha256_file
from tasks.caching import (
    RESULTS_DIRNAME,
    code_identity,
    hash_key,
    keyed_by,
    results_dir,
    run_cached,
    settle_cached,
    submit_cached,
    trusted_records,
)

# ---- keys -------------------------------------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A package `probe` under `root` with these files (relative path -> text); returns `root`."""
    for relative, text in {"probe/__init__.py": "", **files}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


STEP = {"probe/step.py": "def step():\n    return 1\n", "probe/inner/__init__.py": "",
        "probe/inner/helper.py": "HELP = 1\n", "probe/other.py": "OTHER = 1\n"}


def test_the_code_identity_follows_the_files_not_where_they_lie(tmp_path):
    one = code_identity("probe", root=write_package(tmp_path / "one", STEP))
    # Another folder (another machine's checkout), with bytecode and an editor's lock file beside the source.
    elsewhere = write_package(tmp_path / "two", {**STEP, "probe/__pycache__/step.cpython-311.py": "x",
                                                 "probe/.#step.py": "x"})
    assert code_identity("probe", root=elsewhere) == one
    edited = {"probe/step.py": "def step():\n    return 2\n"}
    added = {"probe/inner/more.py": ""}
    for n, change in enumerate([edited, added, {"probe/inner/helper.py": "HELP = 1\n  # a comment\n"}]):
        assert code_identity("probe", root=write_package(tmp_path / f"changed-{n}", {**STEP, **change})) != one
    renamed = {**{k: v for k, v in STEP.items() if k != "probe/other.py"}, "probe/others.py": "OTHER = 1\n"}
    assert code_identity("probe", root=write_package(tmp_path / "renamed", renamed)) != one


def test_the_code_identity_of_a_module_is_that_file_alone(tmp_path):
    root = write_package(tmp_path / "one", STEP)
    other_edited = write_package(tmp_path / "two", {**STEP, "probe/other.py": "OTHER = 2\n"})
    assert code_identity("probe.step", root=root) == code_identity("probe.step", root=other_edited)
    assert code_identity("probe.step", "probe.inner", root=root) != code_identity("probe.step", root=root)
    assert code_identity("probe", "probe.step", root=root) == code_identity("probe", root=root)  # each file once


def test_a_name_that_is_no_package_or_module_fails_naming_it(tmp_path):
    root = write_package(tmp_path, STEP)
    with pytest.raises(ValueError, match=r"'probe\.stepp', which is neither a package .* nor a module"):
        code_identity("probe.step", "probe.stepp", root=root)


def test_hash_key_depends_on_values_not_on_key_order():
    assert hash_key("tokenize", {"sha256": "ab", "tokenizer": "r50k_base"}) == hash_key(
        "tokenize", {"tokenizer": "r50k_base", "sha256": "ab"})
    assert hash_key("tokenize", {"sha256": "ab"}) != hash_key("tokenize", {"sha256": "ac"})
    assert hash_key("tokenize", "ab") != hash_key("shard", "ab")  # the step's name is part of the key
    assert len(hash_key(Path("/x"))) == 64  # values JSON cannot hold are hashed too


def test_results_dir_is_a_private_folder_inside_the_given_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = results_dir("data")  # relative: resolved once, so a later chdir cannot move the records
    assert path == tmp_path / "data" / RESULTS_DIRNAME and path.is_dir()
    assert path.stat().st_mode & 0o077 == 0
    assert results_dir(tmp_path / "data") == path  # a second call finds it


# ---- the cached run -----------------------------------------------------------------------------------------

RAN: list[str] = []  # the file name of every call that really ran


def text_identity(parameters: dict[str, Any]) -> Any:
    """What decides the step's result: the text (never where it is written), or None for "do not cache"."""
    return parameters["text"] if parameters["cache"] else None


@task(name="write-text", cache_key_fn=keyed_by(text_identity, "data.atomic"), persist_result=True,
      result_serializer="json")
def write_text(text: str, path: Path, cache: bool = True) -> DocumentsRecord:
    RAN.append(path.name)
    path.write_text(text)
    return DocumentsRecord(stage="probe", path=path, sha256=sha256_file(path), n_documents=1, n_chars=len(text),
                           skipped={}, notes=[])


@flow(name="caching-probe")
def run_steps(storage: Path, steps: list[tuple[str, str, bool]]) -> list[tuple[str, bool]]:
    """Each step (text, file name, cache?) through run_cached; returns (record's file name, came from cache)."""
    done = []
    for text, name, cache in steps:
        record, cached = run_cached(write_text, storage, text=text, path=storage / name, cache=cache)
        done.append((record.path.name, cached))
    return done


@pytest.fixture()
def storage(prefect_server, tmp_path: Path) -> Iterator[Path]:
    """A fresh data folder (its records are the cache), with flows run on the session's server."""
    RAN.clear()
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield tmp_path / "data"


def test_same_content_is_a_cache_hit_wherever_it_goes_and_new_content_runs(storage):
    storage.mkdir()
    done = run_steps(storage, [("hello", "a.txt", True), ("hello", "b.txt", True), ("hello!", "c.txt", True)])
    assert done == [("a.txt", False), ("a.txt", True), ("c.txt", False)]
    assert RAN == ["a.txt", "c.txt"]
    assert not (storage / "b.txt").exists()
    assert list((storage / RESULTS_DIRNAME).iterdir())  # the records live beside the data


def test_a_cache_hit_whose_file_was_deleted_or_changed_runs_again(storage):
    storage.mkdir()
    assert run_steps(storage, [("hello", "a.txt", True), ("bye", "b.txt", True)]) == [
        ("a.txt", False), ("b.txt", False)]
    (storage / "a.txt").unlink()
    (storage / "b.txt").write_text("edited by hand")
    # Both keys hit, neither record is intact: both steps run again and their new records replace the old.
    done = run_steps(storage, [("hello", "a.txt", True), ("bye", "b.txt", True)])
    assert done == [("a.txt", False), ("b.txt", False)]
    assert (storage / "a.txt").read_text() == "hello" and (storage / "b.txt").read_text() == "bye"
    assert run_steps(storage, [("hello", "a.txt", True)]) == [("a.txt", True)]  # and are found next time
    assert RAN == ["a.txt", "b.txt", "a.txt", "b.txt"]


def test_an_identity_of_none_runs_the_step_every_time(storage):
    storage.mkdir()
    done = run_steps(storage, [("hello", "a.txt", False), ("hello", "a.txt", False), ("hello", "a.txt", True)])
    assert done == [("a.txt", False), ("a.txt", False), ("a.txt", False)]
    assert RAN == ["a.txt"] * 3


# ---- submitted steps ---------------------------------------------------------------------------------------


@task(name="copy-text", cache_key_fn=keyed_by(lambda p: [p["source"].sha256, p["suffix"]], "data.atomic"),
      persist_result=True, result_serializer="json")
def copy_text(source: DocumentsRecord, suffix: str) -> DocumentsRecord:
    """A step that reads the file of the record before it: it fails when that file is gone."""
    RAN.append(f"copy{suffix}")
    text = source.path.read_text() + suffix
    path = source.path.with_name(f"copy{suffix}.txt")
    path.write_text(text)
    return DocumentsRecord(stage="probe", path=path, sha256=sha256_file(path), n_documents=1, n_chars=len(text),
                           skipped={}, notes=[])


@flow(name="caching-probe-submitted")
def run_chain(storage: Path, suffix: str) -> list[tuple[bool, bool]]:
    """write-text -> copy-text submitted as a chain (the second takes the first's future), then settled in order;
    returns (came from cache, ran again) of each."""
    records = trusted_records(storage)
    first = submit_cached(write_text, records, text="hello", path=storage / "a.txt")
    second = submit_cached(copy_text, records, source=first, suffix=suffix)
    one = settle_cached(first, write_text, records, text="hello", path=storage / "a.txt")
    two = settle_cached(second, copy_text, records, inputs_ran_again=one.ran_again, source=one.record, suffix=suffix)
    assert two.record.path.read_text() == f"hello{suffix}"
    return [(one.cached, one.ran_again), (two.cached, two.ran_again)]


def test_a_submitted_chain_whose_cached_first_step_lost_its_file_runs_again_from_there(storage):
    storage.mkdir()
    assert run_chain(storage, "-1") == [(False, False), (False, False)]
    assert run_chain(storage, "-1") == [(True, False), (True, False)]
    (storage / "a.txt").write_text("edited by hand")
    # The first step hits the cache but its file changed, so it runs again. The second (a new key) was submitted
    # with the stale record: whatever it made of it (the edited text, or the restored one if it ran later), it runs
    # again on the new record and its stored record is replaced, so the next run's cache hit is the right text.
    assert run_chain(storage, "-2") == [(False, True), (False, True)]
    assert run_chain(storage, "-2") == [(True, False), (True, False)]  # run_chain checks the text each time
    # The first "-2" run: the first step ran again; the second ran on the stale record or not (a race with the first
    # step), and at least once after it, which is last.
    assert RAN[:2] == ["a.txt", "copy-1"] and RAN.count("a.txt") == 2 and RAN[-1] == "copy-2"
    assert set(RAN[2:]) == {"a.txt", "copy-2"} and RAN.index("a.txt", 1) < len(RAN) - 1
