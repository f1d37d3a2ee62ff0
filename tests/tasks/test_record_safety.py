"""A cached result record rewritten to run code on the next cache lookup is refused, never deserialized."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import stat
from pathlib import Path

import pytest
from prefect import flow

from curriculum.stages import CurriculumStage
from data.config import DataConfig
from data.web.config import ScrapeConfig
from tasks.caching import RESULTS_DIRNAME, run_cached
from tasks.prepare import fetch
from tasks.result_storage import UntrustedRecord, check_record

pytestmark = pytest.mark.slow  # in-process flows start Prefect's temporary server


class MakesMarker:
    """Unpickling this creates a folder: harmless proof that a pickle was run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def rewrite_to_pickle(record_file: Path, marker: Path) -> bytes:
    record = json.loads(record_file.read_bytes())
    record["metadata"]["serializer"] = {"type": "pickle", "picklelib": "pickle"}
    record["result"] = base64.encodebytes(pickle.dumps(MakesMarker(marker))).decode()
    content = json.dumps(record).encode()
    record_file.write_bytes(content)
    return content


@flow(name="record-safety")
def fetch_book(book: Path, data_dir: Path):
    stage = CurriculumStage(name="book", dataset_key="local-files", files=[str(book)], block_size=32, n_epochs=1)
    record, cached = run_cached(fetch, data_dir, stage=stage, data=DataConfig(data_dir=data_dir),
                                scrape=ScrapeConfig(), run="safety")
    return record.n_documents, cached


def test_a_record_rewritten_to_pickle_is_refused_and_the_step_runs_again(shared, tmp_path, caplog):
    book, data_dir = shared / "corpora" / "books" / "paine_common-sense_pg147.txt", tmp_path / "data"
    n_documents, cached = fetch_book(book, data_dir)
    assert n_documents > 0 and not cached
    assert fetch_book(book, data_dir) == (n_documents, True)
    # The folders that hold records are private.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / RESULTS_DIRNAME).stat().st_mode) == 0o700

    (record_file,) = (data_dir / RESULTS_DIRNAME).iterdir()
    marker = tmp_path / "pickle-ran"
    tampered = rewrite_to_pickle(record_file, marker)
    # The payload is live: Prefect's own reader runs it (on a copy aimed at another marker).
    from prefect._internal.result_records import ResultRecord

    control = tmp_path / "control-pickle-ran"
    ResultRecord.deserialize(tampered.replace(
        base64.encodebytes(pickle.dumps(MakesMarker(marker))).decode().encode().replace(b"\n", b"\\n"),
        base64.encodebytes(pickle.dumps(MakesMarker(control))).decode().encode().replace(b"\n", b"\\n"),
    ))
    assert control.is_dir()

    with caplog.at_level(logging.WARNING, logger="tasks.result_storage"):
        assert fetch_book(book, data_dir) == (n_documents, False)
    assert not marker.exists()
    assert "names the serializer 'pickle'" in caplog.text and str(record_file) in caplog.text
    aside = record_file.with_name(record_file.name + ".untrusted")
    assert aside.read_bytes() == tampered  # kept for a look, under a name Prefect never reads
    # The step wrote a good record in its place: the next run is cached again.
    assert json.loads(record_file.read_bytes())["metadata"]["serializer"]["type"] == "json"
    assert fetch_book(book, data_dir) == (n_documents, True)
    assert not marker.exists()


def good_record(result: object) -> dict:
    from prefect.serializers import JSONSerializer

    return {"metadata": {"serializer": JSONSerializer().model_dump(mode="json")}, "result": json.dumps(result)}


def test_a_json_record_naming_a_foreign_class_or_decoder_is_refused(tmp_path):
    check_record(json.dumps(good_record({"__class__": "data.documents.DocumentsRecord", "data": {}})).encode(), "r")
    with pytest.raises(UntrustedRecord, match="'subprocess.Popen', not a class of this project"):
        check_record(json.dumps(good_record({"__class__": "subprocess.Popen", "data": ["id"]})).encode(), "r")
    with pytest.raises(UntrustedRecord, match="'os.error'"):
        check_record(json.dumps(good_record([{"__exc_type__": "os.error", "message": "x"}])).encode(), "r")
    record = good_record(1)
    record["metadata"]["serializer"]["object_decoder"] = "os.system"
    with pytest.raises(UntrustedRecord, match="'json' with other settings"):
        check_record(json.dumps(record).encode(), "r")
    with pytest.raises(UntrustedRecord, match="is not JSON"):
        check_record(b"\x80\x04garbage", "r")
