"""Settings of the data preparation steps (the `data:` section of a run config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path | None = Field(
        None,
        description="Where shards, intermediate files, caches and reports are written; default: "
        "out/data/<curriculum name>, so two curricula never overwrite each other's shards.",
    )
    tokenizer: str = Field("r50k_base", description="tiktoken encoding name (r50k_base is GPT-2's BPE).")
    hub_mirror: Path | None = Field(
        None,
        description="Folder under which a hub id 'org/name' resolves to '<hub_mirror>/org/name'. "
        "Default: the CURRICULUM_HUB_MIRROR environment variable.",
    )
    val_fraction: float = Field(
        0.05, gt=0, lt=0.5,
        description="Share of documents held out for validation, chosen by a seeded hash of each document id.",
    )
    min_val_windows: PositiveInt = Field(
        8, description="Validation holds at least this many block_size+1 windows: one eval batch at the default "
        "train.batch_size (8). A small dataset moves more documents to validation, or stops with an error naming "
        "the stage."
    )
    seed: int = Field(1337, description="Seed of the document-level train/val split.")
    threads: int = Field(
        0, ge=0,
        description="Tokenizer threads per task; 0: every core, shared by the tasks of a local runner (cores / "
        "prepare.workers); on a Dask scheduler's worker, every core of its machine.",
    )
    chunk_row_groups: PositiveInt = Field(
        32, description="Row groups of a stage's documents file (up to 2,048 documents each) per tokenize chunk, a "
        "task run of its own (tokenize-<stage>-<i>/<n>). The output is the same whatever the value; it is part of "
        "no cache key but the chunks' own.",
    )

    @property
    def resolved_data_dir(self) -> Path:
        """`data_dir`, which a RunConfig fills in on validation; a bare DataConfig must be given one."""
        if self.data_dir is None:
            raise ValueError(
                "data.data_dir is not set: a DataConfig used outside a RunConfig needs an explicit data_dir "
                "(RunConfig defaults it to out/data/<curriculum name>)"
            )
        return self.data_dir
