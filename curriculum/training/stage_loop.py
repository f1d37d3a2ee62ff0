"""One stage's training session: the loop, evaluation and checkpoint writing (curriculum.training.trainer drives it)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training import distributed, resume
from curriculum.training.batches import TrainWindows, stage_windows
from curriculum.training.checkpoints import (
    END,
    Checkpoint,
    checkpoint_state,
    load_checkpoint,
    load_ema,
    prune_in_stage,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
    stage_dir,
)
from curriculum.training.config import TrainConfig
from curriculum.training.device import Runtime
from curriculum.training.ema import WeightAverage
from curriculum.training.evaluation import weighted_loss
from curriculum.training.faults import nan_loss_at, pause_point
from curriculum.training.run_dir import METRICS_FILE, append_jsonl, fingerprint_hash, read_metrics
from curriculum.training.schedule import StagePlan, StageSchedule
from curriculum.training.stop import TrainingStopped, stop_requested
from curriculum.training.types import CheckpointInfo, MetricsRow, StepInfo, TrainListener, mixture_keys
from data.errors import UserError
from data.shards import Shard
from model.config import ModelConfig
from model.gpt import GPT

log = logging.getLogger(__name__)

# Runs trained side by side in threads of one process (flows/compare.py) share torch's default generator.
# (With dropout > 0 their training steps draw from it too, so such runs are not reproducible side by side.)
_RNG_LOCK = threading.Lock()


class NonFiniteLossError(UserError, FloatingPointError):
    """Training produced a NaN or infinite loss (or weights); stopped before it reached the weights or a checkpoint."""


@dataclass
class StageRun:
    """The state of one stage's training session: the loop, evaluation and checkpoint writing."""

    curriculum: Curriculum
    plan: StagePlan
    cfg: TrainConfig
    runtime: Runtime
    run_dir: Path
    shards: dict[str, Shard]
    fingerprint: dict[str, Any]  # run_fingerprint of the curriculum and settings
    expect_tokenizer: dict[str, Any]
    start_weights_sha256: str | None  # of the previous stage's end checkpoint: the lineage of ours
    card: dict[str, Any]  # config.json of the checkpoints
    listener: TrainListener
    eval_blocks: dict[str, int] = field(default_factory=dict)  # extra eval sets (shards "eval:<name>") -> block size
    # A mixed extra eval set (shards "eval:<name>@<i>") -> its sources' weights
    eval_mixtures: dict[str, list[float]] = field(default_factory=dict)
    # set by restore():
    model: GPT = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    ema: WeightAverage | None = field(init=False)  # with train.ema: the average of the weights
    iter_base: int = field(init=False)  # iterations of the run before this stage
    progress: dict[str, Any] = field(init=False)  # loss sums since the last eval, stage seconds: checkpointed
    last_good: Path | None = field(init=False)  # the newest checkpoint of finite weights this session knows

    @property
    def folder(self) -> Path:
        return stage_dir(self.run_dir, self.plan.stage_index, self.plan.stage)

    def restore(
        self, model_cfg: ModelConfig, vocab_size: int, checkpoint: Checkpoint | None, start: Checkpoint | None
    ) -> str:
        """Build model and optimizer and load the state training continues from; says where that is."""
        # Each step sets or draws torch's process-wide generator (the seeded initial weights, a checkpoint's RNG
        # states, the stage's dropout seed): a run in another thread must not do so in between.
        with _RNG_LOCK:
            return self._restore(model_cfg, vocab_size, checkpoint, start)

    def _restore(
        self, model_cfg: ModelConfig, vocab_size: int, checkpoint: Checkpoint | None, start: Checkpoint | None
    ) -> str:
        cfg, device = self.cfg, self.runtime.torch_device
        torch.manual_seed(cfg.seed)  # the initial weights of stage 0 come from the seed
        self.model = GPT(model_cfg, vocab_size).to(device)
        self.optimizer = self.model.configure_optimizer(
            cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device.type
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.runtime.dtype == "float16")
        self.last_good = checkpoint.path if checkpoint is not None else start.path if start is not None else None
        if checkpoint is not None:
            load_checkpoint(checkpoint, self.model, self.optimizer)
            restore_rng(checkpoint)
            if checkpoint.state["scaler"]:
                self.scaler.load_state_dict(checkpoint.state["scaler"])
            resume.warn_if_runtime_changed(checkpoint, self.runtime.to_json())
            self.ema = self._average(checkpoint)
            self.progress = dict(checkpoint.state["progress"])
            self.iter_base = checkpoint.state["iter_num"] - checkpoint.state["stage_iter"]
            done = checkpoint.state["stage_iter"]
            return f"resuming at iteration {done:,}/{self.plan.total_iters:,} ({checkpoint.path})"
        # Dropout's random stream of each stage starts from the seed, wherever the previous stage ran.
        torch.manual_seed(_stage_seed(cfg.seed, self.plan.stage_index))
        self.progress = {"loss_sum": 0.0, "loss_count": 0, "seconds": 0.0, "train_loss": math.nan}
        if start is None:
            self.ema = self._average(None)  # starts at the initial weights
            self.iter_base = 0
            return f"fresh weights (seed {cfg.seed})"
        load_checkpoint(start, self.model, self.optimizer)
        self.ema = self._average(start)  # goes on from the previous stage's end
        self.iter_base = start.state["iter_num"]
        return f"the end of stage {start.state['stage']!r} ({start.path})"

    def _average(self, checkpoint: Checkpoint | None) -> WeightAverage | None:
        """With train.ema: the average stored in `checkpoint`, or (None) one that starts at the model's weights."""
        if self.cfg.ema is None:
            return None
        start = load_ema(checkpoint, self.model) if checkpoint is not None else None
        return WeightAverage(self.model, self.cfg.ema, start)

    def train(self, start_iter: int, schedule: StageSchedule) -> Checkpoint:
        """Iterations start_iter+1 .. total_iters, evaluations, checkpoints; returns the stage-end checkpoint."""
        plan, cfg = self.plan, self.cfg
        rank, world_size = distributed.world()
        stage = self.curriculum.stages[plan.stage_index]
        windows = stage_windows([self.shards[key].tokens for key in shard_keys(stage, "train")],
                                stage.weights if stage.sources else None, plan.block_size, plan.batch_size,
                                cfg.grad_accum, cfg.seed, plan.stage_index, rank=rank, world_size=world_size)
        # `net` evaluates (each rank its share of the batches: no DDP collectives in the forward pass); `trained`
        # takes the training steps (through DDP with several processes). Checkpoints use the plain self.model.
        net, trained = distributed.wrap_for_training(self.model, self.runtime.torch_device,
                                                     compile=self.runtime.compile)
        window_tokens, window_seconds, lr = 0, 0.0, schedule.lr(start_iter)
        for it in range(start_iter, plan.total_iters):
            t0 = time.perf_counter()
            lr = schedule.lr(it)
            try:
                if world_size > 1:  # each rank's dropout stream, a function of where it is (see step_seed)
                    torch.manual_seed(distributed.step_seed(cfg.seed, plan.stage_index, it, rank))
                loss, data_seconds = train_step(
                    trained, self.optimizer, self.scaler, windows, it, lr, cfg, self.runtime,
                    poison=nan_loss_at(plan.stage_index, it + 1),
                )
            except FloatingPointError as error:
                raise NonFiniteLossError(self.non_finite_message(it + 1, str(error))) from None
            if self.ema is not None:
                self.ema.update()
            seconds = time.perf_counter() - t0
            done = it + 1
            self.progress["loss_sum"] += loss
            self.progress["loss_count"] += 1
            self.progress["seconds"] += seconds
            window_tokens += plan.tokens_per_iter
            window_seconds += seconds
            self.listener.on_step(
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
            reason = stop_requested() if world_size == 1 else None  # ranks: their launcher stops them (launch.py)
            if done % cfg.checkpoint_interval == 0 or reason:
                saved = self.checkpoint(self.folder / f"iter-{done:07d}", "in-stage", done, windows)
                if distributed.is_writer():
                    prune_in_stage(self.folder, cfg.keep_checkpoints)
                if reason:
                    raise TrainingStopped(
                        f"stage {plan.stage!r} stopped at iteration {done:,} of {plan.total_iters:,} ({reason}); "
                        f"its checkpoint is {saved.path}: run the same command again to resume from there"
                    )
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
        rows = ([row for row in read_metrics(self.run_dir) if row["stage_index"] == plan.stage_index]
                if distributed.is_writer() else [])
        return self.checkpoint(self.folder / END, "stage-end", done, windows, result=result, metrics=rows)

    def evaluate(
        self, net: torch.nn.Module, done: int, lr: float, tokens_per_s: float, forgetting: bool = False
    ) -> MetricsRow:
        plan = self.plan
        if self.progress["loss_count"]:
            self.progress["train_loss"] = self.progress["loss_sum"] / self.progress["loss_count"]
        self.progress["loss_sum"], self.progress["loss_count"] = 0.0, 0
        row: MetricsRow = {
            "stage": plan.stage,
            "stage_index": plan.stage_index,
            "iter_num": self.iter_base + done,
            "stage_iter": done,
            "train_loss": self.progress["train_loss"],
            "val_loss": self.val_loss(net, self.curriculum.stages[plan.stage_index], "val"),
            "lr": lr,
            "tokens_per_s": tokens_per_s,
            "time": now(),
        }
        if forgetting:
            row["stage_end"] = True
            row["forgetting"] = self.forgetting(net)
        if self.eval_blocks:
            row["evals"] = self.evals(net)
        if self.ema is not None:
            # The same windows through the same module, with the average in place of the weights.
            with self.ema.swapped_in():
                row["val_loss_ema"] = self.val_loss(net, self.curriculum.stages[plan.stage_index], "val")
                if forgetting:
                    row["forgetting_ema"] = self.forgetting(net)
                if self.eval_blocks:
                    row["evals_ema"] = self.evals(net)
        if not distributed.is_writer():
            return row
        append_jsonl(self.run_dir / METRICS_FILE, row)
        log.info(
            "stage %s iter %d/%d: train loss %.4f, val loss %.4f%s, lr %.2e, %.0f tokens/s%s",
            plan.stage, done, plan.total_iters, row["train_loss"], row["val_loss"],
            f", EMA val loss {row['val_loss_ema']:.4f}" if "val_loss_ema" in row else "", lr, tokens_per_s,
            "".join(f", {k} val loss {v:.4f}" for k, v in row.get("forgetting", {}).items()),
        )
        self.listener.on_eval(row)
        return row

    def forgetting(self, net: torch.nn.Module) -> dict[str, float]:
        """Val loss on each earlier stage's val set."""
        return {s.name: self.val_loss(net, s, f"val:{s.name}") for s in self.curriculum.stages[: self.plan.stage_index]}

    def evals(self, net: torch.nn.Module) -> dict[str, float]:
        """Loss on each extra eval set."""
        return {name: self.eval_set_loss(net, name, block) for name, block in self.eval_blocks.items()}

    def val_loss(self, net: torch.nn.Module, stage: CurriculumStage, key: str) -> float:
        """Loss on a stage's val set (shard `key`); a mixed stage's is the weighted mean over its sources' val
        sets, so the mixture's val loss weighs sources as training does."""
        return weighted_loss(net, [self.shards[k].tokens for k in shard_keys(stage, key)],
                             stage.weights if stage.sources else None, stage.block_size, self.cfg, self.runtime)

    def eval_set_loss(self, net: torch.nn.Module, name: str, block_size: int) -> float:
        """Loss on an extra eval set; a mixed one's is the weighted mean over its sources, as val_loss weighs a
        mixed stage's, so a comparison's target is the same number in every arm."""
        weights = self.eval_mixtures.get(name) or None
        keys = [f"eval:{name}@{i}" for i in range(len(weights))] if weights else [f"eval:{name}"]
        return weighted_loss(net, [self.shards[k].tokens for k in keys], weights, block_size, self.cfg, self.runtime)

    def checkpoint(
        self, path: Path, kind: str, done: int, windows: TrainWindows, result: dict | None = None,
        metrics: list[dict] | None = None,
    ) -> Checkpoint:
        plan = self.plan
        # Cheap next to writing them: a checkpoint never holds NaN or infinite weights (resume would trust them).
        bad = [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if self.ema is not None:
            bad += [f"{name} (average)" for name, p in self.ema.state().items() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(self.non_finite_message(done, f"weights {', '.join(bad[:3])} are not finite"))
        if not distributed.is_writer():  # rank 0 writes; the others go on once it is in place
            distributed.barrier()
            return read_checkpoint(path)
        state = checkpoint_state(
            kind=kind, stage=plan.stage, stage_index=plan.stage_index, stage_iter=done,
            iter_num=self.iter_base + done, position=windows.position(done), plan=plan.to_json(),
            fingerprint=self.fingerprint, fingerprint_sha256=fingerprint_hash(self.fingerprint),
            start_weights_sha256=self.start_weights_sha256, shards=self.shards, tokenizer=self.expect_tokenizer,
            runtime=self.runtime.to_json(), progress=self.progress,
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None, result=result, metrics=metrics,
            written_at=now(),
        )
        try:
            checkpoint = save_checkpoint(path, self.model, self.optimizer, state, self.card,
                                         ema=self.ema.state() if self.ema is not None else None)
        finally:
            # Released even when the write fails: the other ranks then fail at their next collective (torchrun
            # stops them all) instead of waiting here for a checkpoint that will not come.
            distributed.barrier()
        self.last_good = path
        log.info("checkpoint %s (stage %s, iteration %d)", path, plan.stage, done)
        self.listener.on_checkpoint(
            CheckpointInfo(path, kind, plan.stage, plan.stage_index, done, self.iter_base + done, checkpoint.sha256)
        )
        return checkpoint

    def non_finite_message(self, done: int, what: str) -> str:
        cfg = self.cfg
        last = (f"the last good checkpoint is {self.last_good}" if self.last_good is not None
                else "no checkpoint was written yet (the stage started from fresh weights)")
        return (
            f"stage {self.plan.stage!r} (stage {self.plan.stage_index + 1}/{len(self.curriculum.stages)}), iteration "
            f"{done:,}/{self.plan.total_iters:,}: {what}; stopped before it reached the weights or a checkpoint, "
            f"{last}. Lower train.learning_rate (now {cfg.learning_rate:g}), set train.grad_clip (now "
            f"{cfg.grad_clip:g}), or train in float32/bfloat16 (train.dtype, now {self.runtime.dtype}); with other "
            "settings, start over with --restart. Running again unchanged resumes from that checkpoint"
        )


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    windows: TrainWindows,
    it: int,
    lr: float,
    cfg: TrainConfig,
    runtime: Runtime,
    poison: bool = False,
) -> tuple[float, float]:
    """One optimizer step over grad_accum micro-batches; returns (mean loss, seconds spent building batches).

    FloatingPointError, with the optimizer untouched, if the loss is NaN or infinite: its gradients would make
    every weight NaN. `poison` (tests only, curriculum/training/faults.py) makes this step's loss NaN."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=runtime.torch_device)
    data_seconds = 0.0
    for micro_step in range(cfg.grad_accum):
        t0 = time.perf_counter()
        x, y = windows.batch(it, micro_step, runtime.torch_device)  # (B, T), (B, T)
        data_seconds += time.perf_counter() - t0
        # DDP averages gradients over ranks once per optimizer step: on the last micro-batch only.
        last = micro_step == cfg.grad_accum - 1
        sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            with runtime.autocast():
                _, loss = net(x, y, return_logits=False)
            if poison:
                loss = loss * math.nan
            loss_sum += loss.detach()
            # Scaled so the accumulated gradient is the mean over micro-batches, as one large batch would give.
            scaler.scale(loss / cfg.grad_accum).backward()
    # Every rank sees the same mean loss, so all of them stop together on a non-finite one.
    mean_loss = distributed.mean_over_ranks(loss_sum).item() / cfg.grad_accum
    if not math.isfinite(mean_loss):
        optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(f"the training loss is {mean_loss}")
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return mean_loss, data_seconds


def shard_keys(stage: CurriculumStage, prefix: str) -> list[str]:
    """The trainer's shard keys of a stage's `prefix` set (train, val, val:<stage>): one, or one per source."""
    return list(mixture_keys(stage, prefix).values()) if stage.sources else [prefix]


def _stage_seed(seed: int, stage_index: int) -> int:
    return int(np.random.SeedSequence((seed, stage_index)).generate_state(1)[0])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
