"""The comparison's task: train one arm with one seed, its stages in order, in its own run folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from curriculum.compare.arms import ArmPlan
from curriculum.training.trainer import EvalSet, StageData, StageResult, train_stage


def eval_sets(judge: ArmPlan) -> dict[str, EvalSet]:
    """The val set of every stage of the curriculum arm `judge`, at its block size: what every arm of the
    comparison is measured on (a mixed stage's: its sources' val sets with their weights)."""
    sets = {}
    for stage in judge.stages:
        vals = [record.val_path for record in stage.shards]
        mixture = tuple(zip(vals, stage.stage.weights, strict=True)) if stage.stage.sources else ()
        sets[stage.stage.name] = EvalSet(vals[0], stage.stage.block_size, mixture)
    return sets


def arm_stage_data(plan: ArmPlan, stage_index: int, judge: ArmPlan) -> StageData:
    """The shards stage `stage_index` of the arm reads (a mixed stage: each source's), the val sets of its
    earlier stages, and every val set of the curriculum arm `judge` as an eval set."""
    stages = plan.stages[: stage_index + 1]
    mine = plan.stages[stage_index]
    keyed = {str(r.val_path): r.val_sha256 for s in [*stages, *judge.stages] for r in s.shards}
    keyed |= {str(r.train_path): r.train_sha256 for r in mine.shards}
    mixed = bool(mine.stage.sources)
    return StageData(
        train=mine.shards[0].train_path, val=mine.shards[0].val_path,
        earlier_val={s.stage.name: s.shards[0].val_path for s in stages[:-1]},
        eval_sets=eval_sets(judge),
        sha256=keyed,
        train_sources={name: r.train_path for name, r in mine.component_shards().items()} if mixed else {},
        val_sources={name: r.val_path for name, r in mine.component_shards().items()} if mixed else {},
        earlier_val_sources={s.stage.name: {name: r.val_path for name, r in s.component_shards().items()}
                             for s in stages[:-1] if s.stage.sources},
    )


@task(name="train-arm", task_run_name="train-{plan.arm}-{plan.train.lr_schedule}-seed{k}", log_prints=True)
def train_arm(plan: ArmPlan, k: int, seed: int, judge: ArmPlan, run_dir: Path,
              mlflow_parent_run_id: str | None = None) -> list[StageResult]:
    """Every stage of the arm, in order, evaluated on the val sets of the curriculum arm `judge`; finished
    stages (a resumed comparison) return at once from their end checkpoints. Nothing is cached by Prefect: the
    run folder is the record of what is done. `mlflow_parent_run_id`: the comparison's MLflow run, of which the
    arm's run is a child (with mlflow in train.loggers)."""
    update: dict[str, object] = {"seed": seed, "out_dir": run_dir}
    if mlflow_parent_run_id is not None:
        update["mlflow_parent_run_id"] = mlflow_parent_run_id
    train = plan.train.model_copy(update=update)
    last = judge.stages[-1].shards[-1]
    vocab = {"tokenizer": last.tokenizer, "vocab_size": last.vocab_size}
    return [
        train_stage(plan.curriculum, index, arm_stage_data(plan, index, judge), plan.model, train, run_dir,
                    train_tokens=plan.train_tokens(), expect_tokenizer=vocab)
        for index in range(len(plan.stages))
    ]
