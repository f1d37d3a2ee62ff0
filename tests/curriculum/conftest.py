"""Training fixtures: real token shards (TinyStories mirror + Gutenberg books, GPT-2 BPE), a two-stage test
curriculum, a tiny model, and a helper that trains in a subprocess so a test can SIGKILL it.

The shards are built here with ShardWriter; once data/ has its prepare pipeline, `shard_dir` is the one
place to switch over to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tiktoken

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from curriculum.sources import LOCAL_FILES  # noqa: E402
from curriculum.stages import Curriculum, CurriculumStage  # noqa: E402
from curriculum.training.config import TrainConfig  # noqa: E402
from curriculum.training.types import TrainListener  # noqa: E402
from data.shards import ShardWriter  # noqa: E402
from model.config import ModelConfig  # noqa: E402

TOKENIZER = "r50k_base"
EXPECT = {"tokenizer": TOKENIZER, "vocab_size": 50257}
# Token budgets: warmup (block 16) trains 40 windows, books (block 32) 24 windows per epoch; with batch 4
# that is 10 + 2 * 6 = 22 iterations, a few seconds for the tiny model on a CPU.
TOKENS = {"train_warmup": 16 * 40 + 1, "val_warmup": 16 * 8 + 1, "train_books": 32 * 24 + 1, "val_books": 32 * 8 + 1}
BOOK = "carroll_alice-in-wonderland_pg11.txt"


def make_curriculum(books_dir: Path, warmup_block: int = 16) -> Curriculum:
    return Curriculum(
        stages=[
            CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=warmup_block, n_epochs=1),
            CurriculumStage(name="books", dataset_key=LOCAL_FILES, block_size=32, n_epochs=2, files=[str(books_dir)]),
        ]
    )


# Dropout on, so the exact-resume tests also prove that the random stream is restored.
TINY_MODEL = ModelConfig(preset=None, n_layer=2, n_head=2, n_embd=16, dropout=0.1)
TINY_TRAIN = TrainConfig(
    batch_size=4,
    learning_rate=3e-3,
    min_lr=3e-4,
    warmup_iters=3,
    eval_interval=4,
    eval_iters=2,
    checkpoint_interval=3,
    keep_checkpoints=2,
    seed=7,
    device="cpu",
)


def _tokens_of(texts, encoding: tiktoken.Encoding, n: int) -> np.ndarray:
    ids: list[int] = []
    for text in texts:
        ids.extend(encoding.encode_ordinary(text))
        ids.append(encoding.eot_token)
        if len(ids) >= n:
            return np.array(ids[:n], dtype=np.uint16)
    raise AssertionError(f"not enough text for {n} tokens")


def write_shard(path: Path, tokens: np.ndarray, **meta) -> None:
    meta = {"tokenizer": TOKENIZER, "eot_token": 50256, **meta}
    with ShardWriter(path, vocab_size=meta.pop("vocab_size", 50257)) as writer:
        writer.write(tokens)
        writer.commit(**meta)


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, hub_mirror: Path, books: Path) -> Path:
    """train_/val_{warmup,books}_pretrain.bin from real TinyStories stories and a real Gutenberg book."""
    encoding = tiktoken.get_encoding(TOKENIZER)
    folder = tmp_path_factory.mktemp("shards")
    data = hub_mirror / "roneneldan" / "TinyStories" / "data"
    stories = pq.read_table(data / "train-00000-of-00001.parquet", columns=["text"]).column("text").to_pylist()
    val_stories = pq.read_table(data / "validation-00000-of-00001.parquet", columns=["text"]).column("text").to_pylist()
    book = (books / BOOK).read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    paragraphs = [p for p in book.split("\n\n") if p.strip()]
    cut = len(paragraphs) * 3 // 4  # train from the first three quarters, val from the rest
    write_shard(folder / "train_warmup_pretrain.bin", _tokens_of(stories, encoding, TOKENS["train_warmup"]))
    write_shard(folder / "val_warmup_pretrain.bin", _tokens_of(val_stories, encoding, TOKENS["val_warmup"]))
    write_shard(folder / "train_books_pretrain.bin", _tokens_of(paragraphs[:cut], encoding, TOKENS["train_books"]))
    write_shard(folder / "val_books_pretrain.bin", _tokens_of(paragraphs[cut:], encoding, TOKENS["val_books"]))
    return folder


@pytest.fixture(scope="session")
def curriculum(books: Path) -> Curriculum:
    return make_curriculum(books)


def tree_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---- training in a subprocess (so a test can SIGKILL it) -------------------------------------------------

RUNNER = """
import json, logging, sys
sys.path[:0] = [{root!r}, {here!r}]
from conftest import main
main(json.loads(sys.argv[1]))
"""


def main(spec: dict) -> None:
    """Subprocess entry: train the whole test curriculum as `spec` describes."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train_all_stages(
        Curriculum.model_validate(spec["curriculum"]),
        spec["data_dir"],
        ModelConfig.model_validate(spec["model"]),
        TrainConfig.model_validate(spec["train"]),
        spec["run_dir"],
        expect_tokenizer=EXPECT,
    )


def spawn_training(run_dir: Path, data_dir: Path, curriculum: Curriculum, model: ModelConfig, train: TrainConfig,
                   pause_at: str | None = None, paused_file: Path | None = None,
                   file_size_limit: int | None = None) -> subprocess.Popen:
    spec = {
        "run_dir": str(run_dir),
        "data_dir": str(data_dir),
        "curriculum": curriculum.model_dump(mode="json", exclude_unset=True),
        "model": model.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
    }
    env = dict(os.environ)
    env.pop("CURRICULUM_PAUSE_AT", None)
    if pause_at:
        env["CURRICULUM_PAUSE_AT"] = pause_at
        env["CURRICULUM_PAUSED_FILE"] = str(paused_file)
    code = RUNNER.format(root=str(ROOT), here=str(Path(__file__).parent))
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(spec)], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=(lambda: _limit_file_size(file_size_limit)) if file_size_limit else None,
    )


def _limit_file_size(limit: int) -> None:
    """In the child: no file may grow past `limit` bytes, as on a full disk; a write past it fails with EFBIG
    (SIGXFSZ, which would kill the process instead, is ignored)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def run_training(*args, **kwargs) -> str:
    """Train to completion in a subprocess; returns its output, fails the test if it fails."""
    proc = spawn_training(*args, **kwargs)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def kill_when_paused(proc: subprocess.Popen, paused_file: Path, timeout: float = 120) -> str:
    """Wait until the subprocess pauses at its fault point, then SIGKILL it; returns its output."""
    deadline = time.monotonic() + timeout
    while not paused_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before pausing (rc={proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training did not reach its pause point in time")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return out


# ---- a finished in-process run, shared by tests that inspect or copy it ----------------------------------


def train_all_stages(curriculum: Curriculum, data_dir, model_cfg, train_cfg, run_dir, *, expect_tokenizer,
                     listener=None):
    """Every stage in order, as the flow runs them but without Prefect; train_tokens from the shard headers."""
    from curriculum.training.trainer import StageData, train_stage
    from data.shards import read_header

    train_tokens = {s.name: int(read_header(s.shard_path(data_dir, "train"))["n_tokens"])
                    for s in curriculum.components()}
    return [
        train_stage(
            curriculum, i, StageData.for_stage(data_dir, curriculum, i), model_cfg, train_cfg, run_dir,
            train_tokens=train_tokens, expect_tokenizer=expect_tokenizer, listener=listener,
        )
        for i in range(len(curriculum.stages))
    ]


class Recorder(TrainListener):
    """A trainer listener that remembers every event."""

    def __init__(self):
        self.starts, self.steps, self.evals, self.checkpoints, self.ends = [], [], [], [], []

    def on_stage_start(self, start):
        self.starts.append(start)

    def on_step(self, step):
        self.steps.append(step)

    def on_eval(self, row):
        self.evals.append(row)

    def on_checkpoint(self, checkpoint):
        self.checkpoints.append(checkpoint)

    def on_stage_end(self, result):
        self.ends.append(result)


def train_in_process(run_dir: Path, data_dir: Path, curriculum: Curriculum, model=TINY_MODEL, train=TINY_TRAIN):
    recorder = Recorder()
    results = train_all_stages(curriculum, data_dir, model, train, run_dir, expect_tokenizer=EXPECT,
                               listener=recorder)
    return results, recorder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, shard_dir: Path, curriculum: Curriculum):
    """A finished per-stage run: (run_dir, results, recorder). Copy it before changing anything in it."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    results, recorder = train_in_process(run_dir, shard_dir, curriculum)
    return run_dir, results, recorder


@pytest.fixture(scope="session")
def kit():
    """The helpers and settings above, for test modules (which cannot import a conftest by name)."""
    import types

    return types.SimpleNamespace(
        EXPECT=EXPECT, TOKENS=TOKENS, TINY_MODEL=TINY_MODEL, TINY_TRAIN=TINY_TRAIN,
        make_curriculum=make_curriculum, write_shard=write_shard, tree_hashes=tree_hashes,
        train_in_process=train_in_process, spawn_training=spawn_training, run_training=run_training,
        kill_when_paused=kill_when_paused, train_all_stages=train_all_stages, Recorder=Recorder,
    )
