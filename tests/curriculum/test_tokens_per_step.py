"""Constant tokens per step: train.tokens_per_step derives each stage's batch size from its block size, a stage
may set its own batch_size, both reach the run's fingerprint, and a size that is not whole is refused by name."""

from __future__ import annotations

import pytest

from curriculum import ConfigError, load_run_config
from curriculum.training.checkpoints import END, read_checkpoint, stage_dir
from curriculum.training.run_dir import RunMismatchError, check_run_dir, run_fingerprint

YAML = """
stages:
  - name: short
    dataset_key: roneneldan/TinyStories
    block_size: 128
    n_epochs: 1
  - name: long
    dataset_key: roneneldan/TinyStories
    block_size: 512
    n_epochs: 1
train:
  tokens_per_step: 4096
"""


def load(tmp_path, text=YAML, overrides=()):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return load_run_config(config_path=path, overrides=overrides)


def test_tokens_per_step_takes_4x_the_sequences_at_a_quarter_of_the_block_size(tmp_path, kit, shard_dir,
                                                                               curriculum):
    from curriculum.training.schedule import check_batch_sizes

    config = load(tmp_path)
    assert check_batch_sizes(config, config.train) == [32, 8]  # 32 x 128 = 8 x 512 = 4096 tokens per step
    # A stage's own batch_size wins; grad_accum shares the step's tokens.
    config = load(tmp_path, overrides=["stages.long.batch_size=2", "train.grad_accum=2"])
    assert check_batch_sizes(config, config.train) == [16, 2]

    # The trainer trains those batches: warmup (block 16) takes 8 sequences, books (block 32) 4, 128 tokens each.
    train = kit.TINY_TRAIN.model_copy(update={"tokens_per_step": 128, "max_iters": 2})
    results, rec = kit.train_in_process(tmp_path / "run", shard_dir, curriculum, train=train)
    assert [start.plan.batch_size for start in rec.starts] == [8, 4]
    assert [start.plan.tokens_per_iter for start in rec.starts] == [128, 128]
    assert [r.tokens_seen for r in results] == [2 * 128, 2 * 128]
    for index, name in enumerate(["warmup", "books"]):  # where the data stream stands, as the checkpoint says
        state = read_checkpoint(stage_dir(tmp_path / "run", index, name) / END).state
        assert state["data_position"]["sample"] == 2 * [8, 4][index]


def test_not_whole_batch_names_the_stage_the_value_and_a_fitting_multiple(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, overrides=["train.tokens_per_step=1000"])
    message = str(error.value)
    assert "train.tokens_per_step=1,000" in message and "stage 'short'" in message
    assert "block_size x grad_accum = 128 x 1" in message and "a multiple of 512 fits every stage" in message
    assert "stages.short.batch_size" in message
    with pytest.raises(ConfigError, match="stage 'long' trains batches of 8 sequences, which do not split over 3"):
        load(tmp_path, overrides=["train.nproc=3", "train.batch_size=3", "stages.short.batch_size=3"])


def test_batch_settings_are_in_the_fingerprint_and_absent_ones_leave_older_folders_alone(tmp_path):
    config = load(tmp_path)
    fingerprint = run_fingerprint(config.curriculum, config.model, config.train)
    assert fingerprint["train"]["tokens_per_step"] == 4096
    other = load(tmp_path, overrides=["stages.long.batch_size=4"])
    assert run_fingerprint(other.curriculum, other.model, other.train)["curriculum"]["long"]["batch_size"] == 4

    plain = load(tmp_path, text=YAML.replace("  tokens_per_step: 4096\n", "  batch_size: 8\n"))
    plain_print = run_fingerprint(plain.curriculum, plain.model, plain.train)
    # Unset, the new settings are not written: run.json of folders made before they existed still matches.
    assert "tokens_per_step" not in plain_print["train"] and "decay_fraction" not in plain_print["train"]
    assert not {"tokens", "batch_size", "lr"} & set(plain_print["curriculum"]["long"])

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "run.json").write_text(__import__("json").dumps({"fingerprint": fingerprint}))
    changed = load(tmp_path, overrides=["train.tokens_per_step=8192"])
    with pytest.raises(RunMismatchError, match="train.tokens_per_step: 4096 -> 8192"):
        check_run_dir(tmp_path / "folder", run_fingerprint(changed.curriculum, changed.model, changed.train))
