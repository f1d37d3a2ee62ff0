"""`monitored_run`: an in-process flow run that publishes every tasks/ui_publish artifact to the session's
server, with made-up metrics, so the API and UI tests read each kind without training anything."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.metrics import eval_rows
from tests.support.prefect_server import PrefectServer

MONITOR_STAGES = {"warmup": 40, "books": 60}


@dataclass
class MonitoredRun:
    flow_run_id: str
    name: str
    run_dir: Path
    rows: list[dict[str, Any]]


def run_monitor_demo(server: PrefectServer, run_dir: Path) -> MonitoredRun:
    from prefect import flow, task
    from prefect.context import get_run_context
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from curriculum.plots import LOSS_CURVE_FILE, save_loss_curve
    from curriculum.prepare import DocumentsRecord, ShardsRecord
    from curriculum.presets import simple
    from curriculum.training.ledger import LedgerRow
    from data.web.report import CrawlReport, CrawlRow
    from tasks import ui_publish as monitor

    rows = eval_rows(MONITOR_STAGES)
    crawl = run_dir / "crawl_report.json"
    CrawlReport([CrawlRow(item="https://example.org/a", origin="url", status="ok", http_status=200, kind="html",
                          bytes=5000, chars=3000, attempts=1),
                 CrawlRow(item="https://example.org/b", origin="url", status="skipped", reason="robots-disallowed",
                          attempts=1)]).write(crawl)

    @task(task_run_name="train-{stage}")
    def train(stage: str, earlier: list[dict[str, Any]]) -> None:
        # The trainer's hook calls for one stage, with stand-ins for StageStart, StepInfo and StageResult.
        ui = monitor.TrainMonitor("demo", list(MONITOR_STAGES), earlier)
        index, iters = list(MONITOR_STAGES).index(stage), MONITOR_STAGES[stage]
        ui.on_stage_start(SimpleNamespace(plan=SimpleNamespace(stage=stage, stage_index=index, total_iters=iters),
                                          start_iter=0))
        stage_rows = {row["stage_iter"]: row for row in rows if row["stage"] == stage}
        for it in range(1, iters + 1):
            ui.on_step(SimpleNamespace(stage=stage, stage_iter=it, total_iters=iters))
            if it in stage_rows:
                ui.on_eval(stage_rows[it])
        ui.on_stage_end(SimpleNamespace(stage=stage, val_loss=stage_rows[iters]["val_loss"]))

    @flow(name="curriculum-monitor-demo", flow_run_name="monitor-demo")
    def demo() -> str:
        summary = []
        for stage in MONITOR_STAGES:
            documents = DocumentsRecord(stage=stage, path=run_dir / f"{stage}.jsonl", sha256="0" * 64, n_documents=300,
                                        n_chars=10**6, skipped={"too-short": 3}, notes=[])
            shards = ShardsRecord(stage=stage, shard_name=f"{stage}_pretrain", block_size=64, tokenizer="r50k_base",
                                  vocab_size=50257, train_path=run_dir / "t.bin", val_path=run_dir / "v.bin",
                                  train_sha256="0" * 64, val_sha256="0" * 64, train_tokens=55_704, val_tokens=2_858,
                                  train_documents=286, val_documents=14)
            summary.append(monitor.data_summary_row(documents, shards, {"fetch": False, "tokenize": True}))
        monitor.publish_data_summary("demo", summary)
        monitor.publish_token_ledger("demo", [
            LedgerRow(stage="warmup", source="roneneldan/TinyStories", length="a budget of 60,000 tokens",
                      tokens_planned=60_000, tokens_trained=59_904, source_tokens=55_680, epochs_realised=1.0759,
                      capped=False),
            LedgerRow(stage="books", source="local-files", length="2 epoch(s)", tokens_planned=111_360,
                      tokens_trained=111_104, source_tokens=55_680, epochs_realised=1.9954, capped=False),
        ])
        monitor.publish_crawl_report("demo", "books", crawl)
        for index, stage in enumerate(MONITOR_STAGES):
            train(stage, [row for row in rows if row["stage_index"] < index])  # metrics.jsonl so far
        png = save_loss_curve(rows, run_dir / LOSS_CURVE_FILE)
        monitor.publish_loss_curve("demo", png)
        monitor.publish_run_summary("demo", monitor.run_summary_markdown(
            simple(), git_commit="0123abc", stages=summary, final_dir=run_dir / "final", loss_curve=png))
        return str(get_run_context().flow_run.id)

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        flow_run_id = demo()
        APILogWorker.drain_all(timeout=5)  # the run's logs, while the server is up
    return MonitoredRun(flow_run_id, "monitor-demo", run_dir, rows)


@pytest.fixture(scope="session")
def monitored_run(prefect_server: PrefectServer) -> MonitoredRun:
    """The demo run above, made once per session on the shared server."""
    return run_monitor_demo(prefect_server, Path(tempfile.mkdtemp(prefix="monitor-demo-")))
