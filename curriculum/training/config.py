"""Training settings (the `train:` section of a run config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

# Experiment trackers every metrics row also goes to (train.loggers; curriculum/training/trackers.py).
LOGGERS = ("tensorboard", "mlflow")

# Fields that change where and how often things are written or measured, never the trained weights:
# a run may be resumed with other values of these. Every other field is part of the run's fingerprint.
BOOKKEEPING_FIELDS = frozenset(
    {
        "out_dir", "eval_interval", "eval_iters", "checkpoint_interval", "keep_checkpoints", "device",
        # How many processes train, and where: the data order is global, so any world size continues a run.
        "nproc", "nnodes", "node_rank", "rdzv_endpoint", "threads", "dist_timeout_s",
        "max_repetition",  # only warns
        # Where metrics rows are also sent: experiment trackers (curriculum/training/trackers.py).
        "loggers", "mlflow_tracking_uri", "mlflow_experiment", "mlflow_parent_run_id",
    }
)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    out_dir: Path | None = Field(None, description="Run folder; default: out/runs/<curriculum name>.")
    batch_size: PositiveInt = Field(
        8, description="Sequences per micro-batch, over all training processes together (each takes its share)."
    )
    grad_accum: PositiveInt = Field(1, description="Micro-batches per optimizer step.")
    tokens_per_step: PositiveInt | None = Field(
        None,
        description="Tokens per optimizer step at every stage: each stage's batch_size (sequences) becomes "
        "tokens_per_step / (block_size * grad_accum), which must be whole. None: train.batch_size everywhere.",
    )
    learning_rate: PositiveFloat = Field(6e-4, description="Peak learning rate.")
    min_lr: float = Field(6e-5, ge=0, description="Learning rate at the end of the cosine decay.")
    warmup_iters: NonNegativeInt = Field(20, description="Linear warmup iterations of each schedule.")
    lr_schedule: Literal["per-stage", "global", "wsd", "constant"] = Field(
        "per-stage",
        description="'per-stage': warmup and cosine restart at each stage, in its iterations; 'global': one warmup + "
        "cosine over the whole curriculum; 'wsd': warmup, stable at learning_rate, then a linear decay to min_lr over "
        "the last decay_fraction of the whole curriculum; 'constant': warmup, then learning_rate to the end. The "
        "three that span the curriculum are placed by tokens trained, not iterations.",
    )
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="'wsd' schedule: the share of the curriculum's tokens spent decaying."
    )
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay of matrices (not biases or norms).")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, gt=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this; 0 disables.")
    ema: float | None = Field(
        None, gt=0, lt=1,
        description="Decay of an exponential moving average of the weights, updated after every optimizer step "
        "and evaluated beside them (val_loss_ema); it starts at the initial weights, so pick a horizon "
        "1/(1-ema) well below the run's iterations (e.g. 0.99 or 0.999). None: no average.",
    )
    max_iters: PositiveInt | None = Field(
        None, description="Cap on optimizer steps per stage (smoke runs); None trains every epoch."
    )
    max_repetition: PositiveFloat = Field(
        4.0, description="Warn before training when a stage repeats its data more than this many times."
    )
    eval_interval: PositiveInt = Field(100, description="Evaluate every N iterations (and at stage end).")
    eval_iters: PositiveInt = Field(10, description="Batches per evaluation.")
    checkpoint_interval: PositiveInt = Field(100, description="Checkpoint every N iterations (and at stage end).")
    keep_checkpoints: PositiveInt = Field(2, description="In-stage checkpoints kept per stage besides stage-end ones.")
    seed: NonNegativeInt = Field(1337, description="Seed of weights, data order and dropout.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: CUDA, then MPS, then CPU.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Autocast precision; auto: bfloat16 on CUDA GPUs that support it (else float16), on CPUs with "
        "native bf16 instructions (AVX512-BF16, AMX, Arm BF16), else float32.",
    )
    compile: bool = Field(False, description="torch.compile the model.")
    nproc: PositiveInt | Literal["auto"] = Field(
        1,
        description="Training processes on this machine (DDP; one per GPU on CUDA, gloo on CPU); "
        "auto: the number of GPUs, else 1. batch_size stays the global batch: it must divide by nproc * nnodes.",
    )
    nnodes: PositiveInt = Field(1, description="Machines training together (torchrun's --nnodes).")
    node_rank: NonNegativeInt = Field(0, description="This machine's rank among nnodes (torchrun's --node-rank).")
    rdzv_endpoint: str | None = Field(
        None, description="host:port where the nodes meet (c10d rendezvous); needed when nnodes > 1."
    )
    dist_timeout_s: PositiveInt = Field(
        600, description="With several processes: seconds a rank waits for the others in a collective (a barrier, "
        "gradient sync) before the stage fails; covers a rank lost on another machine."
    )
    threads: PositiveInt | None = Field(
        None, description="CPU threads per training process; default: torch's own with one process, "
        "cores / nproc with several."
    )

    loggers: list[Literal["tensorboard", "mlflow"]] = Field(
        [],
        description="Experiment trackers that every metrics row also goes to, step = the run's iteration "
        "(iter_num): 'tensorboard' (event files in <run folder>/tensorboard) and 'mlflow' (one MLflow run per run "
        "folder, continued on resume). A tracker that fails or hangs is warned about once; training goes on. "
        "Needs the trackers extra (pip install -e '.[trackers]').",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking server or store, e.g. http://127.0.0.1:5000; default: the "
        "MLFLOW_TRACKING_URI environment variable, else MLflow's own default (sqlite:///mlflow.db in the working "
        "folder)."
    )
    mlflow_experiment: str | None = Field(
        None, description="MLflow experiment of the run; default: MLFLOW_EXPERIMENT_NAME, else 'curriculum'."
    )
    mlflow_parent_run_id: str | None = Field(
        None, description="An MLflow run that this run's MLflow run is a child of (compare sets it to the "
        "comparison's run, so each arm is nested under it)."
    )

    @field_validator("loggers", mode="before")
    @classmethod
    def _known_loggers(cls, value: Any) -> Any:
        # `--set train.loggers=tensorboard,mlflow` gives one string: the names, comma-separated.
        names = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)):
            return value  # pydantic names what a list was expected to be
        for name in names:
            if name not in LOGGERS:
                raise ValueError(
                    f"unknown logger {name!r} in train.loggers; allowed: {', '.join(LOGGERS)} "
                    "(e.g. --set train.loggers=[tensorboard,mlflow]; an empty list logs to none)"
                )
        return list(dict.fromkeys(names))  # each tracker once

    @model_validator(mode="after")
    def _processes_fit(self) -> TrainConfig:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(
                f"train.nnodes={self.nnodes} needs train.rdzv_endpoint=host:port, where the nodes meet: the same on "
                "every node, e.g. the first node's address and a free port (--set train.rdzv_endpoint=node1:29400)"
            )
        if self.node_rank >= self.nnodes:
            raise ValueError(f"train.node_rank={self.node_rank} must be below train.nnodes={self.nnodes}")
        if self.nproc != "auto":  # auto is checked where it is resolved, when training starts
            check_batch_split(self.batch_size, self.nproc, self.nnodes)
        return self

    def resolved_nproc(self) -> int:
        """nproc with auto resolved on this machine."""
        if self.nproc != "auto":
            return self.nproc
        import torch  # only here: the rest of the config stays importable without torch

        return max(torch.cuda.device_count(), 1)

    def distributed(self) -> bool:
        return self.resolved_nproc() > 1 or self.nnodes > 1


def check_batch_split(batch_size: int, nproc: int, nnodes: int) -> None:
    """ValueError unless the global batch splits evenly over nproc * nnodes processes."""
    if batch_size % (nproc * nnodes):
        raise ValueError(
            f"train.batch_size={batch_size} does not divide by {nproc * nnodes} training processes (nproc {nproc} x "
            f"nnodes {nnodes}): batch_size is the global batch, split evenly over the processes; set it to a "
            f"multiple of {nproc * nnodes} (--set train.batch_size=...) or use fewer processes"
        )
