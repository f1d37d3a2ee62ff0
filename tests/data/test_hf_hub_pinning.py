"""A hub dataset is read at the commit its cache key named, and checking the hub leaves the process's sockets alone.

The hub itself is out of reach here, so its two calls (resolve a revision, download at a revision) are stand-ins
that serve the real TinyStories mirror; everything else is the real reader.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import datasets
import huggingface_hub
import pytest

from data import hf_reader
from data.documents import SkipReport
from data.hf_reader import HuggingFaceReader

TINY = "roneneldan/TinyStories"


@pytest.fixture
def fake_hub(hub_mirror, monkeypatch):
    """A hub whose `main` moves to a new commit after every resolution; loads record the revision asked for."""
    calls = SimpleNamespace(resolved=[], loaded=[])
    real_load = datasets.load_dataset

    def dataset_info(self, repo_id, *, revision=None, timeout=None, **_):
        calls.resolved.append((repo_id, revision, timeout))
        return SimpleNamespace(sha=f"{len(calls.resolved):040x}")

    def load_dataset(path, *, split, streaming, revision, **_):
        calls.loaded.append((path, revision))
        return real_load(str(hub_mirror / TINY), split=split, streaming=streaming)

    monkeypatch.setattr(hf_reader, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_documents_are_read_at_the_commit_the_fingerprint_named(fake_hub):
    reader = HuggingFaceReader(TINY, n_items=5)
    assert reader.location.kind == "hub"
    keyed = reader.fingerprint()
    documents = list(reader.documents(SkipReport(TINY)))
    assert len(documents) == 5
    assert keyed == f"hub:{TINY}@{1:040x}"
    # One resolution, with a per-call timeout; the load names that commit, not the moving branch.
    assert fake_hub.resolved == [(TINY, None, hf_reader.HUB_TIMEOUT_S)]
    assert fake_hub.loaded == [(TINY, f"{1:040x}")]
    assert reader.fingerprint() == keyed


def test_a_named_revision_is_resolved_to_its_commit_before_loading(fake_hub):
    reader = HuggingFaceReader(TINY, n_items=2, revision="v1.0")
    list(reader.documents(SkipReport(TINY)))
    assert fake_hub.resolved == [(TINY, "v1.0", hf_reader.HUB_TIMEOUT_S)]
    assert fake_hub.loaded == [(TINY, f"{1:040x}")]


def test_checking_the_hub_leaves_the_process_socket_timeout_alone(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a lookup that answers at once, no traffic
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(7.0)
    try:
        assert hf_reader._hub_reachable(timeout=1.0) is True
        assert socket.getdefaulttimeout() == 7.0
    finally:
        socket.setdefaulttimeout(previous)


def test_the_fetch_steps_key_and_load_name_one_commit_while_the_branch_moves(fake_hub, monkeypatch):
    """The flow pins a hub stage's revision once; the cache key's reader and the fetch's reader (two objects,
    seconds apart) then resolve the same commit, however often `main` moves meanwhile."""
    from curriculum.prepare import make_reader, pin_hub_commit
    from curriculum.stages import CurriculumStage
    from data.config import DataConfig
    from data.web.config import ScrapeConfig

    def dataset_info(self, repo_id, *, revision=None, timeout=None, **_):
        fake_hub.resolved.append((repo_id, revision, timeout))
        if revision and len(revision) == 40:  # a commit resolves to itself
            return SimpleNamespace(sha=revision)
        return SimpleNamespace(sha=f"{len(fake_hub.resolved):040x}")  # `main` moves on every look-up

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    stage = CurriculumStage(name="warmup", dataset_key=TINY, block_size=64, n_epochs=1, n_items=3)
    data_cfg, scrape_cfg = DataConfig(), ScrapeConfig()
    pinned = pin_hub_commit(stage, data_cfg, scrape_cfg)
    assert pinned.revision == f"{1:040x}" and stage.revision is None
    key_reader, load_reader = make_reader(pinned, data_cfg, scrape_cfg), make_reader(pinned, data_cfg, scrape_cfg)
    assert key_reader.fingerprint() == f"hub:{TINY}@{1:040x}"
    assert len(list(load_reader.documents(SkipReport(TINY)))) == 3
    assert fake_hub.loaded == [(TINY, f"{1:040x}")]
    # a stage that is not on the hub is left as it is
    local = CurriculumStage(name="books", dataset_key="local-files", block_size=64, n_epochs=1, files=["x"])
    assert pin_hub_commit(local, data_cfg, scrape_cfg) is local
