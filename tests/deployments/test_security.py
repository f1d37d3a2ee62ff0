"""A Prefect server started with the settings docs/security.md recommends: foreign web origins and requests without
a CSRF token are refused, while the Prefect client, serve.py and served runs work; served runs keep to their allowed
folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import httpx
import pytest
from prefect.client.schemas.actions import VariableCreate

from deployments.server_security import PROBE_ORIGIN, RECOMMENDED_SERVER_SETTINGS, browser_warnings
from tests.support.configs import TINY_CONFIG
from tests.support.prefect_server import api_client, start_prefect_server, trigger, wait_for_run
from tests.support.serving import start_serve

pytestmark = pytest.mark.slow
UI_ORIGIN = RECOMMENDED_SERVER_SETTINGS["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"]


@pytest.fixture(scope="module")
def hardened_server():
    with mock.patch.dict(os.environ, RECOMMENDED_SERVER_SETTINGS):
        server = start_prefect_server(Path(tempfile.mkdtemp(prefix="prefect-hardened-")))
    try:
        yield server
    finally:
        server.stop()


def test_a_foreign_origin_gets_no_cors_permission_and_the_uis_origin_does(hardened_server):
    api = hardened_server.api_url
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    foreign = httpx.options(f"{api}/flows/filter", headers={"Origin": PROBE_ORIGIN, **preflight})
    assert foreign.headers.get("access-control-allow-origin") not in ("*", PROBE_ORIGIN)
    plain = httpx.get(f"{api}/health", headers={"Origin": PROBE_ORIGIN})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    own = httpx.options(f"{api}/flows/filter", headers={"Origin": UI_ORIGIN, **preflight})
    assert own.headers.get("access-control-allow-origin") == UI_ORIGIN


def test_a_state_changing_request_without_a_csrf_token_is_refused(hardened_server):
    api = hardened_server.api_url
    refused = httpx.post(f"{api}/variables/", json={"name": "forged", "value": 1}, headers={"Origin": PROBE_ORIGIN})
    assert refused.status_code == 403 and "Missing CSRF token" in refused.text
    # What the Prefect client and the UI do: fetch a token for their client id, then send both.
    token = httpx.get(f"{api}/csrf-token", params={"client": "test-client"}).json()["token"]
    accepted = httpx.post(f"{api}/variables/", json={"name": "with_token", "value": 1},
                          headers={"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": "test-client"})
    assert accepted.status_code == 201, accepted.text
    # The UI reads this to know it must fetch tokens.
    assert httpx.get(f"{hardened_server.url}/ui-settings").json()["csrf_enabled"] is True


def test_the_prefect_client_works_with_csrf_protection(hardened_server):
    with api_client(hardened_server) as client:
        client.create_variable(VariableCreate(name="from_client", value=2))
        assert client.read_variable_by_name("from_client").value == 2


def test_browser_warnings_name_what_to_set_on_a_default_server_and_nothing_on_a_hardened_one(
        prefect_server, hardened_server):
    warnings = browser_warnings(prefect_server.api_url)
    assert len(warnings) == 2
    assert "PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true" in warnings[0]
    assert "PREFECT_SERVER_CORS_ALLOWED_ORIGINS" in warnings[1]
    assert browser_warnings(hardened_server.api_url) == []


@pytest.fixture(scope="module")
def served_hardened(hardened_server, hub_mirror, tmp_path_factory):
    # Only the serving folder is allowed: no --allow-path.
    served = start_serve(hardened_server, tmp_path_factory.mktemp("serving"),
                         {"CURRICULUM_HUB_MIRROR": str(hub_mirror)}, allow=())
    try:
        yield served
    finally:
        served.stop()


def test_serve_py_serves_a_hardened_server_without_warnings(served_hardened):
    assert "warning:" not in served_hardened.log(), served_hardened.log()[-3000:]


def test_serve_py_warns_about_a_server_with_prefects_defaults(served):
    log = served.log()
    assert "warning: the Prefect server has CSRF protection off" in log, log[-3000:]
    assert "PREFECT_SERVER_CORS_ALLOWED_ORIGINS" in log


def failed_run(served, deployment="curriculum/simple", **parameters):
    if deployment.startswith("curriculum/"):
        parameters["prepare_only"] = True
    flow_run_id, result = trigger(served.server, deployment, **parameters)
    assert result.returncode == 0 and flow_run_id, result.stdout + result.stderr
    run = wait_for_run(served.server, flow_run_id, log=served.log_path)
    assert run.state.is_failed(), f"{run.state_name}: {run.state.message}"
    with api_client(served.server) as client:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        assert client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))) == []
    return run.state.message


def test_a_served_run_with_a_config_outside_the_allowed_folders_fails_before_any_task(served_hardened, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(data_dir=tmp_path / "data"))
    message = failed_run(served_hardened, config_path=str(config))
    assert "served run refused: config_path" in message
    assert str(config.resolve()) in message and str(served_hardened.cwd.resolve()) in message
    assert "--allow-path" in message
    assert not (tmp_path / "data").exists()


def test_a_served_run_whose_override_moves_out_dir_outside_fails_before_any_task(served_hardened, tmp_path):
    inside = served_hardened.cwd / "tiny.yaml"
    inside.write_text(TINY_CONFIG.format(data_dir="out/data/tiny"))
    message = failed_run(served_hardened, config_path=str(inside),
                         overrides={"train.out_dir": str(tmp_path / ".." / "elsewhere")})
    assert "served run refused: train.out_dir" in message
    assert str((tmp_path / ".." / "elsewhere").resolve()) in message
    assert not (served_hardened.cwd / "out").exists()


def test_a_served_compare_run_with_a_versus_file_outside_the_allowed_folders_fails_before_any_task(
        served_hardened, tmp_path):
    inside = served_hardened.cwd / "tiny.yaml"
    inside.write_text(TINY_CONFIG.format(data_dir="out/data/tiny"))
    versus = tmp_path / "versus.yaml"
    versus.write_text(TINY_CONFIG.format(data_dir="out/data/tiny"))
    message = failed_run(served_hardened, "compare/simple", config_path=str(inside),
                         versus_config_path=str(versus), seeds=1)
    assert "served run refused: versus_config_path" in message
    assert str(versus.resolve()) in message and "--allow-path" in message
    assert not (served_hardened.cwd / "out").exists()


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def test_the_ui_works_with_csrf_protection(hardened_server):
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    with api_client(hardened_server) as client:
        client.create_variable(VariableCreate(name="shown_in_the_ui", value=3))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            writes = []  # the UI reads through POST .../filter: refused without a CSRF token
            page.on("response", lambda r: writes.append((r.url, r.status)) if r.request.method == "POST" else None)
            page.goto(f"{hardened_server.url}/variables")
            expect(page.get_by_text("shown_in_the_ui")).to_be_visible()
        finally:
            browser.close()
    assert writes and all(status < 400 for _, status in writes), writes
