"""The Hugging Face source on real local data: the TinyStories hub mirror and a save_to_disk folder."""

from __future__ import annotations

import shutil
import time

import pyarrow.parquet as pq
import pytest

from data.documents import SkipReport
from data.hf_reader import MIRROR_ENV, HubUnreachable, HuggingFaceReader, resolve

TINY = "roneneldan/TinyStories"


def mirror_texts(hub_mirror, split="train"):
    return pq.read_table(next((hub_mirror / TINY / "data").glob(f"{split}-*.parquet"))).column("text").to_pylist()


def test_hub_id_resolves_under_the_mirror_from_config_and_env(hub_mirror, monkeypatch):
    assert resolve(TINY, hub_mirror).target == str((hub_mirror / TINY).resolve())
    monkeypatch.setenv(MIRROR_ENV, str(hub_mirror))
    assert resolve(TINY).kind == "folder"
    monkeypatch.delenv(MIRROR_ENV)
    assert resolve(TINY).kind == "hub"


def test_n_items_takes_the_first_documents_in_order(hub_mirror):
    reader = HuggingFaceReader(TINY, n_items=50, mirror=hub_mirror)
    report = SkipReport(TINY)
    documents = list(reader.documents(report))
    assert [doc.text for doc in documents] == mirror_texts(hub_mirror)[:50]
    assert [doc.id for doc in documents][:2] == ["train:0", "train:1"]


def test_other_split_and_whole_dataset(hub_mirror):
    documents = list(HuggingFaceReader(TINY, split="validation", mirror=hub_mirror).documents(SkipReport(TINY)))
    assert len(documents) == 1000 == len(mirror_texts(hub_mirror, "validation"))


def test_save_to_disk_folder(shared):
    folder = shared / "corpora" / "hf_saved" / "Blackroot--Tiny-Open-Domain-Books"
    reader = HuggingFaceReader(str(folder))
    assert reader.location.kind == "saved"
    documents = list(reader.documents(SkipReport("saved")))
    assert len(documents) == 453
    assert documents[0].text.startswith("Dorothy lived in the midst of the great Kansas prairies")
    assert len(reader.fingerprint()) == 64


def test_fingerprint_follows_content_not_location(hub_mirror, tmp_path):
    original = HuggingFaceReader(TINY, n_items=10, mirror=hub_mirror).fingerprint()
    copy = tmp_path / "mirror"
    shutil.copytree(hub_mirror / TINY, copy / TINY)
    assert HuggingFaceReader(TINY, n_items=10, mirror=copy).fingerprint() == original
    validation = next((copy / TINY / "data").glob("validation-*.parquet"))
    table = pq.read_table(validation)
    pq.write_table(table.slice(0, table.num_rows - 1), validation)  # one story fewer
    assert HuggingFaceReader(TINY, n_items=10, mirror=copy).fingerprint() != original


def test_unknown_text_field_lists_columns(hub_mirror):
    reader = HuggingFaceReader(TINY, n_items=3, text_field="story_text", mirror=hub_mirror)
    with pytest.raises(KeyError, match=r"no column 'story_text'; its columns are \['text'\]"):
        list(reader.documents(SkipReport(TINY)))


def test_offline_without_mirror_names_the_mirror_setting_quickly():
    started = time.monotonic()
    reader = HuggingFaceReader(TINY, n_items=10)
    with pytest.raises(HubUnreachable, match=MIRROR_ENV):
        reader.fingerprint()
    with pytest.raises(HubUnreachable, match=MIRROR_ENV):
        list(reader.documents(SkipReport(TINY)))
    assert time.monotonic() - started < 10
