"""Temporary files: only a dead writer's are cleaned up; documents are named by the hash of their bytes."""

from __future__ import annotations

import subprocess
import sys

from data.atomic import remove_stale_tmp, sha256_file, tmp_path_for
from data.documents import Document, write_documents_by_content


def test_only_a_dead_writers_temporaries_are_removed(tmp_path):
    target = tmp_path / "train.bin"
    mine = tmp_path_for(target)  # this live process
    mine.write_bytes(b"being written")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited and reaped: its pid names no live process (unless reused at once)
    theirs = target.with_name(f".{target.name}.tmp-{dead_pid}-0123abcd")
    theirs.write_bytes(b"left by a kill")
    remove_stale_tmp(target)
    assert mine.exists()
    assert not theirs.exists()


def test_documents_are_named_by_their_content(tmp_path):
    one = [Document(id=str(i), text=f"story {i}") for i in range(10)]
    other = [Document(id=str(i), text=f"tale {i}") for i in range(12)]
    path_one, summary_one = write_documents_by_content(iter(one), tmp_path)
    path_other, summary_other = write_documents_by_content(iter(other), tmp_path)
    assert path_one != path_other
    for path, summary in ((path_one, summary_one), (path_other, summary_other)):
        assert summary.sha256 == sha256_file(path)
        assert path.name == f"documents-{summary.sha256[:16]}.parquet"
    assert summary_one.n_documents == 10 and summary_other.n_documents == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path_one.name, path_other.name])
