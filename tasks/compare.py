"""The comparison's task: train one arm with one seed, its stages in order, in its own run folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from curriculum.compare.arms import ArmPlan
from curriculum.prepare import ShardsRecord
from curriculum.training.trainer import EvalSet, StageData, StageResult, train_stage


def arm_stage_data(plan: ArmPlan, stage_index: int, shards: list[ShardsRecord]) -> StageData:
    """The shards stage `stage_index` of the arm reads, and every original stage's val set as an eval set."""
    stage = plan.stages[stage_index]
    keyed = {str(stage.train_path): stage.train_sha256, str(stage.val_path): stage.val_sha256}
    keyed |= {str(s.val_path): s.val_sha256 for s in shards}
    return StageData(
        train=stage.train_path, val=stage.val_path,
        earlier_val={s.stage.name: s.val_path for s in plan.stages[:stage_index]},
        eval_sets={s.stage: EvalSet(s.val_path, s.block_size) for s in shards},
        sha256=keyed,
    )


@task(name="train-arm", task_run_name="train-{plan.arm}-seed{k}", log_prints=True)
def train_arm(plan: ArmPlan, k: int, seed: int, shards: list[ShardsRecord], run_dir: Path) -> list[StageResult]:
    """Every stage of the arm, in order; finished stages (a resumed comparison) return at once from their end
    checkpoints. Nothing is cached by Prefect: the run folder is the record of what is done."""
    train = plan.train.model_copy(update={"seed": seed, "out_dir": run_dir})
    vocab = {"tokenizer": shards[-1].tokenizer, "vocab_size": shards[-1].vocab_size}
    train_tokens = {s.stage.name: s.train_tokens for s in plan.stages}
    return [
        train_stage(plan.curriculum, index, arm_stage_data(plan, index, shards), plan.model, train, run_dir,
                    train_tokens=train_tokens, expect_tokenizer=vocab)
        for index in range(len(plan.stages))
    ]
