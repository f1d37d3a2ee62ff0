"""Each step's cache key holds the code it runs (tasks/caching.py code_identity of TRAIN_CODE, FETCH_CODE, ...):
editing a module of a step, in a copy of the project's source, changes that step's key and no other's.

The fast tests hash copies of the source; the slow one trains a tiny stage through Prefect's cache with its code
read from a copy, then from an edited copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiktoken
from prefect import Task, flow
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, temporary_settings

from curriculum.prepare import ShardsRecord
from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.config import TrainConfig
from data.shards import ShardWriter, read_header
from model.config import ModelConfig
from tasks.caching import SOURCE_ROOT, ContentKey, code_identity, keyed_by, run_cached
from tasks.prepare import fetch, shard, tokenize, tokenize_chunk
from tasks.train import train

PACKAGES = ("tasks", "curriculum", "data", "model")  # the project's source a step may run
STEPS: dict[str, Task[..., Any]] = {"fetch": fetch, "tokenize-chunk": tokenize_chunk, "tokenize": tokenize,
                                    "shard": shard, "train": train}


def source_copy(folder: Path, edit: str | None = None) -> Path:
    """The project's packages copied into `folder`, with a line appended to the file `edit` (relative path)."""
    for package in PACKAGES:
        shutil.copytree(SOURCE_ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        with open(folder / edit, "a", encoding="utf-8") as handle:
            handle.write("\nEDITED = True\n")
    return folder


def key_under(task: Task[..., Any], root: Path) -> ContentKey:
    """The task's own cache key function (identity and code), its code read under `root`."""
    key = task.cache_key_fn
    assert isinstance(key, ContentKey)
    return keyed_by(key.identity, *key.code, root=root)


def identities(root: Path) -> dict[str, str]:
    return {name: code_identity(*key_under(task, root).code, root=root) for name, task in STEPS.items()}


@pytest.fixture(scope="module")
def unedited(tmp_path_factory) -> dict[str, str]:
    return identities(source_copy(tmp_path_factory.mktemp("source")))


def test_the_same_source_elsewhere_has_the_same_identities(unedited, tmp_path):
    assert identities(source_copy(tmp_path)) == unedited
    assert len(set(unedited.values())) == 4  # tokenize-chunk runs the tokenize step's code


@pytest.mark.parametrize("edited, changed", [
    ("curriculum/training/stage_loop.py", {"train"}),  # the training step
    ("curriculum/training/batches.py", {"train"}),
    ("curriculum/training/device.py", {"train"}),
    ("curriculum/training/distributed_worker.py", {"train"}),  # what torchrun's ranks run
    ("model/gpt.py", {"train"}),
    ("tasks/train.py", {"train"}),
    ("data/shards.py", {"tokenize-chunk", "tokenize", "shard", "train"}),  # the token file format
    ("data/tokenize.py", {"tokenize-chunk", "tokenize", "shard"}),
    ("data/split.py", {"shard"}),
    ("data/hf_reader.py", {"fetch"}),
    ("curriculum/prepare.py", {"fetch", "tokenize-chunk", "tokenize", "shard"}),
    ("curriculum/stages.py", {"fetch", "shard", "train"}),
    ("data/web/robots.py", set()),  # the crawler: a crawl's fetch is never cached
    ("curriculum/compare/report.py", set()),  # no step runs it
    ("tasks/ui_publish.py", set()),  # only reports
])
def test_editing_a_module_changes_the_identity_of_the_steps_that_run_it(unedited, tmp_path, edited, changed):
    after = identities(source_copy(tmp_path, edit=edited))
    assert {name for name in STEPS if after[name] != unedited[name]} == changed


# ---- the train step's key, and a stage that runs again -----------------------------------------------------

TOKENIZER = "r50k_base"
STAGE = CurriculumStage(name="stories", dataset_key="roneneldan/TinyStories", block_size=16, n_epochs=1)
MODEL = ModelConfig(preset=None, n_layer=1, n_head=2, n_embd=16)
TRAIN = TrainConfig(batch_size=4, warmup_iters=2, eval_interval=4, eval_iters=1, checkpoint_interval=4, seed=7,
                    device="cpu")


def write_shard(path: Path, tokens: np.ndarray) -> dict[str, Any]:
    with ShardWriter(path, vocab_size=50257) as writer:
        writer.write(tokens)
        writer.commit(tokenizer=TOKENIZER, eot_token=50256)
    return read_header(path)


def stage_shards(folder: Path, text: str) -> ShardsRecord:
    """The stage's train and val shards, of a real book's tokens, and their prepare record."""
    tokens = np.array(tiktoken.get_encoding(TOKENIZER).encode_ordinary(text), dtype=np.uint16)
    folder.mkdir(parents=True, exist_ok=True)
    train_path, val_path = folder / "train_stories.bin", folder / "val_stories.bin"
    train_header = write_shard(train_path, tokens[: 16 * 24 + 1])
    val_header = write_shard(val_path, tokens[16 * 24 + 1: 16 * 32 + 2])
    return ShardsRecord(
        stage=STAGE.name, shard_name=STAGE.shard_name, block_size=STAGE.block_size, tokenizer=TOKENIZER,
        vocab_size=50257, train_path=train_path, val_path=val_path, train_sha256=train_header["sha256"],
        val_sha256=val_header["sha256"], train_tokens=train_header["n_tokens"], val_tokens=val_header["n_tokens"],
        train_documents=1, val_documents=1,
    )


def train_parameters(shards: ShardsRecord, run_dir: Path) -> dict[str, Any]:
    return {"stage_name": STAGE.name, "curriculum": Curriculum(stages=[STAGE]), "stage_index": 0,
            "shards": [shards], "model": MODEL, "train": TRAIN, "run_dir": run_dir, "previous": None,
            "run": "code-probe"}


@pytest.fixture(scope="module")
def book(shared: Path) -> str:
    return (shared / "corpora" / "books" / "carroll_alice-in-wonderland_pg11.txt").read_text(encoding="utf-8-sig")


def test_editing_the_training_step_changes_the_train_key(tmp_path, book):
    parameters = train_parameters(stage_shards(tmp_path / "data", book), tmp_path / "run")
    unedited = key_under(train, source_copy(tmp_path / "unedited")).key("train", parameters)
    assert key_under(train, source_copy(tmp_path / "same")).key("train", parameters) == unedited
    edited = source_copy(tmp_path / "edited", edit="curriculum/training/stage_loop.py")
    assert key_under(train, edited).key("train", parameters) != unedited


@flow(name="code-probe")
def train_from(root: Path, parameters: dict[str, Any]) -> tuple[Any, bool]:
    """The train task with its code read under `root`, run through the cache of its run folder, as the flow does."""
    return run_cached(train.with_options(cache_key_fn=key_under(train, root)), parameters["run_dir"], **parameters)


def test_a_finished_stage_misses_the_cache_once_its_step_is_edited(prefect_server, tmp_path, book):
    parameters = train_parameters(stage_shards(tmp_path / "data", book), tmp_path / "run")
    unedited = source_copy(tmp_path / "unedited")
    edited = source_copy(tmp_path / "edited", edit="curriculum/training/stage_loop.py")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        first, cached = train_from(unedited, parameters)
        assert not cached and first.iters > 0
        assert train_from(unedited, parameters)[1]  # the same code: a cache hit
        again, cached = train_from(edited, parameters)
        assert not cached  # the step ran again
        # ... and the run folder decided what it did: the stage's end checkpoint is there, so nothing trained.
        # To train it with the edited code, start over (--restart or another --out-dir).
        assert again.checkpoint_sha256 == first.checkpoint_sha256
        assert train_from(edited, parameters)[1]
        APILogHandler().flush()  # while the server is up: no log is left to retry against a stopped one at exit
