"""The `curriculum` flow: prepare every stage's data (stages side by side on the run's task runner) and train the
stages in order, each as soon as its data and the stage before it are ready.

Run it locally with `python flows/curriculum.py --type simple` (see --help), or serve it as the
deployments `curriculum/simple` and `curriculum/default` (deployments/serve.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # `python flows/curriculum.py` puts flows/ first on sys.path, where this very file would shadow
    # the `curriculum` package. Run as a script, look up packages from the project root instead.
    _flows_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _flows_dir]
    sys.path.insert(0, str(_flows_dir.parent))

    # Only as a script, and before Prefect loads its settings: a process that imports this module (serve.py, a
    # worker, tests) sets the environment of its runs itself (flows/environment.py).
    from flows.environment import set_script_environment

    set_script_environment()

import contextlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Generator, Iterable, Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from typing import Any, Literal  # noqa: E402

from prefect import flow, get_run_logger  # noqa: E402
from prefect.futures import PrefectFuture  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from curriculum.allowed_paths import check_path, confine_paths  # noqa: E402
from curriculum.config import RunConfig, load_run_config  # noqa: E402
from curriculum.node_handoff import clear_handoff, wait_for_handoff, write_handoff  # noqa: E402
from curriculum.plots import LOSS_CURVE_FILE, save_loss_curve  # noqa: E402
from curriculum.prepare import ShardsRecord  # noqa: E402
from curriculum.training.ledger import ledger_table, repetition_warnings, token_ledger, write_ledger  # noqa: E402
from curriculum.training.run_dir import (  # noqa: E402
    fingerprint_hash,
    git_commit,
    prepare_run_dir,
    read_metrics,
    run_fingerprint,
)
from curriculum.training.schedule import plan_curriculum  # noqa: E402
from curriculum.training.stop import stop_on_exit  # noqa: E402
from curriculum.training.trainer import FINAL_DIR, StageResult, resolve_model_config  # noqa: E402
from flows.run_folders import check_run_folder, hold_folder, served_run_roots, waits_for_folders  # noqa: E402
from flows.stage_prep import settle_stage, submit_stage  # noqa: E402
from tasks.caching import settle_cached, submit_cached, trusted_records  # noqa: E402
from tasks.runners import prepare_task_runner  # noqa: E402
from tasks.train import train  # noqa: E402
from tasks.ui_publish import (  # noqa: E402
    publish_data_summary,
    publish_loss_curve,
    publish_run_summary,
    publish_token_ledger,
    run_summary_markdown,
)

CurriculumType = Literal["simple", "default"]


def run_name() -> str:
    """`<preset or YAML name>-<prepare|train>-<time>`, so the UI's run list reads as the curriculum."""
    parameters = flow_run.parameters
    name = Path(parameters["config_path"]).stem if parameters.get("config_path") else parameters.get("type", "simple")
    action = "prepare" if parameters.get("prepare_only") else "train"
    return f"{name}-{action}-{time.strftime('%Y%m%d-%H%M%S')}"


@flow(name="curriculum", flow_run_name=run_name, validate_parameters=True, log_prints=True)
def curriculum(
    type: CurriculumType = "simple",
    config_path: str | None = None,
    overrides: dict[str, Any] = {},  # noqa: B006 (read only; a dict default gives the UI a JSON editor)
    resume: bool = True,
    restart: bool = False,
    prepare_only: bool = False,
    wait: bool | None = None,
) -> dict[str, Any]:
    """Curriculum pretraining: prepare each stage's data, then train the stages in order.

    Args:
        type: A preset curriculum: "simple" (2 stages) or "default" (3 stages).
        config_path: A YAML run config to use instead of the preset (path on the machine that runs the flow).
        overrides: Settings to change, as dotted keys, e.g. {"train.max_iters": 20, "stages.warmup.n_items": 1000}.
        resume: Continue from the run folder's checkpoints; False refuses to touch a folder that has some.
        restart: Start over: the old run folder is moved aside (never deleted).
        prepare_only: Fetch, tokenize and shard every stage, then stop.
        wait: When another run is writing the run or data folder, wait for it (queued on a concurrency limit
            named after the folder) instead of failing at once. Default: served runs wait, CLI runs fail.
    """
    roots = served_run_roots()
    if roots is not None and config_path is not None:
        check_path("config_path", config_path, roots)  # before the file is read
    config = load_run_config(type=type, config_path=config_path, overrides=overrides)
    if roots is not None:
        confine_paths(config, roots)
    resolve_model_config(config.curriculum, config.model)  # a block size the model cannot hold fails first
    if config.train.node_rank > 0 and not prepare_only:
        return follow_node_zero(config)
    several_nodes = config.train.nnodes > 1 and not prepare_only
    wait = waits_for_folders(wait)
    with contextlib.ExitStack() as locks:
        # One writer per folder: a second run of the same run folder stops (or queues) here, before preparing.
        if not prepare_only:
            locks.enter_context(hold_folder(config.out_dir, "run", wait=wait))
            # Leaving on an exception (Ctrl-C, SIGTERM, a cancelled run, a failed stage): training checkpoints at
            # its next step and stops before the run folder is released.
            locks.enter_context(stop_on_exit())
        restart = check_run_folder(config, resume=resume, restart=restart) if not prepare_only else restart
        if several_nodes:
            clear_handoff(config.out_dir.resolve())
        if prepare_only:
            shards = prepare_stages(config, wait=wait)
            return {"name": config.name, "shards": [s.model_dump(mode="json") for s in shards]}
        fingerprint = run_fingerprint(config.curriculum, config.model, config.train)
        run_dir = prepare_run_dir(config.out_dir.resolve(), fingerprint, restart=restart, owner=flow_run.get_id())
        # Each stage trains as soon as it and the stage before it are ready, while later stages still prepare.
        shards = []
        with contextlib.closing(prepared_stages(config, wait=wait)) as prepared:
            ready: Iterable[ShardsRecord] = _kept(prepared, shards)
            if several_nodes:  # the other machines' flows wait for every stage (curriculum/node_handoff.py)
                get_run_logger().info("train.nnodes>1: training waits until every stage is prepared, then hands "
                                      "the shard records to the other machines")
                ready = list(ready)
                write_handoff(run_dir, fingerprint_hash(fingerprint), shards)
            results = train_stages(config, ready, run_dir, ledger_in=run_dir)
        summary: dict[str, Any] = {"name": config.name, "shards": [s.model_dump(mode="json") for s in shards]}
        publish_results(config, run_dir, shards, results)
    summary["stages"] = [r.model_dump(mode="json") for r in results]
    summary["final"] = str(run_dir / FINAL_DIR)
    print(f"✓ Curriculum '{config.name}' trained; final weights: {run_dir / FINAL_DIR / 'model.safetensors'}")
    return summary


def _kept(records: Iterable[ShardsRecord], kept: list[ShardsRecord]) -> Iterator[ShardsRecord]:
    for record in records:
        kept.append(record)
        yield record


def follow_node_zero(config: RunConfig) -> dict[str, Any]:
    """train.node_rank > 0: train only. Node 0's flow prepares the data and owns the run folder (its locks,
    run.json, summaries); this one waits for node 0's shard records and joins each stage's processes. Its own
    task results stay in a folder of its own, so the nodes never write the same file."""
    run_dir = config.out_dir.resolve()
    fingerprint = fingerprint_hash(run_fingerprint(config.curriculum, config.model, config.train))
    shards = wait_for_handoff(run_dir, fingerprint, node_rank=config.train.node_rank)
    results = train_stages(config, shards, run_dir, results_in=run_dir / "nodes" / f"node-{config.train.node_rank}")
    print(f"✓ node {config.train.node_rank} of {config.train.nnodes}: every stage trained; node 0's flow run "
          "publishes the results")
    return {"name": config.name, "node_rank": config.train.node_rank,
            "shards": [s.model_dump(mode="json") for s in shards],
            "stages": [r.model_dump(mode="json") for r in results], "final": str(run_dir / FINAL_DIR)}


def prepare_stages(config: RunConfig, *, wait: bool = False) -> list[ShardsRecord]:
    """fetch -> tokenize -> shard for every stage (each source of a mixed stage as a stage of its own,
    CurriculumStage.components), each step from the cache when its input is unchanged."""
    return list(prepared_stages(config, wait=wait))


def prepared_stages(config: RunConfig, *, wait: bool = False) -> Generator[ShardsRecord, None, None]:
    """Every stage's steps submitted at once to the run's task runner (prepare.task_runner), so stages prepare
    side by side (flows/stage_prep.py); their records come back in stage order, each as soon as its stage is
    ready (a mixed stage: one per source, CurriculumStage.components). The data folder is locked until the last
    stage is prepared (with `wait`, this run queues for it: flows/run_folders.py)."""
    rows = []
    components = config.components()
    # The runner is left before the stages' threads are joined: when training or a stage fails (or the caller stops
    # early), it cancels what is still queued, and the threads waiting on it end instead of preparing every stage.
    with hold_folder(config.data_dir, "data", wait=wait), \
            ThreadPoolExecutor(len(components), thread_name_prefix="stage") as threads, \
            prepare_task_runner(config.prepare) as runner:
        records = trusted_records(config.data_dir)
        chains = [submit_stage(threads, runner, records, stage, config) for stage in components]
        for index, chain in enumerate(chains):
            record, row = settle_stage(index, chain, config)
            rows.append(row)
            yield record
        publish_data_summary(config.name, rows)


def train_stages(
    config: RunConfig, shards: Iterable[ShardsRecord], run_dir: Path, results_in: Path | None = None,
    ledger_in: Path | None = None,
) -> list[StageResult]:
    """One train task per stage, submitted as soon as its shards are ready, run after the previous stage's; the
    task results are kept in `results_in` (default: the run folder); the token ledger is written into `ledger_in`
    (node 0's flow: the run folder), reported before the stages it covers train.

    With the per-stage LR schedule a stage needs only its own and the earlier stages' shards, so it trains
    while later stages are still being prepared; the global schedule spans every stage's token count."""
    every_stage = config.train.lr_schedule != "per-stage"
    if every_stage and not isinstance(shards, list):
        get_run_logger().info(
            f"lr_schedule={config.train.lr_schedule}: training waits until every stage is prepared (the schedule "
            "spans the token counts of all stages)"
        )
        shards = list(shards)
    if every_stage and ledger_in:  # every stage's length is known: the whole ledger, before any training
        report_token_ledger(config, list(shards), ledger_in)
    records = trusted_records(results_in or run_dir)
    prepared: list[ShardsRecord] = []
    submitted: list[tuple[PrefectFuture[StageResult], dict[str, Any]]] = []
    coming = iter(shards)  # the stages' order; the next stage's shards may still be preparing
    for index, stage in enumerate(config.stages):
        prepared.extend(next(coming) for _ in stage.components())  # a mixed stage: one record per source
        if not every_stage and ledger_in:  # this stage's rows, before it trains
            report_token_ledger(config, prepared, ledger_in, upto=index)
        parameters: dict[str, Any] = {
            "stage_name": config.stages[index].name, "curriculum": config.curriculum, "stage_index": index,
            "shards": list(shards) if every_stage else list(prepared), "model": config.model,
            "train": config.train, "run_dir": run_dir, "run": config.name,
        }
        previous = submitted[-1][0] if submitted else None
        submitted.append((submit_cached(train, records, previous=previous, **parameters), parameters))
    # Run the records' source to its end: prepared_stages publishes the data summary and unlocks the data folder
    # after its last record, which the loop above takes without asking for one more.
    for extra in coming:
        names = [c.name for c in config.components()]
        raise ValueError(f"shard record of {extra.stage!r} beyond the curriculum's stages {names}")
    results: list[StageResult] = []
    ran_again = False
    for index, (future, parameters) in enumerate(submitted):
        trained = settle_cached(future, train, records, inputs_ran_again=ran_again,
                                previous=results[-1] if results else None, **parameters)
        result, ran_again = trained.record, trained.ran_again
        if trained.cached:
            print(f"[Stage {index + 1}/{len(config.stages)}] {config.stages[index].name}: finished earlier (cached), "
                  f"val loss {result.val_loss:.4f}")
        results.append(result)
    return results


def report_token_ledger(
    config: RunConfig, shards: list[ShardsRecord], run_dir: Path, upto: int | None = None
) -> None:
    """Tokens planned vs trained per stage and source: printed, saved, shown in the UI, with a warning for a stage
    that repeats its data too often. Every stage at once (upto None), or the stages so far and printed only
    stage `upto`'s rows: with the per-stage schedule a stage trains while later ones are still being prepared."""
    plans = plan_curriculum(config.curriculum, {s.stage: s.train_tokens for s in shards}, config.train, upto=upto)
    rows = token_ledger(config.curriculum, plans)
    shown = rows if upto is None else [row for row in rows if row.stage == config.stages[upto].name]
    print(ledger_table(shown), flush=True)
    for warning in repetition_warnings(shown, config.train.max_repetition):
        get_run_logger().warning(warning)
    write_ledger(run_dir, rows, config.train.max_repetition)
    publish_token_ledger(config.name, rows)


def publish_results(config: RunConfig, run_dir: Path, shards: list[ShardsRecord], results: list[StageResult]) -> None:
    """The loss curve (PNG in the run folder and in the UI) and the run summary."""
    curve = save_loss_curve(read_metrics(run_dir), run_dir / LOSS_CURVE_FILE, title=f"curriculum {config.name}")
    publish_loss_curve(config.name, curve)
    train_tokens = {s.stage: s.train_tokens for s in shards}
    stages = [
        {"stage": r.stage, "block size": stage.block_size,
         "train tokens": sum(train_tokens[c.name] for c in stage.components()), "iterations": r.iters,
         "tokens seen": r.tokens_seen, "train loss": r.train_loss, "val loss": r.val_loss,
         "forgetting": r.forgetting, "checkpoint": str(r.checkpoint)}
        for r, stage in zip(results, config.stages, strict=True)
    ]
    markdown = run_summary_markdown(config, git_commit=git_commit(), stages=stages,
                                    final_dir=run_dir / FINAL_DIR, loss_curve=curve)
    publish_run_summary(config.name, markdown)


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(curriculum))
