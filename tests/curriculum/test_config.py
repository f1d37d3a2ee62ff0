"""Presets, YAML run configs and --set overrides: valid ones load, each mistake is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from curriculum import ConfigError, Curriculum, CurriculumStage, load_run_config
from curriculum.presets import DEFAULT_URLS_FILE, default, simple


def test_original_constructor_works():
    stage = CurriculumStage(
        name="warmup", dataset_key="roneneldan/TinyStories", block_size=128, n_epochs=1,
        dataset_suffix="pretrain", n_items=50000,
    )
    curriculum = Curriculum(stages=[stage])
    assert curriculum.stages[0].shard_name == "warmup_pretrain"
    assert curriculum.max_block_size == 128


def test_simple_preset_is_as_specified():
    stages = [(s.name, s.dataset_key, s.block_size, s.n_epochs, s.n_items) for s in simple().stages]
    assert stages == [
        ("warmup", "roneneldan/TinyStories", 128, 1, 10_000),
        ("pretrain", "custom-scrape", 256, 2, None),
    ]


def test_default_preset_is_as_specified():
    stages = [(s.name, s.dataset_key, s.block_size, s.n_epochs, s.n_items) for s in default().stages]
    assert stages == [
        ("warmup", "roneneldan/TinyStories", 128, 1, 50_000),
        ("foundation", "local-files", 256, 2, None),
        ("pretrain", "custom-scrape", 512, 3, None),
    ]
    assert default().stages[2].urls_file == str(DEFAULT_URLS_FILE)
    assert DEFAULT_URLS_FILE.is_file()


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


GOOD = """
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 64
    n_epochs: 1
    n_items: 100
  - name: books
    dataset_key: local-files
    files: [books/]
    block_size: 128
    n_epochs: 2
model:
  preset: tiny
train:
  batch_size: 4
"""


def test_yaml_run_config_loads_with_sections(tmp_path):
    config = load_run_config(config_path=write_yaml(tmp_path, GOOD))
    assert config.name == "run"
    assert [s.name for s in config.stages] == ["warmup", "books"]
    assert config.stages[1].files == ["books/"]
    assert (config.model.n_layer, config.model.n_embd) == (2, 64)  # from the tiny preset
    assert config.train.batch_size == 4


def test_overrides_reach_every_section_and_stages_by_name(tmp_path):
    config = load_run_config(
        config_path=write_yaml(tmp_path, GOOD),
        overrides=["model.n_layer=3", "train.learning_rate=1e-3", "stages.books.n_items=5",
                   "data.data_dir=/tmp/elsewhere", "stages.warmup.block_size=32"],
    )
    assert config.model.n_layer == 3 and config.model.n_embd == 64
    assert config.train.learning_rate == pytest.approx(1e-3)
    assert config.stages[1].n_items == 5
    assert str(config.data.data_dir) == "/tmp/elsewhere"
    assert config.stages[0].block_size == 32


def test_model_preset_override_replaces_preset_fields():
    config = load_run_config(type="simple", overrides={"model.preset": "gpt2"})
    assert (config.model.n_layer, config.model.n_embd) == (12, 768)
    config = load_run_config(type="simple", overrides={"model.preset": "tiny", "model.n_layer": 3})
    assert (config.model.n_layer, config.model.n_embd) == (3, 64)


@pytest.mark.parametrize(
    "change, expected",
    [
        (("n_epochs: 1", "n_epocs: 1"), ["stages.0.n_epocs", "unknown key 'n_epocs'", "n_epochs"]),
        (("name: books", "name: warmup"), ["duplicate stage name 'warmup'"]),
        (("block_size: 64", "block_size: 0"), ["stages.0.block_size", "greater than 0", "got 0"]),
        (("n_epochs: 2", "n_epochs: -1"), ["stages.1.n_epochs", "greater than 0"]),
        (("  batch_size: 4", "  batch_sise: 4"), ["train.batch_sise", "allowed keys here", "batch_size"]),
        (("preset: tiny", "preset: huge"), ["model.preset", "'tiny', 'small' or 'gpt2'"]),
        (("files: [books/]", "urls: [http://x]"), ["option 'urls' belongs to custom-scrape"]),
    ],
)
def test_bad_yaml_names_field_and_allowed_values(tmp_path, change, expected):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError) as error:
        load_run_config(config_path=write_yaml(tmp_path, text))
    for fragment in expected:
        assert fragment in str(error.value)


def test_unknown_top_level_key_lists_sections(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'modle'.*model"):
        load_run_config(config_path=write_yaml(tmp_path, GOOD + "modle:\n  n_layer: 2\n"))


def test_unknown_type_lists_choices():
    with pytest.raises(ConfigError, match="unknown curriculum type 'tiny'; choose one of: simple, default"):
        load_run_config(type="tiny")


@pytest.mark.parametrize(
    "override, message",
    [
        ("modl.n_layer=2", "unknown section 'modl'"),
        ("stages.nope.n_items=3", "no stage named 'nope'; stages: warmup, pretrain"),
        ("model.n_layer", "expects section.key=value"),
        ("model.n_layer=two", "model.n_layer"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(type="simple", overrides=[override])


def test_missing_or_invalid_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(config_path=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a YAML mapping with a 'stages:' list"):
        load_run_config(config_path=write_yaml(tmp_path, "- just\n- a list\n"))


def test_scrape_stage_needs_something_to_read():
    with pytest.raises(ValueError, match="has nothing to read"):
        CurriculumStage(name="web", dataset_key="custom-scrape", block_size=64, n_epochs=1)


def test_stages_round_trip_through_their_dump():
    for stage in default().stages:
        assert CurriculumStage.model_validate(stage.model_dump()) == stage
        assert CurriculumStage.model_validate_json(stage.model_dump_json()) == stage
