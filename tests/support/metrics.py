"""metrics.jsonl rows as the trainer writes them, for tests of what reads them (plots, UI tables)."""

from __future__ import annotations

from typing import Any


def eval_rows(stages: dict[str, int], evals_per_stage: int = 4) -> list[dict[str, Any]]:
    """Evaluations of each stage in `stages` (name -> iterations), then a stage-end row with forgetting."""
    rows, iter_num = [], 0
    for index, (stage, iters) in enumerate(stages.items()):
        for k in range(1, evals_per_stage + 1):
            stage_iter = iters * k // evals_per_stage
            end = k == evals_per_stage
            loss = 6.0 / (1 + (iter_num + stage_iter) / 50) + 0.4 * index
            row = {"stage": stage, "stage_index": index, "iter_num": iter_num + stage_iter, "stage_iter": stage_iter,
                   "train_loss": round(loss - 0.05, 4), "val_loss": round(loss, 4), "lr": 6e-4 * (1 - k / 10),
                   "tokens_per_s": 25_000.0 + k, "time": "2026-01-01T00:00:00"}
            if end:
                row["stage_end"] = True
                row["forgetting"] = {earlier: round(loss + 0.3 * (index - i), 4)
                                     for i, earlier in enumerate(list(stages)[:index])}
            rows.append(row)
        iter_num += iters
    return rows
