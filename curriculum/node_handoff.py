"""What node 0's flow hands the flows of the other machines of a multi-machine run (train.nnodes > 1).

Only node 0 prepares the data and owns the run folder (locks, run.json, summaries). Once its shards are ready
and the run folder is made, it writes their records to `<run folder>/prepared.json`; the flow on every other
node waits for that file, then trains each stage with it, meeting node 0's processes at the rendezvous.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from curriculum.prepare import ShardsRecord
from data.atomic import atomic_write_text

HANDOFF_FILE = "prepared.json"


class Handoff(BaseModel):
    fingerprint_sha256: str  # the run folder's (run.json): a file of another run's settings is not ours
    shards: list[ShardsRecord]


def clear_handoff(run_dir: Path) -> None:
    """Node 0, before preparing: a file left by an earlier session must not send the other nodes ahead."""
    (run_dir / HANDOFF_FILE).unlink(missing_ok=True)


def write_handoff(run_dir: Path, fingerprint_sha256: str, shards: list[ShardsRecord]) -> None:
    atomic_write_text(run_dir / HANDOFF_FILE, Handoff(fingerprint_sha256=fingerprint_sha256, shards=shards)
                      .model_dump_json(indent=1))


def wait_for_handoff(
    run_dir: Path,
    fingerprint_sha256: str,
    *,
    node_rank: int,
    poll_s: float = 2.0,
    report_every_s: float = 60.0,
    say: Callable[[str], None] = print,
) -> list[ShardsRecord]:
    """Node `node_rank` > 0: the shard records node 0 prepared for this run, once they are there and whole.

    Waits as long as node 0 takes to prepare (a web crawl may take hours), saying so every `report_every_s`;
    cancel the flow run to stop waiting."""
    path = run_dir / HANDOFF_FILE
    started = last_report = time.monotonic()
    say(f"node {node_rank}: waiting for node 0 to prepare the data and write {path}")
    while True:
        handoff = _read(path)
        if handoff is None:
            state = "does not exist yet"
        elif handoff.fingerprint_sha256 != fingerprint_sha256:
            state = "is from a run of other settings"
        elif broken := [s.stage for s in handoff.shards if not s.is_intact()]:
            state = f"names shards that are not whole: {broken}"
        else:
            say(f"node {node_rank}: node 0's shards are ready ({len(handoff.shards)} stages)")
            return handoff.shards
        now = time.monotonic()
        if now - last_report >= report_every_s:
            last_report = now
            say(f"node {node_rank}: still waiting after {now - started:.0f} s: {path} {state}; is the flow with "
                "train.node_rank=0 running, with the same run folder on a filesystem both machines see?")
        time.sleep(poll_s)


def _read(path: Path) -> Handoff | None:
    try:
        return Handoff.model_validate_json(path.read_bytes())
    except (FileNotFoundError, ValidationError):
        return None
