"""train.nproc and friends: bookkeeping (not in the run's fingerprint), refused when the batch cannot be split;
each rank's share of the global batch."""

from __future__ import annotations

import numpy as np
import pytest

from curriculum.config import ConfigError, load_run_config
from curriculum.training.batches import TrainWindows
from curriculum.training.config import TrainConfig
from flows.cli import build_parser, flow_parameters


def test_process_settings_are_bookkeeping(curriculum):
    from curriculum.training.run_dir import run_fingerprint
    from model.config import ModelConfig

    model = ModelConfig(preset="tiny")
    one = TrainConfig(batch_size=8)
    many = TrainConfig(batch_size=8, nproc=4, nnodes=2, node_rank=1, rdzv_endpoint="127.0.0.1:29400", threads=1,
                       dist_timeout_s=30)
    assert run_fingerprint(curriculum, model, one) == run_fingerprint(curriculum, model, many)


def test_batch_that_does_not_split_over_the_processes_is_refused():
    with pytest.raises(ConfigError, match=r"train.batch_size=6 does not divide by 4 training processes"):
        load_run_config(type="simple", overrides={"train.nproc": 4, "train.batch_size": 6})
    with pytest.raises(ConfigError, match="train.rdzv_endpoint"):
        load_run_config(type="simple", overrides={"train.nnodes": 2})
    assert load_run_config(type="simple", overrides={"train.nproc": "auto"}).train.nproc == "auto"


def test_cli_nproc_becomes_the_override():
    args = build_parser().parse_args(["--type", "simple", "--nproc", "2", "--set", "train.batch_size=8"])
    assert flow_parameters(args)["overrides"]["train.nproc"] == 2
    args = build_parser().parse_args(["--type", "simple", "--nproc", "3", "--set", "train.batch_size=8"])
    with pytest.raises(ConfigError, match="does not divide by 3"):
        flow_parameters(args)


def test_ranks_take_equal_slices_of_the_same_global_batch():
    tokens = np.arange(16 * 40 + 1, dtype=np.uint16)
    one = TrainWindows(tokens, 16, 4, 2, seed=7, stage_index=0)
    parts = [TrainWindows(tokens, 16, 4, 2, seed=7, stage_index=0, rank=r, world_size=2) for r in range(2)]
    for it in (0, 9, 10, 23):  # 10 iterations per epoch: 10 and 23 are in later epochs
        for micro in range(2):
            joined = np.concatenate([p.window_ids(it, micro) for p in parts])
            assert joined.tolist() == one.window_ids(it, micro).tolist()
    with pytest.raises(ValueError, match="batch_size=4 does not divide by the 3 training processes"):
        TrainWindows(tokens, 16, 4, 1, seed=7, stage_index=0, rank=0, world_size=3)
