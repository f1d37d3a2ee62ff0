"""`python flows/curriculum.py ... --prepare-only` as a user runs it: a real process, real data, real caching."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data.shards import ShardError, read_shard
from tests.support.pause import kill_group, pause_env, wait_until_paused

# Each test runs flows/curriculum.py as a process, with Prefect's temporary server.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "flows" / "curriculum.py"
BOOKS = ("paine_common-sense_pg147.txt", "carroll_alice-in-wonderland_pg11.txt",
         "doyle_adventures-of-sherlock-holmes_pg1661.latin1.txt")

CONFIG = """
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 64
    n_epochs: 1
    n_items: 300
  - name: books
    dataset_key: local-files
    files: [{books}]
    block_size: 128
    n_epochs: 1
"""


def run_cli(*args: str, env_extra: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    # Run from another folder: the script must find its packages by itself, not through the cwd.
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=cwd or Path("/"), timeout=300)


@pytest.fixture()
def project(tmp_path, books, hub_mirror):
    folder = tmp_path / "books"
    folder.mkdir()
    for name in BOOKS:
        shutil.copy(books / name, folder / name)
    config = tmp_path / "small.yaml"
    config.write_text(CONFIG.format(books=folder))
    return {"config": config, "books": folder, "data": tmp_path / "data",
            "env": {"CURRICULUM_HUB_MIRROR": str(hub_mirror)}}


def prepare(project) -> str:
    """The output of a prepare run (the flow's reports go through Prefect's run logger, to stderr)."""
    result = run_cli("--config", str(project["config"]), "--prepare-only", "--data-dir", str(project["data"]),
                     env_extra=project["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def cache_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("Cache:")]


def test_prepare_runs_then_everything_is_cached_then_only_the_edited_stage_reruns(project):
    first = prepare(project)
    for expected in ("[Stage 1/2] warmup", "Dataset: roneneldan/TinyStories", "Block size: 64", "Items: 300",
                     "[Stage 2/2] books", "Documents: ", "Tokens: ", "Skipped inputs: none",
                     "✓ Stage 'warmup' dataset created", "✓ Stage 'books' dataset created"):
        assert expected in first
    assert cache_lines(first) == ["Cache: fetch ran, tokenize ran, shard ran"] * 2
    for split in ("train", "val"):
        for stage in ("warmup", "books"):
            assert read_shard(project["data"] / f"{split}_{stage}_pretrain.bin").n_tokens > 0

    # A second process finds every step in the cache.
    assert cache_lines(prepare(project)) == ["Cache: fetch cached, tokenize cached, shard cached"] * 2

    # A change in a file's Gutenberg footer re-reads the files, but the documents are the same:
    # everything downstream stays cached, because keys hash content, not files.
    with open(project["books"] / BOOKS[0], "a", encoding="utf-8") as handle:
        handle.write("\n\nA line after the licence, added by the test.\n")
    assert cache_lines(prepare(project)) == [
        "Cache: fetch cached, tokenize cached, shard cached",
        "Cache: fetch ran, tokenize cached, shard cached",
    ]

    # Editing the text of one local file re-runs only that stage.
    alice = project["books"] / BOOKS[1]
    alice.write_text(alice.read_text(encoding="utf-8-sig").replace("Rabbit-Hole", "Rabbit Burrow"), encoding="utf-8")
    assert cache_lines(prepare(project)) == [
        "Cache: fetch cached, tokenize cached, shard cached",
        "Cache: fetch ran, tokenize ran, shard ran",
    ]

    # Deleted or corrupted outputs of a cached step make that step run again instead of failing.
    (project["data"] / "val_warmup_pretrain.bin").unlink()
    train_books = project["data"] / "train_books_pretrain.bin"
    raw = bytearray(train_books.read_bytes())
    raw[-1] ^= 0xFF
    train_books.write_bytes(bytes(raw))
    with pytest.raises(ShardError):
        read_shard(train_books)
    assert cache_lines(prepare(project)) == ["Cache: fetch cached, tokenize cached, shard ran"] * 2
    read_shard(train_books)


def test_sigkill_mid_write_leaves_no_acceptable_partial_file(project, tmp_path):
    data = project["data"]
    paused = tmp_path / "paused"
    # Killed while a stage's shards are written under their temporary names, before either is renamed.
    env = {**os.environ, **project["env"], **pause_env(paused, "shard-write")}
    command = [sys.executable, str(SCRIPT), "--config", str(project["config"]), "--prepare-only",
               "--data-dir", str(data)]
    log = tmp_path / "prepare.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill takes its temporary Prefect server too
        )
    wait_until_paused(process, paused, log=lambda: log.read_text(errors="replace"))
    kill_group(process)
    leftovers = [p for p in data.iterdir() if ".tmp-" in p.name]
    assert leftovers, "the kill should have interrupted a write"
    for path in data.glob("*.bin"):
        read_shard(path)  # every file under a real name is whole
    for path in leftovers:
        with pytest.raises(ShardError):
            read_shard(path)
    prepare(project)
    assert not [p for p in data.iterdir() if ".tmp-" in p.name]
    for name in ("train_warmup_pretrain.bin", "val_books_pretrain.bin"):
        read_shard(data / name)


def test_unknown_type_lists_choices_and_does_nothing(tmp_path):
    result = run_cli("--type", "fancy", "--prepare-only", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "unknown curriculum type 'fancy'; choose one of: simple, default" in result.stdout
    assert not (tmp_path / "data").exists()


def test_hub_stage_offline_without_mirror_names_the_mirror_variable(project):
    result = run_cli("--config", str(project["config"]), "--prepare-only", "--data-dir", str(project["data"]))
    assert result.returncode != 0
    assert "CURRICULUM_HUB_MIRROR" in result.stdout + result.stderr


MIXED = """
stages:
  - name: main
    block_size: 64
    n_epochs: 1
    sources:
      - {{name: stories, dataset_key: roneneldan/TinyStories, n_items: 300, weight: 3}}
      - {{name: alice, dataset_key: local-files, files: [{book}], weight: 1}}
"""


def test_a_mixed_stage_reuses_a_source_another_stage_prepared(project):
    prepare(project)  # warmup: the same 300 TinyStories stories
    project["config"].write_text(MIXED.format(book=project["books"] / BOOKS[1]))
    output = prepare(project)
    assert "[Stage 1/2] main.stories" in output and "[Stage 2/2] main.alice" in output
    # Fetched and tokenized for warmup already: only its shards (the stage's own files) are new.
    assert cache_lines(output) == ["Cache: fetch cached, tokenize cached, shard ran",
                                   "Cache: fetch ran, tokenize ran, shard ran"]
    assert "✓ Stage 'main.stories' dataset created" in output and "✓ Stage 'warmup'" not in output
    for split in ("train", "val"):
        for source in ("stories", "alice"):
            assert read_shard(project["data"] / f"{split}_main.{source}_pretrain.bin").n_tokens > 0
