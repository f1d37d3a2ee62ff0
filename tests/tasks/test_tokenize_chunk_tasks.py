"""The tokenize task's chunks as task runs of their own: a failing chunk fails the stage with its name, the others
are recorded and taken from the cache by the next run."""

from __future__ import annotations

import pytest
from prefect import flow

from curriculum.prepare import ChunkFailed, DocumentsRecord
from data.config import DataConfig
from tasks.caching import run_cached
from tasks.prepare import tokenize
from tests.support.documents import documents_file

pytestmark = pytest.mark.slow  # in-process flows start Prefect's temporary server


@flow(name="tokenize-chunks")
def tokenize_web(documents: DocumentsRecord, data: DataConfig):
    return run_cached(tokenize, data.resolved_data_dir, documents=documents, data=data, run="chunks")


def test_a_failing_chunk_fails_the_stage_by_name_and_the_others_are_cached(tmp_path):
    data = DataConfig(data_dir=tmp_path / "data", chunk_row_groups=1)
    work = tmp_path / "data" / "work" / "web"
    bad = documents_file(work / "bad.parquet", [["one", "two"], ["three", None], ["five"]])
    with pytest.raises(ChunkFailed, match=r"^tokenize-web-2/3 failed: TypeError"):
        tokenize_web(bad, data)
    kept = sorted(p.name.split("-rg")[1] for p in work.glob("tokens-*-rg*.bin"))
    assert kept == ["0-1.bin", "2-3.bin"]
    # A chunk run again would write new files and rename them over these: their inodes would change.
    inodes = {p.name: p.stat().st_ino for p in work.glob("tokens-*-rg*")}

    # The same documents, with the broken row group failing again: the finished chunks are not run again.
    with pytest.raises(ChunkFailed, match=r"tokenize-web-2/3"):
        tokenize_web(bad, data)
    assert {p.name: p.stat().st_ino for p in work.glob("tokens-*-rg*")} == inodes
