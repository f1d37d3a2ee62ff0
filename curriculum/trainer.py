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

from curriculum.batches import TrainWindows, eval_window_ids, windows_to_batch
from curriculum.checkpoints import (
    END,
    Checkpoint,
    CheckpointError,
    copy_pretrained,
    in_stage_dirs,
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
    RunMismatchError,
    append_jsonl,
    check_run_dir,
    describe_differences,
    fingerprint_hash,
    mismatch_message,
    prepare_run_dir,
    rewind_metrics,
    run_fingerprint,
)
from curriculum.schedule import StagePlan, plan_curriculum, stage_schedule
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
    """Optional callbacks, e.g. for progress bars, a workflow logger or UI artifacts."""

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
    run_dir = Path(run_dir)
    n_stages = len(curriculum.stages)
    if not 0 <= stage_index < n_stages:
        raise IndexError(f"stage_index={stage_index} is out of range: the curriculum has stages 0..{n_stages - 1}")
    stage = curriculum.stages[stage_index]
    model_cfg = resolve_model_config(curriculum, model_cfg)
    payload = run_fingerprint(curriculum, model_cfg, train_cfg)
    check_run_dir(run_dir, payload)
    plans = plan_curriculum(curriculum, train_tokens, train_cfg)
    plan = plans[stage_index]
    folder = stage_dir(run_dir, stage_index, stage.name)
    previous_end = _previous_end(run_dir, curriculum, stage_index, payload)

    finished = _finished(folder / END, data, payload, previous_end, run_dir)
    if finished is not None:
        log.info("stage %r is finished already (%s): nothing to train", stage.name, finished.checkpoint)
        if stage_index == n_stages - 1:
            write_final(run_dir, finished)
        return finished

    shards = _open_shards(curriculum, stage_index, data, plan, expect_tokenizer)
    if stage_index > 0 and previous_end is None:
        prev = curriculum.stages[stage_index - 1].name
        raise CheckpointError(
            f"stage {stage.name!r} starts from the end checkpoint of stage {prev!r}, which is missing or damaged "
            f"({stage_dir(run_dir, stage_index - 1, prev) / END}); train stage {prev!r} first (running the "
            "curriculum again retrains it), or start over with --restart"
        )
    resume = _newest_in_stage(folder, shards, payload, previous_end, run_dir)

    # Checks done; from here on, training writes.
    prepare_run_dir(run_dir, payload)
    runtime = resolve_runtime(train_cfg.device, train_cfg.dtype, train_cfg.compile)
    append_jsonl(run_dir / RUNTIME_FILE, {"stage": stage.name, "started": _now(), **runtime.to_json()})
    start_iter = resume.state["stage_iter"] if resume else 0
    rewind_metrics(run_dir, stage_index, start_iter)

    torch.manual_seed(train_cfg.seed)  # the initial weights (stage 0) come from the seed
    vocab_size = int(shards["train"].meta["vocab_size"])
    model = GPT(model_cfg, vocab_size).to(runtime.torch_device)
    optimizer = model.configure_optimizer(
        train_cfg.weight_decay, train_cfg.learning_rate, (train_cfg.beta1, train_cfg.beta2), runtime.torch_device.type
    )
    scaler = torch.amp.GradScaler(runtime.torch_device.type, enabled=runtime.dtype == "float16")
    if resume is not None:
        load_checkpoint(resume, model, optimizer)
        restore_rng(resume)
        if resume.state["scaler"]:
            scaler.load_state_dict(resume.state["scaler"])
        _warn_if_runtime_changed(resume, runtime)
        progress = dict(resume.state["progress"])
        iter_base = resume.state["iter_num"] - resume.state["stage_iter"]
        starting_from = f"resuming at iteration {start_iter:,}/{plan.total_iters:,} ({resume.path})"
    else:
        if previous_end is not None:
            load_checkpoint(previous_end, model, optimizer)
            starting_from = f"the end of stage {previous_end.state['stage']!r} ({previous_end.path})"
        else:
            starting_from = f"fresh weights (seed {train_cfg.seed})"
        # Dropout's random stream of each stage starts from the seed, wherever the previous stage ran.
        torch.manual_seed(_stage_seed(train_cfg.seed, stage_index))
        progress = {"loss_sum": 0.0, "loss_count": 0, "seconds": 0.0, "train_loss": math.nan}
        iter_base = previous_end.state["iter_num"] if previous_end else 0

    start = StageStart(
        plan=plan,
        n_stages=n_stages,
        previous_block_size=curriculum.stages[stage_index - 1].block_size if stage_index else None,
        batch_size=train_cfg.batch_size,
        grad_accum=train_cfg.grad_accum,
        schedule=stage_schedule(plans, stage_index, train_cfg).describe(),
        start_iter=start_iter,
        starting_from=starting_from,
        train_path=shards["train"].path,
    )
    print(transition_message(start, runtime), flush=True)
    if hooks.on_stage_start:
        hooks.on_stage_start(start)

    stage_run = _StageRun(
        curriculum=curriculum,
        plan=plan,
        cfg=train_cfg,
        runtime=runtime,
        run_dir=run_dir,
        folder=folder,
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        shards=shards,
        payload=payload,
        expect_tokenizer=expect_tokenizer,
        start_weights_sha256=previous_end.weights_sha256 if previous_end else None,
        card=model_card(
            model_cfg, vocab_size, shards["train"].meta.get("tokenizer"), shards["train"].meta.get("eot_token"),
            stage=stage.name, curriculum=[s.name for s in curriculum.stages],
        ),
        iter_base=iter_base,
        progress=progress,
        hooks=hooks,
    )
    result = stage_run.train(start_iter, stage_schedule(plans, stage_index, train_cfg))
    if stage_index == n_stages - 1:
        write_final(run_dir, result)
    if hooks.on_stage_end:
        hooks.on_stage_end(result)
    return result


def write_final(run_dir: str | Path, result: StageResult) -> Path:
    """Copy the last stage's weights and config.json to `<run_dir>/final/` (unless already there); returns it.

    train_stage calls this after the last stage; call it yourself only to restore a deleted final/."""
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
    folder: Path
    model: GPT
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    shards: dict[str, Shard]
    payload: dict[str, Any]
    expect_tokenizer: dict[str, Any]
    start_weights_sha256: str | None
    card: dict[str, Any]
    iter_base: int  # iterations of the run before this stage
    progress: dict[str, Any]  # loss sums since the last eval and stage seconds: saved in checkpoints
    hooks: TrainHooks

    def train(self, start_iter: int, schedule) -> StageResult:
        plan, cfg, device = self.plan, self.cfg, self.runtime.torch_device
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
        path = self.folder / END
        sha = self.checkpoint(path, "stage-end", done, windows, result=result)
        return StageResult(
            stage=plan.stage, stage_index=plan.stage_index, checkpoint=path, checkpoint_sha256=sha, **result
        )

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
        self, path: Path, kind: str, done: int, windows: TrainWindows, result: dict | None = None
    ) -> str:
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
            "progress": self.progress,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "result": result,
            "written_at": _now(),
        }
        sha = save_checkpoint(path, self.model, self.optimizer, state, self.card)
        log.info("checkpoint %s (stage %s, iteration %d)", path, plan.stage, done)
        if self.hooks.on_checkpoint:
            self.hooks.on_checkpoint(
                CheckpointInfo(path, kind, plan.stage, plan.stage_index, done, self.iter_base + done, sha)
            )
        return sha


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


def _check_checkpoint(checkpoint: Checkpoint, payload: dict[str, Any], run_dir: Path) -> None:
    """RunMismatchError if the checkpoint was trained with other settings than `payload`."""
    if checkpoint.state["fingerprint"] != fingerprint_hash(payload):
        differences = describe_differences(checkpoint.state["fingerprint_payload"], payload)
        raise RunMismatchError(mismatch_message(f"checkpoint {checkpoint.path}", differences, run_dir))


def _check_shards(checkpoint: Checkpoint, current: dict[str, str], run_dir: Path) -> None:
    """RunMismatchError if a shard the checkpoint trained on has changed since (re-prepared other data)."""
    recorded = {key: shard["sha256"] for key, shard in checkpoint.state["shards"].items()}
    changed = [
        f"{key}: {recorded[key][:12]}... -> {sha[:12]}..." for key, sha in current.items()
        if key in recorded and recorded[key] != sha
    ]
    if changed:
        raise RunMismatchError(
            f"checkpoint {checkpoint.path} was trained on other data than the shards there now (sha256 old -> new):\n"
            + "\n".join(f"  - {line}" for line in changed)
            + f"\nRestore the shards it was trained on, or start over with --restart (moves {run_dir} aside)."
        )


def _readable(path: Path, what: str) -> Checkpoint | None:
    """The checkpoint at `path`, or None with a warning if it is damaged (silently if it does not exist)."""
    if not path.exists():
        return None
    try:
        return read_checkpoint(path)
    except CheckpointError as error:
        log.warning("%s is unusable, falling back to the previous good checkpoint: %s", what, error)
        return None


def _previous_end(run_dir: Path, curriculum: Curriculum, stage_index: int, payload: dict) -> Checkpoint | None:
    if stage_index == 0:
        return None
    prev = curriculum.stages[stage_index - 1]
    checkpoint = _readable(stage_dir(run_dir, stage_index - 1, prev.name) / END, f"the end checkpoint of {prev.name!r}")
    if checkpoint is not None:
        _check_checkpoint(checkpoint, payload, run_dir)
    return checkpoint


def _descends_from(checkpoint: Checkpoint, previous_end: Checkpoint | None) -> bool:
    """Whether the checkpoint was trained from the previous stage's current end checkpoint (if known)."""
    if previous_end is None or checkpoint.state["start_weights_sha256"] == previous_end.weights_sha256:
        return True
    log.warning(
        "%s was trained from other weights than %s holds now (that stage was retrained); not resuming from it",
        checkpoint.path, previous_end.path,
    )
    return False


def _finished(
    path: Path, data: StageData, payload: dict, previous_end: Checkpoint | None, run_dir: Path
) -> StageResult | None:
    checkpoint = _readable(path, f"the stage-end checkpoint {path}")
    if checkpoint is None:
        return None
    _check_checkpoint(checkpoint, payload, run_dir)
    # A finished stage needs no data, but if its shards are there they must be the ones it was trained on.
    current = {key: read_header(p)["sha256"] for key, p in (("train", data.train), ("val", data.val)) if p.is_file()}
    _check_shards(checkpoint, current, run_dir)
    if not _descends_from(checkpoint, previous_end):
        return None
    state = checkpoint.state
    return StageResult(
        stage=state["stage"],
        stage_index=state["curriculum_stage_idx"],
        checkpoint=checkpoint.path,
        checkpoint_sha256=checkpoint.sha256,
        **state["result"],
    )


def _newest_in_stage(
    folder: Path, shards: dict[str, Shard], payload: dict, previous_end: Checkpoint | None, run_dir: Path
) -> Checkpoint | None:
    current = {key: shard.sha256 for key, shard in shards.items()}
    for stage_iter, path in reversed(in_stage_dirs(folder)):
        checkpoint = _readable(path, f"checkpoint {path}")
        if checkpoint is None:
            continue
        _check_checkpoint(checkpoint, payload, run_dir)
        _check_shards(checkpoint, current, run_dir)
        if _descends_from(checkpoint, previous_end):
            return checkpoint
    return None


def _warn_if_runtime_changed(checkpoint: Checkpoint, runtime: Runtime) -> None:
    differences = describe_differences(checkpoint.state["runtime"], runtime.to_json())
    if differences:
        log.warning(
            "resuming %s with another runtime than it was written with (%s): training continues, but the result "
            "will not be bit-identical to an uninterrupted run",
            checkpoint.path, "; ".join(differences),
        )


def _stage_seed(seed: int, stage_index: int) -> int:
    return int(np.random.SeedSequence((seed, stage_index)).generate_state(1)[0])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
