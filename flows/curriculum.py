"""The `curriculum` flow: prepare every stage's data, then train the stages in order.

Run it locally with `python flows/curriculum.py --type simple` (see --help), or serve it as the
deployments `curriculum/simple` and `curriculum/default` (deployments/serve.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # `python flows/curriculum.py` puts flows/ first on sys.path, where this very file would shadow
    # the `curriculum` package. Run as a script, look up packages from the project root instead.
    _flows_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _flows_dir]
    sys.path.insert(0, str(_flows_dir.parent))

# Our packages log with the standard library; this lets Prefect forward them to the run's logs in the UI.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "curriculum,data,model")

from typing import Any, Literal  # noqa: E402

from prefect import flow, get_run_logger  # noqa: E402

from curriculum.config import RunConfig, load_run_config  # noqa: E402
from curriculum.prepare import ShardsRecord  # noqa: E402
from curriculum.stages import CurriculumStage  # noqa: E402
from curriculum.summary import stage_data_summary, stage_header  # noqa: E402
from tasks.cached import run_cached  # noqa: E402
from curriculum.run_dir import prepare_run_dir, run_fingerprint  # noqa: E402
from curriculum.trainer import StageResult, resolve_model_config  # noqa: E402
from tasks.prepare import fetch, shard, tokenize  # noqa: E402
from tasks.train import train  # noqa: E402

CurriculumType = Literal["simple", "default"]


def prepare_stage(index: int, config: RunConfig) -> ShardsRecord:
    """fetch -> tokenize -> shard for one stage, each step from the cache when its input is unchanged."""
    stage: CurriculumStage = config.stages[index]
    data_dir = config.data.data_dir
    print(stage_header(index, len(config.stages), stage), flush=True)
    documents, fetched = run_cached(fetch, data_dir, stage=stage, data=config.data, scrape=config.scrape)
    tokens, tokenized = run_cached(tokenize, data_dir, documents=documents, data=config.data)
    shards, sharded = run_cached(shard, data_dir, tokens=tokens, stage=stage, data=config.data)
    print(stage_data_summary(documents, shards, {"fetch": fetched, "tokenize": tokenized, "shard": sharded}), flush=True)
    get_run_logger().info(
        "stage %r data: %s documents, %s train / %s val tokens, skipped %s",
        stage.name, documents.n_documents, shards.train_tokens, shards.val_tokens, documents.skipped or "none",
    )
    return shards


@flow(name="curriculum", validate_parameters=True)
def curriculum(
    type: CurriculumType = "simple",
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = True,
    restart: bool = False,
    prepare_only: bool = False,
) -> dict[str, Any]:
    """Curriculum pretraining: `type` picks a preset, `config_path` a YAML curriculum instead;
    `overrides` maps dotted keys (e.g. {"train.max_iters": 20}) to values."""
    config = load_run_config(type=type, config_path=config_path, overrides=overrides or {})
    resolve_model_config(config.curriculum, config.model)  # a block size the model cannot hold fails first
    shards = [prepare_stage(i, config) for i in range(len(config.stages))]
    summary: dict[str, Any] = {"name": config.name, "shards": [s.model_dump(mode="json") for s in shards]}
    if prepare_only:
        return summary
    run_dir = config.out_dir.resolve()
    if not resume and not restart and (run_dir / "checkpoints").is_dir():
        raise FileExistsError(
            f"run folder {run_dir} holds checkpoints of an earlier run and resume=False; resume it (the default), "
            "or start over with --restart (the old folder is moved aside), or choose another --out-dir"
        )
    prepare_run_dir(run_dir, run_fingerprint(config.curriculum, config.model, config.train), restart=restart)
    results = train_stages(config, shards, run_dir)
    summary["stages"] = [r.model_dump(mode="json") for r in results]
    summary["final"] = str(run_dir / "final")
    print(f"✓ Curriculum '{config.name}' trained; final weights: {run_dir / 'final' / 'model.safetensors'}")
    return summary


def train_stages(config: RunConfig, shards: list[ShardsRecord], run_dir: Path) -> list[StageResult]:
    """One train task per stage, each after its shards and the previous stage's result."""
    results: list[StageResult] = []
    for index, stage in enumerate(config.stages):
        result, cached = run_cached(
            train, run_dir, stage_name=stage.name, curriculum=config.curriculum, stage_index=index,
            shards=shards, model=config.model, train=config.train, run_dir=run_dir,
            previous=results[-1] if results else None,
        )
        if cached:
            print(f"[Stage {index + 1}/{len(config.stages)}] {stage.name}: finished earlier (cached), "
                  f"val loss {result.val_loss:.4f}")
        results.append(result)
    return results


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(curriculum))
