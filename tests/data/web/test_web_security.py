"""The crawler cannot be turned inward or knocked over by one URL, and keeps secrets in URLs to itself.

Every connection here goes to loopback servers of our own (127.0.0.1, 127.0.0.2, ::1) or to none: private,
link-local and metadata addresses are only given to the classifier and to the connect-time check with a
backend that records (and never makes) connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpcore
import pytest

from data.documents import Document, SkipReport
from data.web.addresses import AddressPolicy, refusal
from data.web.config import ScrapeConfig
from data.web.fetch import Fetcher, FetchResult
from data.web.report import CrawlRow, read_crawl_report
from data.web.source import WebReader
from data.web.transport import AddressNotAllowed, GuardedBackend
from data.web.urls import check_url, load_url_list, redact
from tests.data.web.server import WebTestServer

PAGE = "html/readability/ars-1.html"
OTHER_PAGE = "html/gutenberg/alice_pg11-h.htm"


def fetch_all(urls: list[str], config: ScrapeConfig, cache_dir: Path) -> list[FetchResult]:
    async def run() -> list[FetchResult]:
        async with Fetcher(config, cache_dir) as fetcher:
            return list(await asyncio.gather(*(fetcher.fetch(u) for u in urls)))

    return asyncio.run(run())


def read_stage(urls: list[str], config: ScrapeConfig, tmp_path: Path, urls_file: Path | None = None
               ) -> tuple[list[Document], dict[str, CrawlRow], SkipReport]:
    report = SkipReport(source="custom-scrape")
    reader = WebReader(urls, urls_file=urls_file, config=config, cache_dir=tmp_path / "cache",
                       report_path=tmp_path / "crawl.json")
    docs = list(reader.documents(report))
    return docs, {row.item: row for row in read_crawl_report(tmp_path / "crawl.json").rows}, report


def loopback_listener(address: str) -> socket.socket:
    """A socket listening on `address` that records whether anyone connected (it never accepts)."""
    listener = socket.socket()
    listener.bind((address, 0))
    listener.listen(8)
    listener.setblocking(False)
    return listener


def was_connected(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.fixture
def second_server(shared: Path) -> Iterator[WebTestServer]:
    """A test server on 127.0.0.2: the one address a test allows."""
    with WebTestServer(shared, bind="127.0.0.2") as server:
        yield server


def ipv6_loopback_works() -> str:
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return f"cannot bind ::1 here ({error})"
    return ""


@pytest.fixture
def ipv6_server(shared: Path) -> Iterator[WebTestServer]:
    why = ipv6_loopback_works()
    if why:
        pytest.skip(f"no IPv6 loopback: {why}")
    with WebTestServer(shared, bind="::1") as server:
        yield server


# -- 1. one URL never stops the stage ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:0/x", "http://127.0.0.1:65536/x", "http://example.org:99999/"])
def test_ports_outside_1_65535_are_bad_urls(url: str):
    normalised, reason, detail = check_url(url)
    assert normalised is None and reason == "invalid-url" and "outside 1-65535" in detail


def test_bad_ports_and_ipv6_literals_are_rows_and_the_stage_goes_on(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path
):
    urls = [
        "http://127.0.0.1:70000/files/x",
        "http://127.0.0.1:0/files/x",
        server.url("/redirect?to=http://127.0.0.1:99999/x"),
        "http://[2001:db8::1]/x",  # documentation address: refused before any connection
        server.url("/redirect?to=http://[2001:db8::1]:8080/y"),
        server.file_url(PAGE),
        server.file_url(OTHER_PAGE),
    ]
    docs, rows, _ = read_stage(urls, fast_config, tmp_path)
    assert [d.id for d in docs] == [server.file_url(PAGE), server.file_url(OTHER_PAGE)]
    too_high = rows["urls[0]: http://127.0.0.1:70000/files/x"]
    assert (too_high.status, too_high.reason) == ("skipped", "invalid-url") and "outside 1-65535" in too_high.detail
    assert rows["urls[1]: http://127.0.0.1:0/files/x"].reason == "invalid-url"
    assert rows[urls[2]].reason == "invalid-redirect" and "99999" in rows[urls[2]].detail
    assert rows["http://[2001:db8::1]/x"].reason == "address-not-allowed"
    assert rows[urls[4]].reason == "address-not-allowed"
    assert rows[urls[4]].final_url == "http://[2001:db8::1]:8080/y"


def test_the_fetcher_refuses_bad_ports_it_is_handed_directly(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path
):
    results = fetch_all(["http://127.0.0.1:70000/x", "http://127.0.0.1:0/x", server.file_url(PAGE)], fast_config,
                        tmp_path)
    assert [(r.status, r.reason) for r in results] == [("failed", "invalid-url")] * 2 + [("ok", "")]


def test_an_unexpected_error_in_one_url_is_that_urls_row(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """A bug met by one URL (injected here: what it is does not matter) fails that URL alone, with its type."""
    handle = Fetcher._handle

    async def buggy_handle(self, url, response, cached):
        if "bbc-1" in url:
            raise KeyError("a crawler bug")
        return await handle(self, url, response, cached)

    monkeypatch.setattr(Fetcher, "_handle", buggy_handle)
    urls = [server.file_url(PAGE), server.file_url("html/readability/bbc-1.html"), server.file_url(OTHER_PAGE)]
    with caplog.at_level(logging.WARNING, logger="data.web.fetch"):
        docs, rows, report = read_stage(urls, fast_config, tmp_path)
    assert [d.id for d in docs] == [urls[0], urls[2]]
    broken = rows[urls[1]]
    assert (broken.status, broken.reason) == ("failed", "unexpected-error")
    assert broken.detail.startswith("KeyError: 'a crawler bug'")
    assert report.counts["unexpected-error"] == 1
    assert any("bbc-1" in r.getMessage() and r.exc_info for r in caplog.records)  # the traceback is logged


def test_ipv6_server_and_a_redirect_to_it(
    server: WebTestServer, ipv6_server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path
):
    config = fast_config.model_copy(update={"allow_private": ["127.0.0.1", "::1"]})
    direct = ipv6_server.file_url(PAGE)
    assert direct.startswith("http://[::1]:")
    redirected = server.url(f"/redirect?to={ipv6_server.file_url(OTHER_PAGE)}")
    docs, rows, _ = read_stage([direct, redirected, server.file_url("pdf/sf-001-minimal-document.pdf")], config,
                               tmp_path)
    assert [d.id for d in docs] == [direct, redirected, server.file_url("pdf/sf-001-minimal-document.pdf")]
    assert rows[redirected].final_url == ipv6_server.file_url(OTHER_PAGE)
    assert [e.path for e in ipv6_server.requests("/robots.txt")] == ["/robots.txt"]  # one origin, read once


# -- 2. not turned inward ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
        ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"), ("100.127.255.254", "shared (CGNAT)"),
        ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback (as ::ffff:7f00:1)"),
        ("::ffff:169.254.169.254", "link-local (as ::ffff:a9fe:a9fe)"),
        ("64:ff9b::a9fe:a9fe", "link-local (as 64:ff9b::a9fe:a9fe)"),  # NAT64 of the metadata address
        ("64:ff9b::7f00:1", "loopback (as 64:ff9b::7f00:1)"),
        ("2002:a00:1::", "private (as 2002:a00:1::)"),  # 6to4 of 10.0.0.1
        ("192.0.2.1", "private"),  # documentation
        ("fec0::1", "site-local"),  # deprecated, still routed inside some networks
    ],
)
def test_non_public_addresses_are_classified(address: str, kind: str):
    assert refusal(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str):
    assert refusal(ipaddress.ip_address(address)) is None


def test_allow_list_takes_addresses_networks_and_names():
    policy = AddressPolicy.from_setting(["127.0.0.2", "10.0.0.0/8", "Wiki.Intranet"])
    assert policy.refuses("x", ipaddress.ip_address("127.0.0.2")) is None
    assert policy.refuses("x", ipaddress.ip_address("127.0.0.3")) == "loopback"
    assert policy.refuses("x", ipaddress.ip_address("10.9.9.9")) is None
    assert policy.refuses("x", ipaddress.ip_address("::ffff:10.9.9.9")) is None  # the same address, mapped
    assert policy.refuses("wiki.intranet", ipaddress.ip_address("192.168.0.5")) is None
    assert policy.refuses("x", ipaddress.ip_address("192.168.0.5")) == "private"
    assert AddressPolicy.from_setting(True).refuses("x", ipaddress.ip_address("169.254.169.254")) is None
    with pytest.raises(ValueError, match="allow_private.*neither an address"):
        ScrapeConfig(allow_private=["http://10.0.0.1/admin"])


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands for the network: records every connection asked of it and makes none."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.calls.append((host, port))
        raise httpcore.ConnectError("recording backend: no connection made")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.mark.parametrize("host", ["169.254.169.254", "10.0.0.1", "192.168.0.1", "100.64.0.1", "[::ffff:a9fe:a9fe]",
                                  "fd00::1", "2130706433", "0x7f.1", "127.1", "localhost", "0.0.0.0"])
def test_refused_before_any_connection(host: str):
    inner = RecordingBackend()
    backend = GuardedBackend(AddressPolicy(), inner)
    with pytest.raises(AddressNotAllowed, match="scrape.allow_private"):
        asyncio.run(backend.connect_tcp(host.strip("[]"), 80, timeout=2))
    assert inner.calls == []


def test_the_checked_address_is_the_one_connected_to():
    """A name is resolved once and the connection goes to the address checked, not to the name again."""
    inner = RecordingBackend()
    backend = GuardedBackend(AddressPolicy.from_setting(["127.0.0.1"]), inner)
    with pytest.raises(httpcore.ConnectError, match="recording backend"):
        asyncio.run(backend.connect_tcp("localhost", 8123, timeout=2))
    assert inner.calls and all(host == "127.0.0.1" for host, _ in inner.calls)


def test_loopback_in_any_spelling_is_refused_by_default(server: WebTestServer, tmp_path: Path):
    """The default settings refuse the test server itself, however its address is written."""
    config = ScrapeConfig(per_host_delay=0.0, connect_timeout=2, read_timeout=2, url_deadline=3, retries=0)
    path = f"/files/{PAGE}"
    urls = [f"http://{host}:{server.port}{path}" for host in
            ("127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]")]
    results = fetch_all(urls, config, tmp_path)
    assert [(r.status, r.reason) for r in results] == [("skipped", "address-not-allowed")] * len(urls)
    assert "loopback" in results[0].detail and "scrape.allow_private" in results[0].detail
    assert server.requests() == []  # not even robots.txt was asked for


def test_redirect_to_a_loopback_address_not_allowed_is_refused_without_connecting(
    second_server: WebTestServer, tmp_path: Path
):
    listener = loopback_listener("127.0.0.3")
    port = listener.getsockname()[1]
    try:
        config = ScrapeConfig(per_host_delay=0.0, connect_timeout=2, read_timeout=2, url_deadline=3, retries=0,
                              min_chars=100, allow_private=["127.0.0.2"])
        inward = second_server.url(f"/redirect?to=http://127.0.0.3:{port}/secret")
        named = second_server.url(f"/redirect?to=http://localhost:{port}/secret")
        good = second_server.file_url(PAGE)
        docs, rows, report = read_stage([inward, named, good], config, tmp_path)
        assert not was_connected(listener)
    finally:
        listener.close()
    assert [d.id for d in docs] == [good]
    for url in (inward, named):
        assert (rows[url].status, rows[url].reason) == ("skipped", "address-not-allowed"), rows[url]
        assert "loopback" in rows[url].detail
    assert report.counts["address-not-allowed"] == 2


# -- 4. secrets in URLs ------------------------------------------------------------------------------------------


def test_user_info_is_redacted_everywhere_it_is_stored_or_shown(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    secret = "s3cr3t-pw"
    with_secret = server.file_url(PAGE).replace("http://", f"http://alice:{secret}@")
    failing = server.url("/status?code=404").replace("http://", f"http://bob:{secret}@")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{with_secret}\n{failing}\nftp://carol:{secret}@example.org/file\n", encoding="utf-8")
    with caplog.at_level(logging.DEBUG):
        docs, rows, report = read_stage([], fast_config, tmp_path, urls_file=listing)
    assert [d.id for d in docs] == [redact(with_secret)] and "***@" in docs[0].id
    assert rows[redact(failing)].reason == "http-404"
    stored = [p.read_text(encoding="utf-8", errors="replace") for p in [tmp_path / "crawl.json",
                                                                        *(tmp_path / "cache").rglob("*.json")]]
    assert len(stored) == 2 and not [text for text in stored if secret in text]
    assert secret not in json.dumps(report.as_dict()) + caplog.text
    assert secret not in repr(docs[0].id)


def test_lines_that_are_not_urls_are_shown_cut_short(tmp_path: Path):
    listing = tmp_path / "urls.txt"
    secret_file_line = "root:x:0:0:" + "A" * 5000
    listing.write_text(f"{secret_file_line}\nhttp://ok.example/\n", encoding="utf-8")
    found = load_url_list(urls_file=listing)
    assert found.urls == ["http://ok.example/"]
    (bad,) = found.bad
    assert bad.reason == "unsupported-scheme"  # "root:" reads as a scheme
    assert len(bad.item) < 200 and len(bad.detail) < 400 and "5011 characters" in bad.item
    assert "A" * 100 not in bad.item + bad.detail


@pytest.mark.parametrize(
    "text, shown",
    [
        ("http://u:p@h/x", "http://***@h/x"),
        ("https://user@h:8080/", "https://***@h:8080/"),
        ("http://a@b@h/x?y=z@w", "http://***@h/x?y=z@w"),
        ("from http://u:p@a/ to https://v:q@b/", "from http://***@a/ to https://***@b/"),
        ("http://h/x?mail=a@b", "http://h/x?mail=a@b"),
    ],
)
def test_redact(text: str, shown: str):
    assert redact(text) == shown
