"""The local HTTP server the web source's tests fetch from (real sockets on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from data.web.config import ScrapeConfig
from tests.data.web.server import WebTestServer


@pytest.fixture(scope="session")
def web_server(shared: Path) -> Iterator[WebTestServer]:
    with WebTestServer(shared) as server:
        yield server


@pytest.fixture
def server(web_server: WebTestServer) -> WebTestServer:
    """The shared server with an empty log and default robots.txt rules."""
    web_server.reset()
    return web_server


@pytest.fixture
def fast_config() -> ScrapeConfig:
    """Small timeouts and delays so failure cases end in about a second each."""
    return ScrapeConfig(
        per_host_delay=0.0,
        connect_timeout=2.0,
        read_timeout=2.0,
        url_deadline=3.0,
        retries=2,
        backoff=0.05,
        backoff_max=0.2,
        max_retry_after=5.0,
        max_html_bytes=2_000_000,
        max_pdf_bytes=5_000_000,
        extract_timeout=10.0,
        min_chars=100,
        allow_private=["127.0.0.1"],  # the test server; other loopback addresses stay refused
    )
