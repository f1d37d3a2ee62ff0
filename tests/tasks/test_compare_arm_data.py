"""What each arm's stage hands the trainer (tasks/compare.py): its own shards (a mixed stage: each source's,
under the trainer's component names) and the same eval sets in every arm and stage, the curriculum's, a mixed
target's with its sources' weights."""

from __future__ import annotations

from pathlib import Path

from curriculum.compare.arms import check_versus, plan_arms
from curriculum.training.types import EvalSet
from tasks.compare import arm_stage_data
from tests.curriculum.test_compare_arms import mixed_run, versus_of


def test_every_arm_reads_its_sources_and_is_judged_on_the_curriculums_val_sets():
    config, shards = mixed_run()
    warmup, foundation, stories, book = shards
    versus = check_versus(config, versus_of(config, **{"train.lr_schedule": "wsd"}), "other.yaml")
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat", "mixed", "lengths"], "flops", versus=versus,
                                         versus_shards=shards)}
    judge = plans["curriculum"]
    expected = {
        "warmup": EvalSet(warmup.val_path, 128),
        "foundation": EvalSet(foundation.val_path, 256),
        "pretrain": EvalSet(stories.val_path, 512, ((stories.val_path, 3.0), (book.val_path, 1.0))),
    }
    for plan in plans.values():
        for index, stage in enumerate(plan.stages):
            data = arm_stage_data(plan, index, judge)
            assert data.eval_sets == expected, (plan.arm, index)
            read = [data.train, *data.train_sources.values(), *data.val_sources.values(), data.val,
                    *(p for s in data.eval_sets.values() for p, _ in s.parts())]
            # Every shard it reads is keyed to the checksum of its record.
            assert set(map(str, read)) <= set(data.sha256), (plan.arm, index)
            if stage.stage.sources:
                names = [c.name for c in stage.stage.components()]
                assert list(data.train_sources) == names
                assert list(data.train_sources.values()) == [r.train_path for r in stage.shards]
            else:
                assert data.train_sources == {} and data.train == stage.shards[0].train_path
    flat = arm_stage_data(plans["flat"], 0, judge)
    assert flat.train_sources == {"pretrain.stories": stories.train_path, "pretrain.book": book.train_path}
    assert flat.val_sources == {"pretrain.stories": stories.val_path, "pretrain.book": book.val_path}
    mixed = arm_stage_data(plans["mixed"], 0, judge)
    assert list(mixed.train_sources.values()) == [r.train_path for r in shards]
    lengths = arm_stage_data(plans["lengths"], 2, judge)  # its earlier stages' val sets are mixtures too
    assert lengths.earlier_val_sources == {
        f"pretrain-{i}-b{b}": {f"pretrain-{i}-b{b}.stories": stories.val_path, f"pretrain-{i}-b{b}.book": book.val_path}
        for i, b in ((1, 128), (2, 256))}
    assert isinstance(lengths.val, Path)
