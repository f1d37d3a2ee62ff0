"""The fetcher against a real local server: politeness, retries, deadlines, caps, redirects, sniffing, caching."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from data.web.config import ScrapeConfig
from data.web.fetch import AGENT, Fetcher, FetchResult
from tests.data.web.server import WebTestServer

PAGE = "html/readability/ars-1.html"
OTHER_PAGE = "html/gumbo/wikipedia.html"
PDF = "pdf/sf-001-minimal-document.pdf"
# What a loaded 2-core machine may add to a local fetch that takes well under a second. Upper bounds on time
# are this plus what the behaviour under test allows, and stay far below what the failure they rule out takes
# (a 3600 s Retry-After honoured, a 30 s drip or endless body read to its end).
SLACK_S = 10.0


def fetch_all(urls: list[str], config: ScrapeConfig, cache_dir: Path) -> list[FetchResult]:
    async def run() -> list[FetchResult]:
        async with Fetcher(config, cache_dir) as fetcher:
            return list(await asyncio.gather(*(fetcher.fetch(url) for url in urls)))

    return asyncio.run(run())


def fetch_one(url: str, config: ScrapeConfig, cache_dir: Path) -> FetchResult:
    return fetch_all([url], config, cache_dir)[0]


def test_good_page_and_honest_user_agent(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    result = fetch_one(server.file_url(PAGE), fast_config, tmp_path)
    assert (result.status, result.kind, result.http_status) == ("ok", "html", 200)
    assert result.n_bytes == (server.state.roots["html"] / PAGE.split("/", 1)[1]).stat().st_size
    agents = {e.headers["user-agent"] for e in server.requests()}
    assert len(agents) == 1
    agent = agents.pop()
    assert agent.startswith(f"{AGENT}/") and fast_config.contact_url in agent and "Mozilla" not in agent


def test_robots_disallow_is_obeyed_and_robots_fetched_once(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path
):
    server.state.robots["127.0.0.1"] = "User-agent: *\nDisallow: /files/html/gumbo/\n"
    server.state.robots["localhost"] = f"User-agent: {AGENT}\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    urls = [server.file_url(OTHER_PAGE), server.file_url(PAGE), server.file_url(PAGE, host="localhost")]
    blocked, allowed, blocked_for_us = fetch_all(urls, fast_config, tmp_path)
    assert (blocked.status, blocked.reason) == ("skipped", "robots-disallowed")
    assert allowed.status == "ok"
    assert (blocked_for_us.status, blocked_for_us.reason) == ("skipped", "robots-disallowed")
    assert not server.requests("/files/html/gumbo/")
    assert not server.requests("/files/", host="localhost")
    assert len(server.requests("/robots.txt", host="127.0.0.1")) == 1


def test_robots_txt_5xx_means_host_is_skipped(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    server.state.robots["localhost"] = 503
    result = fetch_one(server.file_url(PAGE, host="localhost"), fast_config, tmp_path)
    assert (result.status, result.reason) == ("failed", "robots-unavailable")
    assert not server.requests("/files/")


def test_404_fails_without_retry(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    result = fetch_one(server.url("/status?code=404"), fast_config, tmp_path)
    assert (result.status, result.reason, result.http_status) == ("failed", "http-404", 404)
    assert len(server.requests("/status")) == 1


def test_500_then_200_is_retried(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    url = server.url(f"/flaky?key=500-once&code=500&n=1&path=/files/{PAGE}")
    result = fetch_one(url, fast_config, tmp_path)
    assert (result.status, result.attempts) == ("ok", 2)
    assert [e.status for e in server.requests("/flaky")] == [500, 200]


def test_5xx_retries_are_bounded(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    url = server.url(f"/flaky?key=503-always&code=503&n=99&path=/files/{PAGE}")
    result = fetch_one(url, fast_config, tmp_path)
    assert (result.status, result.reason) == ("failed", "http-503")
    assert len(server.requests("/flaky")) == fast_config.retries + 1


def test_429_waits_for_retry_after(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    url = server.url(f"/retry-after?key=429&seconds=1&path=/files/{PAGE}")
    result = fetch_one(url, fast_config, tmp_path)
    assert result.status == "ok"
    first, second = server.requests("/retry-after")
    assert first.status == 429 and second.status == 200
    assert second.start - first.end >= 0.95  # measured by the server


def test_retry_after_beyond_the_limit_fails_fast(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    url = server.url(f"/retry-after?key=429-long&seconds=3600&path=/files/{PAGE}")
    started = time.monotonic()
    result = fetch_one(url, fast_config, tmp_path)
    assert (result.status, result.reason) == ("failed", "rate-limited")
    assert "3600" in result.detail and time.monotonic() - started < SLACK_S
    assert len(server.requests("/retry-after")) == 1  # never asked again


def test_slow_drip_body_stops_at_the_deadline(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    config = fast_config.model_copy(update={"url_deadline": 1.5})
    started = time.monotonic()
    result = fetch_one(server.url("/drip?interval=0.1&n=100000"), config, tmp_path)
    assert (result.status, result.reason) == ("failed", "deadline")
    assert time.monotonic() - started < config.url_deadline + SLACK_S


def test_endless_body_and_gzip_bomb_hit_the_size_cap(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    started = time.monotonic()
    endless, bomb = fetch_all([server.url("/endless"), server.url("/gzip-bomb")], fast_config, tmp_path)
    for result in (endless, bomb):
        assert (result.status, result.reason) == ("skipped", "too-large"), result
        assert str(fast_config.max_html_bytes) in result.detail
    assert time.monotonic() - started < SLACK_S
    assert not list(tmp_path.rglob("*.body"))  # nothing capped reaches the cache


def test_content_length_is_checked_before_reading(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    result = fetch_one(server.url("/huge-declared"), fast_config, tmp_path)
    assert (result.status, result.reason) == ("skipped", "too-large")
    assert "Content-Length" in result.detail


def test_redirects_loop_and_file_scheme_are_refused(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    loop, to_file, to_other_host = fetch_all(
        [
            server.url("/loop/a"),
            server.url("/redirect?to=file:///etc/passwd"),
            server.url("/redirect?to=" + server.file_url(PAGE, host="localhost")),
        ],
        fast_config,
        tmp_path,
    )
    assert (loop.status, loop.reason) == ("failed", "redirect-loop")
    assert (to_file.status, to_file.reason) == ("skipped", "unsupported-scheme")
    assert "file:///etc/passwd" in to_file.detail
    assert to_other_host.status == "ok" and to_other_host.final_url.startswith("http://localhost:")
    assert server.requests("/robots.txt", host="localhost")  # the new host's rules were read first


def test_too_many_redirects(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    config = fast_config.model_copy(update={"max_redirects": 1})
    hop2 = server.url("/redirect?to=/files/" + PAGE)
    result = fetch_one(server.url("/redirect?to=" + hop2), config, tmp_path)
    assert (result.status, result.reason) == ("failed", "too-many-redirects")


def test_type_is_sniffed_from_the_bytes(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    binary, pdf_as_octets, page_as_text, utf16 = fetch_all(
        [
            server.url("/binary"),
            server.file_url(PDF, type="application/octet-stream"),
            server.file_url(PAGE, type="text/plain"),
            server.file_url("hostile/html/jsoup-bom_utf16be.html"),
        ],
        fast_config,
        tmp_path,
    )
    assert (binary.status, binary.reason) == ("skipped", "not-html")
    assert (pdf_as_octets.status, pdf_as_octets.kind) == ("ok", "pdf")
    assert (page_as_text.status, page_as_text.kind) == ("ok", "html")
    assert (utf16.status, utf16.kind) == ("ok", "html")


def test_rerun_revalidates_with_conditional_get(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    urls = [server.file_url(PAGE), server.file_url(PDF)]
    first = fetch_all(urls, fast_config, tmp_path)
    second = fetch_all(urls, fast_config, tmp_path)
    assert [r.status for r in first + second] == ["ok"] * 4
    assert not any(r.revalidated for r in first) and all(r.revalidated for r in second)
    assert [r.sha256 for r in first] == [r.sha256 for r in second]
    conditional = [e for e in server.requests("/files/") if "if-none-match" in e.headers]
    assert len(conditional) == 2 and all("if-modified-since" in e.headers for e in conditional)
    assert all(e.status == 304 for e in conditional)


def test_per_host_limit_holds_on_the_server(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    config = fast_config.model_copy(update={"per_host": 2, "max_concurrency": 8})
    urls = [server.url(f"/sleep?s=0.2&path=/files/{PAGE}&n={i}") for i in range(10)]
    urls += [server.url(f"/sleep?s=0.2&path=/files/{PAGE}&n={i}", host="localhost") for i in range(10)]
    results = fetch_all(urls, config, tmp_path)
    assert all(r.status == "ok" for r in results)
    assert server.state.max_in_flight["127.0.0.1"] == 2
    assert server.state.max_in_flight["localhost"] == 2


def test_delay_between_requests_to_a_host(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    config = fast_config.model_copy(update={"per_host_delay": 0.2})
    urls = [server.file_url(PAGE, n=str(i)) for i in range(4)]
    fetch_all(urls, config, tmp_path)
    starts = sorted(e.start for e in server.requests("/files/"))
    # Measured at the server, so connection set-up jitter on a loaded machine may eat a little of the gap.
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.15


def test_crawl_delay_means_one_at_a_time(server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path):
    server.state.robots["localhost"] = "User-agent: *\nCrawl-delay: 1\n"
    urls = [server.url(f"/sleep?s=0.1&path=/files/{PAGE}&n={i}", host="localhost") for i in range(3)]
    results = fetch_all(urls, fast_config.model_copy(update={"per_host": 4}), tmp_path)
    assert all(r.status == "ok" for r in results)
    starts = sorted(e.start for e in server.requests("/sleep"))
    assert server.state.max_in_flight["localhost"] == 1
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.9


def test_unreachable_hosts_fail_fast(fast_config: ScrapeConfig, tmp_path: Path):
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    urls = [f"http://nonexistent.invalid/page{i}" for i in range(20)]
    urls += [f"http://127.0.0.1:{closed_port}/page{i}" for i in range(20)]
    started = time.monotonic()
    results = fetch_all(urls, fast_config, tmp_path)
    assert {(r.status, r.reason) for r in results} == {("failed", "host-unreachable")}
    assert time.monotonic() - started < SLACK_S
