"""train.nproc and friends: bookkeeping (not in the run's fingerprint), refused when the batch cannot be split."""

from __future__ import annotations

import pytest

from curriculum.config import ConfigError, load_run_config
from curriculum.training.config import TrainConfig
from flows.cli import build_parser, flow_parameters


def test_process_settings_are_bookkeeping(curriculum):
    from curriculum.training.run_dir import run_fingerprint
    from model.config import ModelConfig

    model = ModelConfig(preset="tiny")
    one = TrainConfig(batch_size=8)
    many = TrainConfig(batch_size=8, nproc=4, nnodes=2, node_rank=1, rdzv_endpoint="127.0.0.1:29400", threads=1)
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
