"""A progress bar per stage in the terminal, fed by the trainer's events."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from curriculum.training.types import MetricsRow, StageResult, StageStart, StepInfo, TrainListener


class TerminalProgress(TrainListener):
    """One tqdm bar per stage: iteration of total, loss, learning rate, tokens/s."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def on_stage_start(self, start: StageStart) -> None:
        self.close()
        plan = start.plan
        self.bar = tqdm(
            total=plan.total_iters, initial=start.start_iter, desc=f"train {plan.stage}", unit="it",
            file=self.stream, dynamic_ncols=True, mininterval=0.5,
        )

    def on_step(self, step: StepInfo) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix(loss=f"{step.loss:.3f}", lr=f"{step.lr:.1e}", tok_s=f"{step.tokens_per_s:,.0f}",
                             refresh=False)
        self.bar.update(step.stage_iter - self.bar.n)

    def on_eval(self, row: MetricsRow) -> None:
        if self.bar is not None:
            self.bar.write(
                f"  {row['stage']} iter {row['stage_iter']}: train loss {row['train_loss']:.4f}, "
                f"val loss {row['val_loss']:.4f}", file=self.stream,
            )

    def on_stage_end(self, result: StageResult) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
