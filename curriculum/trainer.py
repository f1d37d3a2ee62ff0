"""Train one stage of a curriculum: plain functions, no Prefect (the flow's task wraps `train_stage`).

A stage either is finished already (its end checkpoint is intact: the result is returned, nothing trains),
or resumes from its newest intact in-stage checkpoint, or starts from the previous stage's end checkpoint
(stage 0: fresh weights from the seed). Everything that decides the numbers (weights, optimizer moments, RNG
states, data position) is in the checkpoints, so a killed run resumed ends bit-identical to an unbroken one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from curriculum import resume
from curriculum.batches import TrainWindows, eval_window_ids, windows_to_batch
from curriculum.checkpoints import (
    END,
    Checkpoint,
    CheckpointError,
    copy_pretrained,
    load_checkpoint,
    prune_in_stage,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
    stage_dir,
)
from curriculum.config import ConfigError
from curriculum.device import Runtime, resolve_runtime
from curriculum.faults import pause_point
from curriculum.run_dir import (
    METRICS_FILE,
    RUNTIME_FILE,
    append_jsonl,
    check_run_dir,
    fingerprint_hash,
    prepare_run_dir,
    read_metrics,
    restore_stage_metrics,
    rewind_metrics,
    run_fingerprint,
)
from curriculum.schedule import StagePlan, StageSchedule, plan_curriculum, stage_schedule
from curriculum.stages import Curriculum
from curriculum.train_config import TrainConfig
from data.shards import PREPARE_HINT, Shard, read_header, read_shard
from model.config import ModelConfig
from model.gpt import GPT
from model.pretrained import model_card

log = logging.getLogger(__name__)

FINAL_DIR = "final"


@dataclass(frozen=True)
class StageData:
    train: Path  # train_{stage}_{suffix}.bin
    val: Path  # val_{stage}_{suffix}.bin
    earlier_val: dict[str, Path] = field(default_factory=dict)  # earlier stage name -> its val shard

    @classmethod
    def for_stage(cls, data_dir: str | Path, curriculum: Curriculum, stage_index: int) -> StageData:
        """The shard paths of the original design's naming, `<data_dir>/{train,val}_{stage}_{suffix}.bin`."""
        data_dir = Path(data_dir)
        stages = curriculum.stages
        return cls(
            train=data_dir / f"train_{stages[stage_index].shard_name}.bin",
            val=data_dir / f"val_{stages[stage_index].shard_name}.bin",
            earlier_val={s.name: data_dir / f"val_{s.shard_name}.bin" for s in stages[:stage_index]},
        )


class StageResult(BaseModel):
    """What a finished stage leaves behind: small and JSON-able (the Prefect task's persisted result)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    stage_index: int
    checkpoint: Path  # the stage's end checkpoint folder
    checkpoint_sha256: str  # checksum of its manifest, which holds the checksum of every file
    iters: int  # optimizer steps of this stage
    tokens_seen: int  # training tokens of this stage (iters * batch_size * grad_accum * block_size)
    train_loss: float  # mean training loss since the stage's last evaluation before its end
    val_loss: float
    forgetting: dict[str, float]  # val loss on each earlier stage's val set (at that stage's block size)
    seconds: float  # training time of the stage, summed over resumed sessions

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> StageResult:
        state = checkpoint.state
        return cls(
            stage=state["stage"],
            stage_index=state["curriculum_stage_idx"],
            checkpoint=checkpoint.path,
            checkpoint_sha256=checkpoint.sha256,
            **state["result"],
        )

    def is_intact(self) -> bool:
        """The checkpoint exists and every file matches the checksums this result recorded."""
        try:
            read_checkpoint(self.checkpoint, expect_sha256=self.checkpoint_sha256)
        except CheckpointError:
            return False
        return True


@dataclass(frozen=True)
class StageStart:
    """The transition into a stage, as printed: what changes and how long the stage trains."""

    plan: StagePlan
    n_stages: int
    previous_block_size: int | None
    batch_size: int
    grad_accum: int
    schedule: str
    start_iter: int  # > 0 when resuming inside the stage
    starting_from: str  # human-readable: fresh weights / end of the previous stage / a checkpoint
    train_path: Path


@dataclass(frozen=True)
class StepInfo:
    stage: str
    stage_index: int
    stage_iter: int  # iterations of this stage done, 1..total_iters
    total_iters: int
    iter_num: int  # iterations of the whole run done
    loss: float
    lr: float
    tokens_per_s: float
    step_seconds: float
    data_seconds: float  # of step_seconds, spent building batches


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    kind: str  # "in-stage" or "stage-end"
    stage: str
    stage_index: int
    stage_iter: int
    iter_num: int
    sha256: str


@dataclass(frozen=True)
class TrainHooks:
    """Optional callbacks, e.g. for progress bars, a workflow logger or UI artifacts. None of them is called
    for a stage that was finished already (train_stage returns its result without training)."""

    on_stage_start: Callable[[StageStart], None] | None = None
    on_step: Callable[[StepInfo], None] | None = None
    on_eval: Callable[[dict[str, Any]], None] | None = None  # one metrics.jsonl row
    on_checkpoint: Callable[[CheckpointInfo], None] | None = None
    on_stage_end: Callable[[StageResult], None] | None = None


def resolve_model_config(curriculum: Curriculum, model_cfg: ModelConfig) -> ModelConfig:
    """`model_cfg` with block_size resolved; ConfigError if a stage's block size exceeds it."""
    resolved = model_cfg.with_block_size(curriculum.max_block_size)
    n = len(curriculum.stages)
    for i, stage in enumerate(curriculum.stages):
        if stage.block_size > resolved.block_size:
            raise ConfigError(
                f"stage {stage.name!r} (stage {i + 1}/{n}) has block_size={stage.block_size}, longer than the "
                f"model supports: model.block_size={resolved.block_size}. Raise it "
                f"(--set model.block_size={stage.block_size}, or leave it unset to use the curriculum's largest "
                f"block size, {curriculum.max_block_size}) or shorten the stage "
                f"(--set stages.{stage.name}.block_size={resolved.block_size})"
            )
    return resolved


def train_stage(
    curriculum: Curriculum,
    stage_index: int,
    data: StageData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: str | Path,
    *,
    train_tokens: dict[str, int],
    expect_tokenizer: dict[str, Any],
    hooks: TrainHooks | None = None,
) -> StageResult:
    """Train stage `stage_index` to its end checkpoint (see the module docstring) and return its result.

    `train_tokens` maps every stage name to its train token count (the global LR schedule spans all stages);
    `expect_tokenizer` (e.g. {"tokenizer": "r50k_base", "vocab_size": 50257}) must match every shard header.
    Every check (block sizes, settings, shards, checkpoints) runs before anything is written. After the last
    stage, `<run_dir>/final/` holds the final weights and config.json.
    """
    hooks = hooks or TrainHooks()
    run_dir = Path(run_dir).resolve()  # results name their checkpoint wherever the caller's cwd is
    n_stages = len(curriculum.stages)
    if not 0 <= stage_index < n_stages:
        raise IndexError(f"stage_index={stage_index} is out of range: the curriculum has stages 0..{n_stages - 1}")
    stage = curriculum.stages[stage_index]
    model_cfg = resolve_model_config(curriculum, model_cfg)
    payload = run_fingerprint(curriculum, model_cfg, train_cfg)
    check_run_dir(run_dir, payload)
    plans = plan_curriculum(curriculum, train_tokens, train_cfg)
    plan = plans[stage_index]
    start = resume.previous_end(run_dir, curriculum, stage_index, payload)

    finished = resume.finished_stage(
        run_dir, curriculum, stage_index, payload, {"train": data.train, "val": data.val}, start
    )
    if finished is not None:
        log.info("stage %r is finished already (%s): nothing to train", stage.name, finished.path)
        restore_stage_metrics(run_dir, stage_index, finished.state["metrics"])
        if stage_index == n_stages - 1:
            copy_pretrained(finished, run_dir / FINAL_DIR)
        return StageResult.from_checkpoint(finished)

    shards = _open_shards(curriculum, stage_index, data, plan, expect_tokenizer)
    checkpoint = resume.newest_in_stage(
        run_dir, curriculum, stage_index, payload, {key: shard.sha256 for key, shard in shards.items()}, start
    )

    # Every check is done; from here on, training writes.
    prepare_run_dir(run_dir, payload)
    runtime = resolve_runtime(train_cfg.device, train_cfg.dtype, train_cfg.compile)
    append_jsonl(run_dir / RUNTIME_FILE, {"stage": stage.name, "started": _now(), **runtime.to_json()})
    start_iter = checkpoint.state["stage_iter"] if checkpoint else 0
    rewind_metrics(run_dir, stage_index, start_iter)
    vocab_size = int(shards["train"].meta["vocab_size"])
    run = _StageRun(
        curriculum=curriculum,
        plan=plan,
        cfg=train_cfg,
        runtime=runtime,
        run_dir=run_dir,
        shards=shards,
        payload=payload,
        expect_tokenizer=expect_tokenizer,
        start_weights_sha256=start.weights_sha256 if start else None,
        card=model_card(
            model_cfg, vocab_size, shards["train"].meta.get("tokenizer"), shards["train"].meta.get("eot_token"),
            stage=stage.name, curriculum=[s.name for s in curriculum.stages],
        ),
        hooks=hooks,
    )
    starting_from = run.restore(model_cfg, vocab_size, checkpoint, start)
    schedule = stage_schedule(plans, stage_index, train_cfg)
    announce = StageStart(
        plan=plan,
        n_stages=n_stages,
        previous_block_size=curriculum.stages[stage_index - 1].block_size if stage_index else None,
        batch_size=train_cfg.batch_size,
        grad_accum=train_cfg.grad_accum,
        schedule=schedule.describe(),
        start_iter=start_iter,
        starting_from=starting_from,
        train_path=shards["train"].path,
    )
    print(transition_message(announce, runtime), flush=True)
    if hooks.on_stage_start:
        hooks.on_stage_start(announce)

    end = run.train(start_iter, schedule)
    if stage_index == n_stages - 1:
        copy_pretrained(end, run_dir / FINAL_DIR)
    result = StageResult.from_checkpoint(end)
    if hooks.on_stage_end:
        hooks.on_stage_end(result)
    return result


def write_final(run_dir: str | Path, result: StageResult) -> Path:
    """Copy a stage's weights and config.json to `<run_dir>/final/` (unless already there); returns the folder.

    train_stage does this after the last stage, also when that stage was finished already; call it yourself
    only to publish another stage's weights there."""
    checkpoint = read_checkpoint(result.checkpoint, expect_sha256=result.checkpoint_sha256)
    folder = Path(run_dir) / FINAL_DIR
    copy_pretrained(checkpoint, folder)
    return folder


def train_curriculum(
    curriculum: Curriculum,
    data_dir: str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: str | Path,
    *,
    expect_tokenizer: dict[str, Any],
    hooks: TrainHooks | None = None,
) -> list[StageResult]:
    """Every stage in order, without a workflow engine: for scripts, benchmarks and tests. Shards are read
    from `data_dir` under the original design's names; train_tokens come from the train shard headers."""
    train_tokens = {
        s.name: int(read_header(Path(data_dir) / f"train_{s.shard_name}.bin")["n_tokens"]) for s in curriculum.stages
    }
    return [
        train_stage(
            curriculum, i, StageData.for_stage(data_dir, curriculum, i), model_cfg, train_cfg, run_dir,
            train_tokens=train_tokens, expect_tokenizer=expect_tokenizer, hooks=hooks,
        )
        for i in range(len(curriculum.stages))
    ]


def transition_message(start: StageStart, runtime: Runtime) -> str:
    plan = start.plan
    block = f"{start.previous_block_size} -> {plan.block_size}" if start.previous_block_size else str(plan.block_size)
    capped = f" (capped by train.max_iters; {plan.n_epochs} epoch(s) = {plan.epoch_iters:,})"
    lines = [
        f"[Stage {plan.stage_index + 1}/{start.n_stages}] {plan.stage}",
        f"  Block size: {block}",
        f"  Epochs: {plan.n_epochs}",
        f"  Train tokens: {plan.train_tokens:,} ({start.train_path})",
        f"  Iterations per epoch: {plan.iters_per_epoch:,.1f} = {plan.windows:,} windows of {plan.block_size + 1} "
        f"tokens / {plan.seqs_per_iter} sequences per iteration",
        f"  Iterations: {plan.total_iters:,}" + (capped if plan.total_iters < plan.epoch_iters else ""),
        f"  Tokens per iteration: {plan.tokens_per_iter:,} = batch size {start.batch_size} x grad accum "
        f"{start.grad_accum} x block size {plan.block_size}",
        f"  Learning rate: {start.schedule}",
        f"  Device: {runtime.device}, {runtime.dtype}" + (", compiled" if runtime.compile else ""),
        f"  Starting from: {start.starting_from}",
    ]
    return "\n".join(lines)


@dataclass
class _StageRun:
    """The state of one stage's training session: the loop, evaluation and checkpoint writing."""

    curriculum: Curriculum
    plan: StagePlan
    cfg: TrainConfig
    runtime: Runtime
    run_dir: Path
    shards: dict[str, Shard]
    payload: dict[str, Any]
    expect_tokenizer: dict[str, Any]
    start_weights_sha256: str | None  # of the previous stage's end checkpoint: the lineage of ours
    card: dict[str, Any]  # config.json of the checkpoints
    hooks: TrainHooks
    # set by restore():
    model: GPT = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    iter_base: int = field(init=False)  # iterations of the run before this stage
    progress: dict[str, Any] = field(init=False)  # loss sums since the last eval, stage seconds: checkpointed

    @property
    def folder(self) -> Path:
        return stage_dir(self.run_dir, self.plan.stage_index, self.plan.stage)

    def restore(
        self, model_cfg: ModelConfig, vocab_size: int, checkpoint: Checkpoint | None, start: Checkpoint | None
    ) -> str:
        """Build model and optimizer and load the state training continues from; says where that is."""
        cfg, device = self.cfg, self.runtime.torch_device
        torch.manual_seed(cfg.seed)  # the initial weights of stage 0 come from the seed
        self.model = GPT(model_cfg, vocab_size).to(device)
        self.optimizer = self.model.configure_optimizer(
            cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device.type
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.runtime.dtype == "float16")
        if checkpoint is not None:
            load_checkpoint(checkpoint, self.model, self.optimizer)
            restore_rng(checkpoint)
            if checkpoint.state["scaler"]:
                self.scaler.load_state_dict(checkpoint.state["scaler"])
            resume.warn_if_runtime_changed(checkpoint, self.runtime.to_json())
            self.progress = dict(checkpoint.state["progress"])
            self.iter_base = checkpoint.state["iter_num"] - checkpoint.state["stage_iter"]
            done = checkpoint.state["stage_iter"]
            return f"resuming at iteration {done:,}/{self.plan.total_iters:,} ({checkpoint.path})"
        # Dropout's random stream of each stage starts from the seed, wherever the previous stage ran.
        torch.manual_seed(_stage_seed(cfg.seed, self.plan.stage_index))
        self.progress = {"loss_sum": 0.0, "loss_count": 0, "seconds": 0.0, "train_loss": math.nan}
        if start is None:
            self.iter_base = 0
            return f"fresh weights (seed {cfg.seed})"
        load_checkpoint(start, self.model, self.optimizer)
        self.iter_base = start.state["iter_num"]
        return f"the end of stage {start.state['stage']!r} ({start.path})"

    def train(self, start_iter: int, schedule: StageSchedule) -> Checkpoint:
        """Iterations start_iter+1 .. total_iters, evaluations, checkpoints; returns the stage-end checkpoint."""
        plan, cfg = self.plan, self.cfg
        windows = TrainWindows(
            self.shards["train"].tokens, plan.block_size, cfg.batch_size, cfg.grad_accum, cfg.seed, plan.stage_index
        )
        # torch.compile wraps the module; checkpoints read and write the plain one (self.model).
        net = torch.compile(self.model) if self.runtime.compile else self.model
        net.train()
        window_tokens, window_seconds, lr = 0, 0.0, schedule.lr(start_iter)
        for it in range(start_iter, plan.total_iters):
            t0 = time.perf_counter()
            lr = schedule.lr(it)
            loss, data_seconds = train_step(net, self.optimizer, self.scaler, windows, it, lr, cfg, self.runtime)
            seconds = time.perf_counter() - t0
            done = it + 1
            self.progress["loss_sum"] += loss
            self.progress["loss_count"] += 1
            self.progress["seconds"] += seconds
            window_tokens += plan.tokens_per_iter
            window_seconds += seconds
            if self.hooks.on_step:
                self.hooks.on_step(
                    StepInfo(
                        stage=plan.stage,
                        stage_index=plan.stage_index,
                        stage_iter=done,
                        total_iters=plan.total_iters,
                        iter_num=self.iter_base + done,
                        loss=loss,
                        lr=lr,
                        tokens_per_s=plan.tokens_per_iter / seconds,
                        step_seconds=seconds,
                        data_seconds=data_seconds,
                    )
                )
            if done == plan.total_iters:
                break  # the stage-end evaluation and checkpoint follow the loop
            if done % cfg.eval_interval == 0:
                self.evaluate(net, done, lr, window_tokens / window_seconds)
                window_tokens, window_seconds = 0, 0.0
            if done % cfg.checkpoint_interval == 0:
                self.checkpoint(self.folder / f"iter-{done:07d}", "in-stage", done, windows)
                prune_in_stage(self.folder, cfg.keep_checkpoints)
            pause_point("step", plan.stage_index, done)

        done = plan.total_iters
        tokens_per_s = window_tokens / window_seconds if window_seconds else math.nan
        row = self.evaluate(net, done, lr, tokens_per_s, forgetting=True)
        result = {
            "iters": done,
            "tokens_seen": done * plan.tokens_per_iter,
            "train_loss": row["train_loss"],
            "val_loss": row["val_loss"],
            "forgetting": row["forgetting"],
            "seconds": self.progress["seconds"],
        }
        # The stage's evaluations travel with its end checkpoint, so metrics.jsonl can be repaired from it.
        rows = [row for row in read_metrics(self.run_dir) if row["stage_index"] == plan.stage_index]
        return self.checkpoint(self.folder / END, "stage-end", done, windows, result=result, metrics=rows)

    def evaluate(self, net: torch.nn.Module, done: int, lr: float, tokens_per_s: float, forgetting: bool = False):
        plan, cfg = self.plan, self.cfg
        if self.progress["loss_count"]:
            self.progress["train_loss"] = self.progress["loss_sum"] / self.progress["loss_count"]
        self.progress["loss_sum"], self.progress["loss_count"] = 0.0, 0
        val = self.shards["val"].tokens
        row: dict[str, Any] = {
            "stage": plan.stage,
            "stage_index": plan.stage_index,
            "iter_num": self.iter_base + done,
            "stage_iter": done,
            "train_loss": self.progress["train_loss"],
            "val_loss": evaluate(net, val, plan.block_size, cfg.batch_size, cfg.eval_iters, self.runtime),
            "lr": lr,
            "tokens_per_s": tokens_per_s,
            "time": _now(),
        }
        if forgetting:
            row["stage_end"] = True
            row["forgetting"] = {
                name: evaluate(
                    net, self.shards[f"val:{name}"].tokens, self.curriculum.stage(name).block_size,
                    cfg.batch_size, cfg.eval_iters, self.runtime,
                )
                for name in (s.name for s in self.curriculum.stages[: plan.stage_index])
            }
        append_jsonl(self.run_dir / METRICS_FILE, row)
        log.info(
            "stage %s iter %d/%d: train loss %.4f, val loss %.4f, lr %.2e, %.0f tokens/s%s",
            plan.stage, done, plan.total_iters, row["train_loss"], row["val_loss"], lr, tokens_per_s,
            "".join(f", {k} val loss {v:.4f}" for k, v in row.get("forgetting", {}).items()),
        )
        if self.hooks.on_eval:
            self.hooks.on_eval(row)
        return row

    def checkpoint(
        self, path: Path, kind: str, done: int, windows: TrainWindows, result: dict | None = None,
        metrics: list[dict] | None = None,
    ) -> Checkpoint:
        # Under DDP only rank 0 will write (the others wait at a barrier): the state is the same on every rank.
        plan = self.plan
        position = windows.position(done)
        state = {
            "kind": kind,
            "stage": plan.stage,
            "curriculum_stage_idx": plan.stage_index,
            "stage_iter": done,
            "iter_num": self.iter_base + done,
            "epoch": position["epoch"],
            "data_position": position,
            "plan": plan.to_json(),
            "fingerprint": fingerprint_hash(self.payload),
            "fingerprint_payload": self.payload,
            "start_weights_sha256": self.start_weights_sha256,
            "shards": {key: _shard_record(shard) for key, shard in self.shards.items()},
            "tokenizer": self.expect_tokenizer,
            "runtime": self.runtime.to_json(),
            "progress": dict(self.progress),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "result": result,
            "metrics": metrics,
            "written_at": _now(),
        }
        checkpoint = save_checkpoint(path, self.model, self.optimizer, state, self.card)
        log.info("checkpoint %s (stage %s, iteration %d)", path, plan.stage, done)
        if self.hooks.on_checkpoint:
            self.hooks.on_checkpoint(
                CheckpointInfo(path, kind, plan.stage, plan.stage_index, done, self.iter_base + done, checkpoint.sha256)
            )
        return checkpoint


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    windows: TrainWindows,
    it: int,
    lr: float,
    cfg: TrainConfig,
    runtime: Runtime,
) -> tuple[float, float]:
    """One optimizer step over grad_accum micro-batches; returns (mean loss, seconds spent building batches)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=runtime.torch_device)
    data_seconds = 0.0
    for micro_step in range(cfg.grad_accum):
        t0 = time.perf_counter()
        x, y = windows.batch(it, micro_step, runtime.torch_device)  # (B, T), (B, T)
        data_seconds += time.perf_counter() - t0
        with runtime.autocast():
            _, loss = net(x, y)
        loss_sum += loss.detach()
        # Scaled so the accumulated gradient is the mean over micro-batches, as one large batch would give.
        scaler.scale(loss / cfg.grad_accum).backward()
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum.item() / cfg.grad_accum, data_seconds


@torch.no_grad()
def evaluate(
    net: torch.nn.Module, tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, runtime: Runtime
) -> float:
    """Mean loss over fixed, evenly spread windows: the same windows every time, no random numbers drawn."""
    ids = eval_window_ids(tokens.size, block_size, batch_size * n_batches)
    was_training = net.training
    net.eval()
    total, count = 0.0, 0
    for start in range(0, ids.size, batch_size):
        x, y = windows_to_batch(tokens, ids[start : start + batch_size], block_size, runtime.torch_device)
        with runtime.autocast():
            _, loss = net(x, y)
        total += loss.item() * y.numel()
        count += y.numel()
    net.train(was_training)
    return total / count


def _open_shards(
    curriculum: Curriculum, stage_index: int, data: StageData, plan: StagePlan, expect: dict[str, Any]
) -> dict[str, Shard]:
    """Every shard this stage reads, verified: its train and val shards and the earlier stages' val shards."""
    stage = curriculum.stages[stage_index]
    earlier = curriculum.stages[:stage_index]
    missing = [s.name for s in earlier if s.name not in data.earlier_val]
    if missing:
        raise ValueError(
            f"StageData.earlier_val has no val shard for earlier stage(s) {missing} of stage {stage.name!r}; "
            "give every earlier stage's val shard (StageData.for_stage(data_dir, curriculum, index) does)"
        )
    paths = {"train": data.train, "val": data.val} | {f"val:{s.name}": data.earlier_val[s.name] for s in earlier}
    blocks = {"train": stage.block_size, "val": stage.block_size} | {f"val:{s.name}": s.block_size for s in earlier}
    shards = {key: read_shard(path, expect=expect, hint=PREPARE_HINT) for key, path in paths.items()}
    if shards["train"].n_tokens != plan.train_tokens:
        raise ValueError(
            f"train_tokens[{stage.name!r}]={plan.train_tokens:,} but {data.train} holds {shards['train'].n_tokens:,} "
            "tokens; pass the n_tokens of each train shard's header as train_tokens"
        )
    for key, shard in shards.items():
        if shard.n_tokens < blocks[key] + 1:
            raise ValueError(
                f"{shard.path} holds {shard.n_tokens:,} tokens, fewer than one window of block_size+1="
                f"{blocks[key] + 1}; prepare more data for this stage (n_items, data.val_fraction): {PREPARE_HINT}"
            )
    return shards


def _shard_record(shard: Shard) -> dict[str, Any]:
    return {"path": str(shard.path), "sha256": shard.sha256, "n_tokens": shard.n_tokens}


def _stage_seed(seed: int, stage_index: int) -> int:
    return int(np.random.SeedSequence((seed, stage_index)).generate_state(1)[0])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
