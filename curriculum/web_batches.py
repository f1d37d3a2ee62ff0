"""A custom-scrape stage's fetch step in batches (data/web/batches.py), as plain functions: the plan, one batch's
results, and the stage's documents replayed from them.

Kept out of curriculum/prepare.py on purpose: the fetch step's cache key hashes that module's source (FETCH_CODE),
and batching changes nothing a cached fetch of another kind of stage holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from curriculum.prepare import DocumentsRecord, fetch_stage, make_reader, work_dir
from curriculum.sources import CUSTOM_SCRAPE
from curriculum.stages import CurriculumStage
from data.atomic import sha256_file
from data.config import DataConfig
from data.web.batches import BatchReplay, WebBatch, batch_name, plan_batches, read_batch
from data.web.config import ScrapeConfig
from data.web.source import WebReader


class WebBatchRecord(BaseModel):
    """The results of one batch of a custom-scrape stage's inputs: fetched, read and extracted, not yet
    deduplicated; the stage's fetch replays them. Removed once the stage's documents are written."""

    stage: str
    index: int
    of: int
    path: Path
    sha256: str
    n_inputs: int

    @property
    def name(self) -> str:
        return batch_name(self.stage, self.index, self.of)

    def is_intact(self) -> bool:
        return self.path.is_file() and sha256_file(self.path) == self.sha256


def _web_reader(stage: CurriculumStage, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> WebReader:
    reader = make_reader(stage, data_cfg, scrape_cfg)
    if not isinstance(reader, WebReader):
        raise ValueError(f"stage {stage.name!r} reads {stage.data_key}, not {CUSTOM_SCRAPE}: it has no web batches")
    return reader


def web_batch_plan(stage: CurriculumStage, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> list[WebBatch]:
    """The batches of a custom-scrape stage's inputs, scrape.batch_inputs each (a host's URLs are never split)."""
    reader = _web_reader(stage, data_cfg, scrape_cfg)
    return plan_batches(reader.url_list.urls, len(reader.files), scrape_cfg.batch_inputs)


def fetch_web_batch(
    stage: CurriculumStage, data_cfg: DataConfig, scrape_cfg: ScrapeConfig, batch: WebBatch
) -> WebBatchRecord:
    """Fetch, read and extract one batch of a custom-scrape stage's inputs into a results file beside its data."""
    reader = _web_reader(stage, data_cfg, scrape_cfg)
    path, sha256 = read_batch(reader, batch, work_dir(data_cfg, stage) / "web-batches")
    return WebBatchRecord(stage=stage.name, index=batch.index, of=batch.of, path=path, sha256=sha256,
                          n_inputs=len(batch.inputs))


def fetch_batched_stage(
    stage: CurriculumStage, data_cfg: DataConfig, scrape_cfg: ScrapeConfig, batches: list[WebBatchRecord],
    on_progress: Callable[[int], None] | None = None,
) -> DocumentsRecord:
    """A custom-scrape stage's documents from its batches' results, replayed in input order: the same file, byte for
    byte, as fetch_stage on the stage's WebReader writes."""
    for batch in batches:
        if not batch.is_intact():
            raise ValueError(f"the results of {batch.name} at {batch.path} are missing or changed since it ran; "
                             "prepare the stage again")
    reader = _web_reader(stage, data_cfg, scrape_cfg)
    record = fetch_stage(stage, BatchReplay(reader, [batch.path for batch in batches]), data_cfg, on_progress)
    for batch in batches:
        batch.path.unlink(missing_ok=True)  # the documents file holds what they gave
    return record
