"""One writer per folder: a second run on a folder in use stops at once, naming the run that holds it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from data.folder_lock import FolderLocked, folder_lock, read_holder
from data.shards import read_shard
from tests.support.prefect_server import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "flows" / "curriculum.py"

CONFIG = """
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 64
    n_epochs: 1
    n_items: 200
"""

HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from data.folder_lock import folder_lock
with folder_lock(sys.argv[1], "data", flow_run_id="1234-abcd", flow_run_name="other-run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_lock_held_by_another_process_is_refused_naming_it_and_freed_when_it_dies(tmp_path):
    folder = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT)), str(folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderLocked) as refused:
            with folder_lock(folder, "data"):
                pass
        message = str(refused.value)
        for expected in (f"pid {holder.pid}", f"host {socket.gethostname()}", "'other-run'", "1234-abcd",
                         str(folder.resolve()), "--data-dir"):
            assert expected in message
        # Another purpose (a run folder that is also the data folder) is a lock of its own.
        with folder_lock(folder, "run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's lock: no stale lock to clear by hand.
    with folder_lock(folder, "data", flow_run_name="mine"):
        assert read_holder(folder, "data")["pid"] == os.getpid()


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path):
    with folder_lock(tmp_path / "runs" / "r1", "run"):
        with pytest.raises(FolderLocked, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path / "runs" / "r1", "run"):
                pass


@pytest.mark.slow  # two flows/curriculum.py processes
def test_two_prepare_runs_on_one_data_folder_the_second_refused_a_third_with_wait_queued(tmp_path, hub_mirror):
    config = tmp_path / "one.yaml"
    config.write_text(CONFIG)
    data = tmp_path / "data"
    paused = tmp_path / "paused"
    command = [sys.executable, str(SCRIPT), "--config", str(config), "--prepare-only", "--data-dir", str(data)]
    # Each CLI starts its own temporary Prefect server; two at once on a busy machine can take a while.
    env = {**os.environ, "CURRICULUM_HUB_MIRROR": str(hub_mirror),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    first = subprocess.Popen(
        command, env={**env, "CURRICULUM_PAUSE_AT": "fetch:0:0", "CURRICULUM_PAUSED_FILE": str(paused)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/", start_new_session=True,
    )
    try:
        wait_for(lambda: paused.exists() or first.poll() is not None, "the first run to hold the data folder")
        assert first.poll() is None, first.stdout.read()
        files_before = sorted(p.relative_to(data) for p in data.rglob("*"))

        second = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/", timeout=300)
        output = second.stdout + second.stderr
        assert second.returncode != 0, output
        assert "FolderLocked" in output and f"pid {first.pid} on host {socket.gethostname()}" in output, output
        assert "flow run 'one-prepare-" in output and "--data-dir" in output, output
        assert "[Stage 1/1]" not in output, "the second run must stop before preparing anything"
        assert sorted(p.relative_to(data) for p in data.rglob("*")) == files_before

        # With --wait, a third run queues behind the first instead, and prepares once the first has finished.
        waiting_log = tmp_path / "waiting.log"
        with open(waiting_log, "w") as log:
            waiting = subprocess.Popen(command + ["--wait"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                       text=True, cwd="/", start_new_session=True)
        wait_for(lambda: "waiting for the data folder" in waiting_log.read_text() or waiting.poll() is not None,
                 "the --wait run to say it waits")
        assert waiting.poll() is None, waiting_log.read_text()
        said = waiting_log.read_text()
        assert f"pid {first.pid} on host {socket.gethostname()}" in said and "flow run 'one-prepare-" in said, said
        assert sorted(p.relative_to(data) for p in data.rglob("*")) == files_before

        paused.unlink()  # the first run goes on and finishes
        out, _ = first.communicate(timeout=300)
        assert first.returncode == 0, out
        assert waiting.wait(timeout=300) == 0, waiting_log.read_text()
        assert "[Stage 1/1]" in waiting_log.read_text()
    finally:
        for process in [first, *([waiting] if "waiting" in locals() else [])]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for split in ("train", "val"):
        assert read_shard(data / f"{split}_warmup_pretrain.bin").n_tokens > 0
    assert not [p for p in data.rglob("*") if ".tmp-" in p.name]
