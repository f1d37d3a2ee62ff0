"""The token ledger: per stage and source, the tokens its length asks for (n_epochs or a `tokens` budget) next to
the tokens its iterations train and how often that repeats the source's data, known before any training.

Printed before the first stage trains, saved as `<run_dir>/token_ledger.json` and shown as a UI table. A source
repeated more than train.max_repetition times is a warning with the numbers, before anything trains.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from curriculum.stages import Curriculum
from curriculum.training.schedule import StagePlan
from data.atomic import atomic_write_text

LEDGER_FILE = "token_ledger.json"


@dataclass(frozen=True)
class LedgerRow:
    stage: str
    source: str  # the stage's dataset_key; in a mixture `<component name> (<dataset_key>)`
    length: str  # as configured: "2 epoch(s)" or "a budget of 1,000 tokens"
    tokens_planned: int  # n_epochs x the source's train windows x block_size, or the budget
    tokens_trained: int  # iterations x tokens per iteration: what the stage will train (max_iters included)
    source_tokens: int  # tokens of the source's train shard that windows cover (one epoch's targets)
    epochs_realised: float  # tokens_trained / source_tokens: above 1 the data repeats, below 1 it is cut
    capped: bool  # max_iters cut the stage short of its length

    def to_json(self) -> dict:
        return asdict(self)


def token_ledger(curriculum: Curriculum, plans: list[StagePlan]) -> list[LedgerRow]:
    """One row per stage planned (every stage, or the first ones), or per source of a mixed stage: a source's
    share of the stage's planned and trained tokens is its weight's share (as its windows are drawn, up to the
    rounding batches.MixedWindows describes)."""
    rows = []
    for plan in plans:
        stage = curriculum.stages[plan.stage_index]
        if plan.tokens_budget is not None:
            length, planned = f"a budget of {plan.tokens_budget:,} tokens", plan.tokens_budget
        else:
            assert plan.n_epochs is not None  # a stage has one of the two
            length, planned = f"{plan.n_epochs} epoch(s)", plan.n_epochs * plan.windows * plan.block_size
        total_weight = sum(stage.weights)
        for component, weight in zip(stage.components(), stage.weights, strict=True):
            share = weight / total_weight
            windows = plan.source_windows.get(component.name, plan.windows)
            source_tokens = windows * plan.block_size
            trained = round(plan.tokens_trained * share)
            rows.append(LedgerRow(
                stage=stage.name,
                source=component.data_key if not stage.sources else f"{component.name} ({component.data_key})",
                length=length if not stage.sources else f"{length}, weight {weight:g}",
                tokens_planned=round(planned * share), tokens_trained=trained, source_tokens=source_tokens,
                epochs_realised=round(trained / source_tokens, 4), capped=plan.total_iters < plan.epoch_iters,
            ))
    return rows


def repetition_warnings(rows: list[LedgerRow], max_repetition: float) -> list[str]:
    return [
        f"stage {row.stage!r} repeats source {row.source!r} {row.epochs_realised:.2f} times ({row.tokens_trained:,} "
        f"tokens trained from {row.source_tokens:,} train tokens), more than train.max_repetition="
        f"{max_repetition:g}: repeated data adds less than new data; give the stage more data (n_items) or a "
        f"smaller budget (tokens), or allow it (--set train.max_repetition={row.epochs_realised:.1f})"
        for row in rows
        if row.epochs_realised > max_repetition
    ]


def ledger_table(rows: list[LedgerRow]) -> str:
    """The ledger as a fixed-width text table, for the terminal and the run's logs."""
    header = ("stage", "source", "length", "tokens planned", "tokens trained", "source tokens", "epochs")
    lines = [header] + [
        (row.stage, row.source, row.length, f"{row.tokens_planned:,}", f"{row.tokens_trained:,}",
         f"{row.source_tokens:,}", f"{row.epochs_realised:.2f}" + (" (max_iters)" if row.capped else ""))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "Token ledger (per stage and source, before training):\n" + "\n".join(f"  {line}" for line in text)


def write_ledger(run_dir: Path, rows: list[LedgerRow], max_repetition: float) -> Path:
    """`<run_dir>/token_ledger.json`, written whole or not at all."""
    path = Path(run_dir) / LEDGER_FILE
    record = {"max_repetition": max_repetition, "rows": [row.to_json() for row in rows],
              "warnings": repetition_warnings(rows, max_repetition)}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path
