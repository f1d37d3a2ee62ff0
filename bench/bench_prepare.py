"""The `default` curriculum's three stages prepared serially, on the threads runner and on a 2-worker Dask cluster.

    TIKTOKEN_CACHE_DIR=../shared/tiktoken python bench/bench_prepare.py [--workers 2]

All from ../shared, offline: warmup = the TinyStories mirror (every story it holds), foundation = the 13 books,
pretrain = every saved page and PDF of corpora/web, read through the same extraction as fetched pages. Each variant
is one run of the curriculum flow (prepare only) into a fresh data folder, all in this process and against one
Prefect server, so only the preparation is timed (the Dask variant includes starting its cluster):

  serial   the threads runner with 1 worker and 1 extraction worker: one step at a time, as before task runners
  threads  the threads runner with --workers threads, extraction over as many sandboxed workers
  dask     a local Dask cluster of --workers processes on 127.0.0.1, extraction as in threads

Every variant must write the same shard bytes and records (checked). Prints seconds, documents/s and web
pages/s per variant, and last `speedup_vs_serial=X` (the faster parallel variant).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("CURRICULUM_HUB_MIRROR", str(SHARED / "hub"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect.client.orchestration import get_client  # noqa: E402

from flows.curriculum import curriculum  # noqa: E402


def overrides(data_dir: Path, runner: str, workers: int, extract_workers: int) -> dict:
    return {
        "data.data_dir": str(data_dir),
        "stages.foundation.files": [str(SHARED / "corpora" / "books")],
        "stages.pretrain.urls_file": None,
        "stages.pretrain.paths": [str(SHARED / "corpora" / "web")],
        "scrape.extract_workers": extract_workers,
        "prepare.task_runner": runner,
        "prepare.workers": workers,
    }


def written(data_dir: Path) -> dict[str, str]:
    """SHA-256 of every shard and of every shard record (paths made relative), by name."""
    out = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data_dir.glob("*.bin"))}
    for path in sorted((data_dir / "reports").glob("shards_*.json")):
        out[path.name] = hashlib.sha256(path.read_text().replace(str(data_dir), "<data>").encode()).hexdigest()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="threads / Dask workers of the parallel variants")
    args = parser.parse_args()
    variants = {"serial": ("threads", 1, 1), "threads": ("threads", args.workers, args.workers),
                "dask": ("dask", args.workers, args.workers)}
    n_pages = sum(1 for p in (SHARED / "corpora" / "web").rglob("*") if p.is_file())
    seconds: dict[str, float] = {}
    outputs: dict[str, dict[str, str]] = {}
    with get_client(sync_client=True) as client:
        client.hello()  # starts Prefect's temporary server (when PREFECT_API_URL is unset) before any timing
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        for name, (runner, workers, extract_workers) in variants.items():
            data_dir = Path(tmp) / name
            started = time.perf_counter()
            summary = curriculum(type="default", overrides=overrides(data_dir, runner, workers, extract_workers),
                                 prepare_only=True)
            seconds[name] = time.perf_counter() - started
            outputs[name] = written(data_dir)
            n_docs = sum(s["train_documents"] + s["val_documents"] for s in summary["shards"])
            print(json.dumps({"variant": name, "runner": runner, "workers": workers, "seconds": round(seconds[name], 2),
                              "documents": n_docs, "documents_per_s": round(n_docs / seconds[name], 1),
                              "web_pages_per_s": round(n_pages / seconds[name], 1)}), flush=True)
    files = len(outputs["serial"])
    for name, output in outputs.items():
        if output != outputs["serial"]:
            differ = sorted(key for key in output.keys() | outputs["serial"].keys()
                            if output.get(key) != outputs["serial"].get(key))
            raise SystemExit(f"{name} wrote other bytes than serial: {differ}")
    print(f"same_bytes=true ({files} shard files and records, every variant)")
    best = min(seconds["threads"], seconds["dask"])
    print(f"speedup_vs_serial={seconds['serial'] / best:.2f}")


if __name__ == "__main__":
    main()
