"""The Prefect UI in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): what a user sees.

Screenshots go to the test's tmp_path; the last one of each test is copied to /tmp/ui-screenshots/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.support.prefect_server import api_client

# Chromium against a served training run.
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path("/tmp/ui-screenshots")
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000  # the UI is a single-page app: give it time on a busy machine


def eval_rows(trained_run) -> list[dict]:
    lines = (trained_run.out_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def shown(value: float) -> str:
    """A loss as the tables show it (tasks.ui_publish rounds to 4 decimals)."""
    return str(round(value, 4))


@pytest.fixture(scope="module")
def browser(trained_run):
    # The runs first: Playwright's sync API keeps an event loop in this thread while the browser is open.
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright (the package only; the browser "
                    "is Debian's chromium, no `playwright install`)")
    with sync_playwright() as playwright:
        # Playwright gives each launch a new, empty profile (its own --user-data-dir) and adds --headless.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, tmp_path, request):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.shots = []  # type: ignore[attr-defined]

    def shot(name: str) -> None:
        path = tmp_path / f"{name}.png"
        page.wait_for_load_state("networkidle")  # the page's data has arrived, not just its frame
        page.screenshot(path=str(path), full_page=True)
        page.shots.append(path)

    page.shot = shot  # type: ignore[attr-defined]
    yield page
    if page.shots:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for path in page.shots:
            shutil.copy(path, SCREENSHOTS / f"{request.node.name}-{path.name}")
    page.close()


def click_tab(page, tab: str) -> None:
    page.get_by_role("tablist").first.get_by_text(tab, exact=True).click()


def open_run_tab(page, server, flow_run_id: str, tab: str) -> None:
    page.goto(f"{server.url}/runs/flow-run/{flow_run_id}")
    click_tab(page, tab)


def test_the_flow_run_page_shows_the_served_run_and_its_task_runs(page, trained_run, prefect_server):
    from playwright.sync_api import expect

    run = trained_run.flow_run
    page.goto(f"{prefect_server.url}/runs/flow-run/{run.id}")
    expect(page.get_by_text(run.name, exact=True).first).to_be_visible()
    expect(page.get_by_text("Completed").first).to_be_visible()
    page.shot("flow-run")
    click_tab(page, "Task Runs")
    for name in ("fetch-warmup", "tokenize-warmup", "shard-warmup", "train-warmup", "train-books"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    page.shot("task-runs")


def test_the_artifacts_tab_leads_to_the_tables_and_the_loss_curve(page, trained_run, prefect_server):
    from playwright.sync_api import expect

    run_id = trained_run.flow_run.id
    open_run_tab(page, prefect_server, run_id, "Artifacts")
    for key in ("tiny-data-summary", "tiny-forgetting", "tiny-loss-curve", "tiny-summary"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    page.shot("run-artifacts")

    page.get_by_text("tiny-data-summary", exact=True).first.click()
    expect(page.get_by_role("columnheader", name="train tokens")).to_be_visible()
    page.shot("data-summary")

    open_run_tab(page, prefect_server, run_id, "Artifacts")
    page.get_by_text("tiny-forgetting", exact=True).first.click()
    expect(page.get_by_role("columnheader", name="val loss books")).to_be_visible()
    books_end = [row for row in eval_rows(trained_run) if row.get("stage_end")][-1]
    expect(page.get_by_role("cell", name=shown(books_end["val_loss"]), exact=True).first).to_be_visible()
    page.shot("forgetting-table")

    open_run_tab(page, prefect_server, run_id, "Artifacts")
    page.get_by_text("tiny-loss-curve", exact=True).first.click()
    image = page.get_by_role("img", name="loss curve")
    expect(image).to_be_visible()
    # Decoded and laid out: the browser really rendered the inline PNG.
    assert image.evaluate("img => img.complete && img.naturalWidth") == 900
    page.shot("loss-curve")


def test_a_train_task_runs_page_shows_its_loss_table(page, trained_run, prefect_server):
    from playwright.sync_api import expect

    with api_client(prefect_server) as client:
        [task_run] = [t for t in client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[trained_run.flow_run.id]))) if t.name == "train-warmup"]
    page.goto(f"{prefect_server.url}/runs/task-run/{task_run.id}")
    expect(page.get_by_text("train-warmup", exact=True).first).to_be_visible()
    click_tab(page, "Artifacts")
    page.get_by_text("tiny-metrics-warmup", exact=True).first.click()
    for column in ("iteration", "train loss", "val loss", "lr", "tokens/s"):
        expect(page.get_by_role("columnheader", name=column, exact=True)).to_be_visible()
    last = [row for row in eval_rows(trained_run) if row["stage"] == "warmup"][-1]
    expect(page.get_by_role("cell", name=shown(last["val_loss"]), exact=True).first).to_be_visible()
    page.shot("metrics-table")
