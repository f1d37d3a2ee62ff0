"""Mixed stages: a stage of several weighted sources. Each source is prepared as a stage of its own (its files
named after the stage and source); training draws windows in proportion to the weights, deterministically from
the seed, so a killed run resumes bit-identically; a one-source mixture is the plain stage."""

from __future__ import annotations

import numpy as np
import pytest

from curriculum import ConfigError, Curriculum, CurriculumStage, load_run_config
from curriculum.prepare import fetch_stage, make_reader, shard_identity, shard_stage, tokenize_stage
from curriculum.training.batches import MixedWindows
from curriculum.training.checkpoints import END, read_checkpoint, stage_dir
from data.config import DataConfig
from data.shards import read_shard
from data.web.config import ScrapeConfig

BOOK = "carroll_alice-in-wonderland_pg11.txt"


def mixed_curriculum(books) -> Curriculum:
    """warmup: TinyStories (block 16); main: TinyStories 3 : a book 1 (block 32), a budget of 40 steps of 4;
    after: the book alone, 3 steps (its forgetting evaluation reads the mixed stage's val sets)."""
    return Curriculum(stages=[
        CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=16, n_epochs=1,
                        n_items=300, max_iters=5),
        CurriculumStage(name="main", block_size=32, tokens=40 * 4 * 32, sources=[
            {"name": "stories", "dataset_key": "roneneldan/TinyStories", "n_items": 300, "weight": 3},
            {"name": "book", "dataset_key": "local-files", "files": [str(books / BOOK)], "weight": 1},
        ]),
        CurriculumStage(name="after", dataset_key="local-files", files=[str(books / BOOK)], block_size=32,
                        n_epochs=1, max_iters=3),
    ])


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory, hub_mirror, books):
    """Every component of mixed_curriculum prepared with the real fetch -> tokenize -> shard steps."""
    data = DataConfig(data_dir=tmp_path_factory.mktemp("mixed-data"), hub_mirror=hub_mirror)
    curriculum = mixed_curriculum(books)
    for component in curriculum.components():
        documents = fetch_stage(component, make_reader(component, data, ScrapeConfig()), data)
        shard_stage(tokenize_stage(documents, data), component, data)
    return data.resolved_data_dir, curriculum


def test_a_mixed_stage_prepares_each_source_under_its_own_files(mixed_data):
    data_dir, curriculum = mixed_data
    assert [c.name for c in curriculum.components()] == ["warmup", "main.stories", "main.book", "after"]
    assert sorted(p.name for p in data_dir.glob("*.bin")) == [
        "train_after_pretrain.bin", "train_main.book_pretrain.bin", "train_main.stories_pretrain.bin",
        "train_warmup_pretrain.bin", "val_after_pretrain.bin", "val_main.book_pretrain.bin",
        "val_main.stories_pretrain.bin", "val_warmup_pretrain.bin"]


def test_windows_are_drawn_in_proportion_to_the_weights_from_the_batches(mixed_data):
    data_dir, curriculum = mixed_data
    stories, book = (read_shard(c.shard_path(data_dir, "train")).tokens for c in curriculum.stages[1].components())
    windows = MixedWindows([stories, book], [3, 1], block_size=32, batch_size=8, grad_accum=1, seed=7, stage_index=1)
    # Which source each row of each batch came from, found by its tokens (every window of each source, indexed).
    index = {}
    for k, tokens in enumerate((stories, book)):
        for w in range((tokens.size - 1) // 32):
            index.setdefault(tokens[w * 32 : w * 32 + 33].tobytes(), set()).add(k)
    counts = np.zeros(2, dtype=np.int64)
    for it in range(100):  # 800 sequences
        x, y = windows.batch(it, 0, __import__("torch").device("cpu"))
        for row_x, row_y in zip(x.numpy(), y.numpy(), strict=True):
            row = np.concatenate([row_x, row_y[-1:]]).astype(stories.dtype).tobytes()
            [source] = index[row]
            counts[source] += 1
    # 3:1 of 800 is 600; the deal's blocks of 1,024 hold exactly 768:256, so 800 of one block vary by about
    # sqrt(800 * 3/4 * 1/4 * 224/1023) = 5.7 around it: 4 sigma.
    assert abs(counts[0] - 600) <= 23, counts
    again = MixedWindows([stories, book], [3, 1], 32, 8, 1, seed=7, stage_index=1)
    assert [list(a) for a in again.source_ids(400, 8)] == [list(a) for a in windows.source_ids(400, 8)]
    other_seed = MixedWindows([stories, book], [3, 1], 32, 8, 1, seed=8, stage_index=1)
    assert list(other_seed.source_ids(0, 64)[1]) != list(windows.source_ids(0, 64)[1])
    # Over whole blocks the proportion is exact; every source's epoch reads each of its windows once.
    book_windows = (book.size - 1) // 32
    blocks = book_windows // 256 + 1  # enough for one epoch of the book
    sources, ids = windows.source_ids(0, 1024 * blocks)
    assert list(np.bincount(sources)) == [768 * blocks, 256 * blocks]
    first_epoch = ids[sources == 1][:book_windows]
    assert sorted(first_epoch) == list(range(book_windows))


@pytest.mark.slow  # trains a whole run
def test_a_mixed_stage_trains_its_budget_in_proportion(kit, mixed_data, tmp_path, capsys):
    data_dir, curriculum = mixed_data
    train = kit.TINY_TRAIN.model_copy(update={"eval_interval": 100, "checkpoint_interval": 100})
    results, rec = kit.train_in_process(tmp_path / "run", data_dir, curriculum, train=train)
    assert [r.iters for r in results] == [5, 40, 3]
    plan = rec.starts[1].plan
    assert set(plan.source_windows) == {"main.stories", "main.book"}
    assert plan.windows == sum(plan.source_windows.values())
    windows = ", ".join(f"{name} {count:,} windows" for name, count in plan.source_windows.items())
    assert f"Train tokens: {plan.train_tokens:,} (sources: {windows})" in capsys.readouterr().out
    position = read_checkpoint(stage_dir(tmp_path / "run", 1, "main") / END).state["data_position"]
    samples = position["source_1_samples"], position["source_2_samples"]
    assert sum(samples) == 160 and abs(samples[0] - 120) <= 20, samples  # 3:1 within 4 sigma (see above)
    assert list(results[1].forgetting) == ["warmup"]
    # A later stage measures forgetting on the mixed stage's val sets too (their weighted mean).
    assert list(results[2].forgetting) == ["warmup", "main"] and results[2].forgetting["main"] > 0


@pytest.mark.slow  # three training subprocesses
def test_a_killed_mixed_stage_resumes_bit_identically(kit, mixed_data, tmp_path):
    data_dir, curriculum = mixed_data
    train = kit.TINY_TRAIN.model_copy(update={"eval_interval": 10, "checkpoint_interval": 7})
    reference = tmp_path / "reference"
    kit.run_training(reference, data_dir, curriculum, kit.TINY_MODEL, train)
    run_dir, paused = tmp_path / "run", tmp_path / "paused"
    proc = kit.spawn_training(run_dir, data_dir, curriculum, kit.TINY_MODEL, train, pause_at="step:1:17",
                              paused_file=paused)
    kit.kill_when_paused(proc, paused)
    paused.unlink()
    out = kit.run_training(run_dir, data_dir, curriculum, kit.TINY_MODEL, train)
    assert "resuming at iteration 14/40" in out
    final = "final/model.safetensors"
    assert (run_dir / final).read_bytes() == (reference / final).read_bytes()


def test_a_one_source_mixture_is_the_plain_stage():
    plain = CurriculumStage(name="w", dataset_key="roneneldan/TinyStories", block_size=64, n_epochs=1, n_items=5)
    mixed = CurriculumStage(name="w", block_size=64, n_epochs=1,
                            sources=[{"dataset_key": "roneneldan/TinyStories", "n_items": 5, "weight": 2.5}])
    assert mixed == plain and mixed.components() == [plain] and mixed.sources is None
    # so its cache keys and shard names are the plain stage's
    from data.config import DataConfig as Data
    from tasks.prepare import _fetch_identity

    data = Data(data_dir="/tmp/unused", hub_mirror="/work/shared/hub")
    assert _fetch_identity({"stage": mixed, "data": data, "scrape": ScrapeConfig()}) == _fetch_identity(
        {"stage": plain, "data": data, "scrape": ScrapeConfig()})
    assert mixed.shard_name == plain.shard_name == "w_pretrain"


def test_a_source_shared_by_two_stages_has_the_same_fetch_and_tokens_keys(books):
    from tasks.prepare import _fetch_identity

    curriculum = mixed_curriculum(books)
    warmup, stories = curriculum.components()[0], curriculum.components()[1]
    data = DataConfig(data_dir="/tmp/unused", hub_mirror="/work/shared/hub")
    # The fetch key holds the source and its options, not the stage's name (tokenize keys on the documents' hash).
    assert _fetch_identity({"stage": warmup, "data": data, "scrape": ScrapeConfig()}) == _fetch_identity(
        {"stage": stories, "data": data, "scrape": ScrapeConfig()})
    # The shards are the stage's own files (its name and block size are in their key and their names).
    assert shard_identity.__doc__ and warmup.shard_name != stories.shard_name


YAML = """
stages:
  - name: main
    block_size: 64
    n_epochs: 1
    sources:
      - {dataset_key: roneneldan/TinyStories, weight: 3, n_items: 100}
      - {dataset_key: local-files, files: [books/], weight: 1}
"""


@pytest.mark.parametrize("old, new, expected", [
    ("weight: 1}", "weight: 0}", ["stages.0.sources.1.weight", "greater than 0"]),
    ("weight: 1}", "weight: .inf}", ["stages.0.sources.1.weight", "finite"]),
    ("weight: 1}", "weight: 1, wieght: 2}", ["unknown key 'wieght'", "weight"]),
    ("weight: 1}", "weight: 1, urls: [http://x]}", ["option 'urls' belongs to custom-scrape", "'main.s2'"]),
    ("    n_epochs: 1\n", "    n_epochs: 1\n    dataset_key: roneneldan/TinyStories\n",
     ["stage 'main' has sources, and also dataset_key"]),
    ("{dataset_key: roneneldan/TinyStories, weight: 3", "{name: s2, dataset_key: roneneldan/TinyStories, weight: 3",
     ["sources named alike"]),
])
def test_mixture_mistakes_are_named(tmp_path, old, new, expected):
    assert old in YAML
    path = tmp_path / "run.yaml"
    path.write_text(YAML.replace(old, new))
    with pytest.raises(ConfigError) as error:
        load_run_config(config_path=path)
    for fragment in expected:
        assert fragment in str(error.value), str(error.value)


def test_a_mixture_loads_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML)
    [stage] = load_run_config(config_path=path).stages
    assert stage.weights == [3, 1] and [c.name for c in stage.components()] == ["main.s1", "main.s2"]
    assert stage.components()[1].files == ["books/"]


def test_a_mixed_stage_round_trips_through_its_dump(books):
    stage = mixed_curriculum(books).stages[1]
    assert CurriculumStage.model_validate(stage.model_dump()) == stage
    assert CurriculumStage.model_validate_json(stage.model_dump_json()) == stage
    assert CurriculumStage.model_validate(stage.model_dump()).components() == stage.components()


@pytest.mark.slow  # torchrun with two processes, three stages
def test_two_processes_train_a_mixed_stage_like_one(kit, mixed_data, tmp_path):
    from safetensors.numpy import load_file

    from curriculum.training.launch import train_stage_launched
    from curriculum.training.run_dir import read_metrics
    from curriculum.training.trainer import StageData
    from data.shards import read_header

    data_dir, curriculum = mixed_data
    model = kit.TINY_MODEL.model_copy(update={"dropout": 0.0})  # dropout streams differ per rank
    # float32 on any CPU: a parity test (in bfloat16 the ranks' split changes how sums round; test_train_ddp.py)
    one = kit.TINY_TRAIN.model_copy(update={"eval_interval": 100, "checkpoint_interval": 100, "threads": 1,
                                            "dtype": "float32"})
    two = one.model_copy(update={"nproc": 2})
    kit.train_all_stages(curriculum, data_dir, model, one, tmp_path / "one", expect_tokenizer=kit.EXPECT)
    tokens = {c.name: int(read_header(c.shard_path(data_dir, "train"))["n_tokens"]) for c in curriculum.components()}
    for i in range(len(curriculum.stages)):
        train_stage_launched(curriculum, i, StageData.for_stage(data_dir, curriculum, i), model, two,
                             tmp_path / "two", train_tokens=tokens, expect_tokenizer=kit.EXPECT)
    rows_one, rows_two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["iter_num"] for r in rows_two] == [r["iter_num"] for r in rows_one]
    for a, b in zip(rows_one, rows_two, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    w1, w2 = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("one", "two"))
    for name in w1:
        np.testing.assert_allclose(w2[name], w1[name], rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("source, expected", [
    ({"dataset_key": "roneneldan/TinyStories", "weight": -1}, "stages.0.sources.0.weight: Input should be greater"),
    ({"dataset_key": "roneneldan/TinyStories", "weight": 1, "bogus": 2},
     "stages.0.sources.0.bogus: unknown key 'bogus'; allowed keys here: name, dataset_key, weight"),
])
def test_a_one_source_mixture_reports_its_source_mistakes_where_they_are(source, expected):
    from curriculum.config import validate_run_config

    with pytest.raises(ConfigError, match=expected):
        validate_run_config({"stages": [{"name": "a", "block_size": 8, "n_epochs": 1, "sources": [source]}]})
