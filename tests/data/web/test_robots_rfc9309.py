"""robots.txt decisions as RFC 9309 makes them, one rule at a time, and the crawler obeying them on a real server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from data.web.config import ScrapeConfig
from data.web.fetch import AGENT, Fetcher, user_agent
from data.web.robots import RobotsRules, normalise, product_token
from tests.data.web.server import WebTestServer

SITE = "https://example.org"


def allowed(text: str, path: str, agent: str = AGENT) -> bool:
    return RobotsRules.from_text(text, agent).allowed(SITE + path)


@pytest.mark.parametrize(
    "rules, path, expected",
    [
        # The longest matching pattern wins, whatever the order of the lines.
        ("Allow: /a/b\nDisallow: /a", "/a/b/c", True),
        ("Disallow: /a\nAllow: /a/b", "/a/b/c", True),
        ("Allow: /a\nDisallow: /a/b", "/a/b/c", False),
        ("Disallow: /a/b\nAllow: /a", "/a/x", True),
        # Equal length: allow wins the tie.
        ("Disallow: /page\nAllow: /page", "/page", True),
        ("Allow: /pa*\nDisallow: /pag", "/page", True),
        # No matching rule, or an empty Disallow: allowed.
        ("Disallow: /private", "/public", True),
        ("Disallow:", "/anything", True),
        # /robots.txt itself is always allowed.
        ("Disallow: /", "/robots.txt", True),
    ],
)
def test_longest_match_and_allow_on_ties(rules: str, path: str, expected: bool):
    assert allowed("User-agent: *\n" + rules + "\n", path) is expected


@pytest.mark.parametrize(
    "pattern, path, expected",
    [
        ("/*.pdf$", "/docs/report.pdf", False),
        ("/*.pdf$", "/docs/report.pdf?x=1", True),  # `$` anchors the end: a query follows
        ("/*.pdf", "/docs/report.pdf?x=1", False),
        ("/a*b*c", "/a-x-b-y-c-z", False),
        ("/a*b*c", "/a-x-c-y-b", True),
        ("/fish$", "/fish", False),
        ("/fish$", "/fishes", True),
        ("/*", "/", False),
        ("*/secret", "/deep/secret/x", False),  # a pattern may start with `*`
        ("/x*", "/x*literal", False),
        ("/a$b", "/a$b", False),  # `$` only anchors at the end; elsewhere it is a character
    ],
)
def test_wildcard_and_end_anchor(pattern: str, path: str, expected: bool):
    assert allowed(f"User-agent: *\nDisallow: {pattern}\n", path) is expected


def test_hostile_pattern_is_matched_in_bounded_time():
    pattern = "/" + "*a" * 2000 + "b"
    started = time.monotonic()
    assert allowed(f"User-agent: *\nDisallow: {pattern}\n", "/" + "a" * 3000) is True
    assert time.monotonic() - started < 10  # a backtracking regex would not end


@pytest.mark.parametrize(
    "line, ours",
    [
        ("User-agent: curriculum-gpt", True),
        ("User-agent: Curriculum-GPT", True),  # case-insensitive
        ("user-agent: CURRICULUM-GPT/0.1", True),  # the product token, version ignored
        ("User-agent: curriculum-gpt-images", False),  # another crawler, not a substring match
        ("User-agent: gpt", False),
        ("User-agent: curriculum", False),
    ],
)
def test_agent_is_matched_on_its_product_token(line: str, ours: bool):
    text = f"{line}\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    assert allowed(text, "/page", agent=user_agent("https://example.org/contact")) is not ours


def test_product_token():
    assert product_token(user_agent("https://x")) == "curriculum-gpt"
    assert product_token("Googlebot/2.1 (+http://www.google.com/bot.html)") == "googlebot"


def test_specific_group_replaces_the_star_group():
    text = "User-agent: *\nDisallow: /\n\nUser-agent: curriculum-gpt\nDisallow: /private\n"
    assert allowed(text, "/public") and not allowed(text, "/private")
    assert not allowed(text, "/public", agent="other-bot")


def test_groups_for_the_same_agent_are_merged():
    text = (
        "User-agent: curriculum-gpt\nDisallow: /a\n\n"
        "User-agent: other\nDisallow: /b\n\n"
        "User-agent: CURRICULUM-GPT\nDisallow: /c\n"
    )
    assert not allowed(text, "/a") and not allowed(text, "/c") and allowed(text, "/b")
    stars = "User-agent: *\nDisallow: /x\n\nUser-agent: *\nDisallow: /y\n"
    assert not allowed(stars, "/x") and not allowed(stars, "/y")


def test_several_agents_share_one_group():
    text = "User-agent: other\nUser-agent: curriculum-gpt\nDisallow: /shared\n"
    assert not allowed(text, "/shared")


def test_unknown_lines_do_not_end_a_group():
    text = (
        "User-agent: curriculum-gpt\n"
        "Sitemap: https://example.org/sitemap.xml\n"
        "Disallow: /a\n"
        "Noindex: /whatever\n"
        "Disallow: /b   # a comment\n"
        "nonsense without colon\n"
        "Disallow: /c\n"
    )
    assert not allowed(text, "/a") and not allowed(text, "/b") and not allowed(text, "/c")
    assert allowed(text, "/d")
    # An unknown line between two User-agent lines keeps them in one group.
    assert not allowed("User-agent: other\nFoo: bar\nUser-agent: curriculum-gpt\nDisallow: /x\n", "/x")


def test_rules_before_any_user_agent_are_ignored():
    assert allowed("Disallow: /\nUser-agent: other\nDisallow: /\n", "/page")


@pytest.mark.parametrize(
    "pattern, path, expected",
    [
        ("/%7Euser", "/~user/x", False),  # an escaped unreserved character is that character
        ("/~user", "/%7euser/x", False),
        ("/a%2fb", "/a%2Fb", False),  # a reserved escape stays escaped, hex case aside
        ("/a%2Fb", "/a/b", True),  # ...and is not the slash it encodes
        ("/grüße", "/gr%C3%BC%C3%9Fe", False),  # non-ASCII: compared as UTF-8 escapes
        ("/gr%c3%bc%c3%9fe", "/grüße", False),
    ],
)
def test_percent_encoding_is_normalised_on_both_sides(pattern: str, path: str, expected: bool):
    assert allowed(f"User-agent: *\nDisallow: {pattern}\n", path) is expected


def test_normalise():
    assert normalise("/%7e%41%2f%2F%zz ü") == "/~A%2F%2F%zz%20%C3%BC"


def test_crawl_delay_of_our_group():
    assert RobotsRules.from_text("User-agent: *\nCrawl-delay: 2.5\nDisallow: /x\n", AGENT).delay() == 2.5
    text = "User-agent: *\nCrawl-delay: 9\n\nUser-agent: curriculum-gpt\nCrawl-delay: 1\n"
    assert RobotsRules.from_text(text, AGENT).delay() == 1.0
    assert RobotsRules.from_text("User-agent: *\nCrawl-delay: soon\n", AGENT).delay() is None


def test_the_crawler_obeys_longest_match_and_wildcards(server: WebTestServer, fast_config: ScrapeConfig,
                                                      tmp_path: Path):
    server.state.robots["127.0.0.1"] = (
        "User-agent: *\nDisallow: /\n\n"
        "User-agent: Curriculum-GPT\n"
        "Disallow: /files/\n"
        "Allow: /files/html/readability/\n"
        "Disallow: /files/html/readability/*.html$\n"
        "Allow: /files/html/readability/ars-1.html$\n"
    )
    urls = [
        server.file_url("html/readability/ars-1.html"),  # longest rule: allowed
        server.file_url("html/readability/cnn.html"),  # *.html$: disallowed
        server.file_url("html/gutenberg/alice_pg11-h.htm"),  # /files/: disallowed
    ]

    async def run() -> list:
        async with Fetcher(fast_config, tmp_path) as fetcher:
            return list(await asyncio.gather(*(fetcher.fetch(u) for u in urls)))

    results = asyncio.run(run())
    assert [(r.status, r.reason) for r in results] == [
        ("ok", ""), ("skipped", "robots-disallowed"), ("skipped", "robots-disallowed")
    ]
    assert [e.path for e in server.requests("/files/")] == ["/files/html/readability/ars-1.html"]


def test_a_byte_order_mark_does_not_hide_the_first_group():
    """Saved by a Windows editor, a robots.txt may start with a BOM; its first User-agent line still counts."""
    assert not allowed("\ufeffUser-agent: *\nDisallow: /", "/x")
    assert allowed("\ufeffUser-agent: *\nDisallow: /private", "/x")
