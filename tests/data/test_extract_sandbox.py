"""The extraction sandbox on hostile and real inputs: every document ends, in time, as text or a reason."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from data.extract import ExtractionSkipped
from data.extract.errors import ANSWER_TOO_LARGE, MEMORY, NOT_HTML, REASONS, TIMEOUT, WORKER_CRASH
from data.extract.sandbox import ExtractionPool, extract_bytes, worker_environment

BOUND = 10.0  # seconds; every hostile input must end well within it
SLACK = 2.0  # what killing and reporting may add on a loaded machine


@pytest.fixture(scope="module")
def pool():
    with ExtractionPool(timeout=BOUND, memory_mb=1024) as pool:
        yield pool


def _hostile(shared: Path) -> list[Path]:
    files = sorted(p for p in (shared / "corpora" / "hostile").rglob("*") if p.is_file())
    assert len(files) == 21
    return files


def _assert_ended(result, what: str) -> None:
    assert result.seconds <= BOUND + SLACK, f"{what}: took {result.seconds:.1f} s"
    if result.text is None:
        assert result.reason in REASONS and result.detail, f"{what}: skipped without a logged reason"
    else:
        assert result.reason is None and result.text.strip()


def test_every_hostile_file_ends_as_text_or_a_reason(shared: Path, pool: ExtractionPool):
    for path in _hostile(shared):
        kind = "pdf" if path.parent.name == "pdf" else "html"
        _assert_ended(pool.extract(path.read_bytes(), kind), path.name)


def test_hostile_gzip_bodies_are_not_html_raw_and_end_once_decoded(shared: Path, pool: ExtractionPool):
    for path in sorted((shared / "corpora" / "hostile" / "html").glob("*.gz")):
        raw = pool.extract(path.read_bytes(), "html")
        assert raw.reason == NOT_HTML and "gzip" in raw.detail
        _assert_ended(pool.extract(gzip.decompress(path.read_bytes()), "html"), path.name)


def test_a_pdf_served_as_html_is_not_html(shared: Path, pool: ExtractionPool):
    pdf = (shared / "corpora" / "web" / "pdf" / "sf-001-minimal-document.pdf").read_bytes()
    assert pool.extract(pdf, "html").reason == NOT_HTML
    assert "Lorem ipsum" in pool.extract(pdf, "pdf").text


def test_a_timeout_kills_the_worker_and_the_next_document_gets_a_new_one(shared: Path):
    slow = (shared / "corpora" / "web" / "pdf" / "sf-009-GeoTopo-komprimiert.pdf").read_bytes()  # 117 pages, ~3 s
    with ExtractionPool(timeout=0.5) as pool:
        assert pool.extract(b"<p>warm up</p>", "html").text == "warm up"
        [old] = pool.worker_pids()
        result = pool.extract(slow, "pdf")
        assert result.reason == TIMEOUT and result.seconds < 0.5 + SLACK
        with pytest.raises(ProcessLookupError):
            os.kill(old, 0)  # really gone, not left running in the background
        page = (shared / "corpora" / "web" / "html" / "trafilatura" / "blog.python.org.html").read_bytes()
        assert "Python 3.6.0" in pool.extract(page, "html").text
        assert pool.worker_pids() and pool.worker_pids() != [old]


def test_the_memory_cap_turns_an_allocation_into_a_memory_skip():
    with ExtractionPool(memory_mb=512) as pool:
        result = pool.extract(b"1024", "test-allocate")  # 1 GiB under a 512 MiB cap
        assert result.reason == MEMORY and "512 MiB" in result.detail
        assert pool.extract(b"64", "test-allocate").text  # a fresh worker, well within the cap


def test_a_crashing_worker_becomes_a_skip_not_an_exception():
    with ExtractionPool() as pool:
        result = pool.extract(b"", "test-crash")
        assert result.reason == WORKER_CRASH and "SIGSEGV" in result.detail
        assert pool.extract(b"0", "test-sleep").text


def test_a_worker_killed_while_idle_is_replaced_without_blaming_the_next_document(shared: Path):
    page = (shared / "corpora" / "web" / "html" / "trafilatura" / "blog.python.org.html").read_bytes()
    with ExtractionPool() as pool:
        assert pool.extract(page, "html").text
        os.kill(pool.worker_pids()[0], 9)
        assert "Python 3.6.0" in pool.extract(page, "html").text


ORPHAN = """
import os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from data.extract import ExtractionPool
pool = ExtractionPool(timeout=0.5)
pool.extract(b"<p>start</p>", "html")
print(pool.worker_pids()[0], flush=True)
threading.Thread(target=pool.extract, args=(b"600", "test-spin"), daemon=True).start()
time.sleep(0.2)
os.kill(os.getpid(), 9)  # the pool dies while its worker spins on a document
"""


@pytest.mark.slow  # a Python process and its orphaned worker
def test_a_worker_whose_pool_died_does_not_spin_forever():
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", ORPHAN, str(root)], capture_output=True, text=True, timeout=60)
    worker = int(run.stdout.split()[0])
    deadline = time.monotonic() + 30  # its CPU limit is 0.5 s + 2 s of grace; wall time on a busy machine more
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, 9)
    pytest.fail(f"orphaned worker {worker} still running 30 s after its pool died")


def test_deep_nesting_ends_within_the_bound():
    # 20,000 nested tables cost the extractor seconds (each cell's text holds all the cells inside it): the time
    # limit is what bounds such a page, and it must.
    with ExtractionPool(timeout=2.0) as pool:
        for opener in ("<div>", "<span>", "<table><tr><td>"):
            page = ("<html><body>" + opener * 20_000 + "text, " * 40).encode()
            result = pool.extract(page, "html")
            assert result.seconds <= 2.0 + SLACK, f"{opener} x 20000: took {result.seconds:.1f} s"
            assert result.text is not None or result.reason == TIMEOUT


def test_threads_share_a_pool(shared: Path):
    pages = sorted((shared / "corpora" / "web" / "html" / "trafilatura").glob("*.html"))[:12]
    results: dict[str, str | None] = {}
    with ExtractionPool(workers=2) as pool:

        def work(chunk: list[Path]) -> None:
            for page in chunk:
                results[page.name] = pool.extract(page.read_bytes(), "html").text

        threads = [threading.Thread(target=work, args=(pages[i::3],)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(pool.worker_pids()) == 2
    assert len(results) == len(pages)
    for page in pages:  # the same text as in this process: no answer went to the wrong caller
        try:
            expected = extract_bytes(page.read_bytes(), "html")
        except ExtractionSkipped:
            expected = None
        assert results[page.name] == expected, page.name


def test_bad_arguments_fail_loudly():
    with pytest.raises(ValueError, match="kind='docx'"):
        extract_bytes(b"", "docx")
    with pytest.raises(ValueError, match="positive"):
        ExtractionPool(timeout=0)
    with ExtractionPool(memory_mb=100) as pool:
        with pytest.raises(RuntimeError, match="extract_memory_mb"):
            pool.extract(b"<p>x</p>", "html")


def test_workers_see_none_of_the_parents_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    monkeypatch.setenv("PREFECT_API_URL", "http://10.0.0.5:4200/api")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_parent_secret")
    monkeypatch.setenv("HF_TOKEN", "hf_parent_secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    with ExtractionPool() as pool:
        assert pool.extract(b"<p>still works</p>", "html").text == "still works"
        [pid] = pool.worker_pids()
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError as error:
            pytest.skip(f"cannot read a process's environment here: {error}")
    names = {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}
    assert "LC_ALL" in names and "PYTHONPATH" in names
    assert not names & {"OPENAI_API_KEY", "PREFECT_API_URL", "PREFECT_API_KEY", "HF_TOKEN", "HOME"}
    assert b"secret" not in raw


def test_worker_environment_is_an_allow_list():
    parent = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_CTYPE": "C.UTF-8", "TMPDIR": "/tmp/x", "PYTHONPATH": "/extra",
              "AWS_SECRET_ACCESS_KEY": "k", "GITHUB_TOKEN": "t", "DATABASE_URL": "postgres://u:p@h/db"}
    env = worker_environment(parent, "/project")
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_CTYPE": "C.UTF-8", "TMPDIR": "/tmp/x",
                   "PYTHONPATH": os.pathsep.join(["/project", "/extra"])}


def test_an_answer_over_the_cap_is_refused_unread_and_the_worker_replaced(shared: Path):
    page = (shared / "corpora" / "web" / "html" / "gutenberg" / "alice_pg11-h.htm").read_bytes()  # ~140 KB of text
    with ExtractionPool(max_answer_bytes=2000) as pool:
        assert pool.extract(b"0", "test-sleep").text == "test-sleep 0 done"
        [old] = pool.worker_pids()
        result = pool.extract(page, "html")
        assert result.text is None and result.reason == ANSWER_TOO_LARGE
        assert "over the cap of 2000 bytes" in result.detail and "worker replaced" in result.detail
        with pytest.raises(ProcessLookupError):
            os.kill(old, 0)
        assert pool.extract(b"<p>small</p>", "html").text == "small"  # a fresh worker, a clean channel
        assert pool.worker_pids() != [old]
