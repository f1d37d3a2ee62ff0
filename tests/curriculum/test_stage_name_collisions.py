"""Two stages that would write the same shard file or share UI artifacts are refused, naming both."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from curriculum import ConfigError, Curriculum, CurriculumStage, load_run_config
from tasks.ui_artifacts import artifact_key


def stage(name: str, suffix: str = "pretrain") -> CurriculumStage:
    return CurriculumStage(name=name, dataset_key="roneneldan/TinyStories", block_size=64, n_epochs=1,
                           dataset_suffix=suffix)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (stage("a", "b_pretrain"), stage("a_b"), r"stages 'a' .*and 'a_b' .*both write train_a_b_pretrain\.bin"),
        (stage("a_b"), stage("A_b"), r"stages 'a_b' .*and 'A_b' .*ignoring case"),
        (stage("a", "b_pretrain"), stage("A_B"), r"stages 'a' .*and 'A_B' .*both write"),
        (stage("warm_up", "x"), stage("warm.up", "y"), r"stages 'warm_up' and 'warm\.up' .*artifacts named 'warm-up'"),
        (stage("Books", "x"), stage("books", "y"), r"stages 'Books' and 'books' .*artifacts named 'books'"),
    ],
)
def test_colliding_stages_are_refused_in_python(first, second, message):
    with pytest.raises(ValidationError, match=message):
        Curriculum(stages=[first, stage("other"), second])


def test_colliding_stages_are_refused_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "stages:\n"
        "  - {name: a, dataset_key: roneneldan/TinyStories, block_size: 64, n_epochs: 1, dataset_suffix: b_pretrain}\n"
        "  - {name: a_b, dataset_key: roneneldan/TinyStories, block_size: 128, n_epochs: 1}\n"
        "model: {preset: tiny}\n"
    )
    with pytest.raises(ConfigError, match=r"'a' .*'a_b' .*train_a_b_pretrain\.bin.*rename one"):
        load_run_config(config_path=path)


def test_stages_that_are_accepted_have_distinct_files_and_artifact_keys():
    names = ["a", "a_b", "b", "warmup", "warmup2", "a-c", "books"]
    curriculum = Curriculum(stages=[stage(n) for n in names])
    shard_files = [f"train_{s.shard_name}.bin".casefold() for s in curriculum.stages]
    assert len(set(shard_files)) == len(shard_files)
    for one, two in itertools.combinations(curriculum.stages, 2):
        assert artifact_key("run", "train", one.name) != artifact_key("run", "train", two.name)
