"""robots.txt decisions as Google's reference parser (github.com/google/robotstxt) makes them.

We never fetch a URL the reference forbids. Where we forbid one it allows, the test says so and why
(docs/data-sources.md, "robots.txt"). The cases are those of the reference's own tests, named in a comment, in our
words.
"""

from __future__ import annotations

import pytest

from data.web.robots import RobotsRules, path_as_written, robots_text

SITE = "http://foo.bar"
LINE_LIMIT = 2083 * 8 - 1  # bytes of a line the reference reads; the rest of the line is dropped


def allowed(text: str, path: str, agent: str = "FooBot") -> bool:
    return RobotsRules.from_text(text, agent).allowed(SITE + path)


@pytest.mark.parametrize(
    "text, path, agent, expected",
    [
        # ID_LineSyntax_Groups: rules outside a group are ignored; a blank line does not end a group.
        ("allow: /foo/bar/\nuser-agent: FooBot\ndisallow: /\n", "/foo/bar/", "FooBot", False),
        ("user-agent: BazBot\n\nuser-agent: FooBot\nallow: /z/\ndisallow: /\n", "/z/d", "BazBot", True),
        ("user-agent: FooBot\ndisallow: /\nallow: /x/\nuser-agent: BarBot\ndisallow: /\nallow: /y/\n",
         "/y/c", "FooBot", False),
        # ID_LineSyntax_Groups_OtherRules: a Sitemap line between two User-agent lines keeps one group.
        ("User-agent: BarBot\nSitemap: https://foo.bar/sitemap\nUser-agent: *\nDisallow: /\n", "/", "BarBot", False),
        # ID_REPLineNamesCaseInsensitive
        ("uSeR-aGeNt: FooBot\nAlLoW: /x/\ndIsAlLoW: /\n", "/a/b", "FooBot", False),
        ("uSeR-aGeNt: FooBot\nAlLoW: /x/\ndIsAlLoW: /\n", "/x/y", "FooBot", True),
        # ID_GlobalGroups_Secondary: our group replaces `*`; with neither, nothing is disallowed.
        ("user-agent: *\nallow: /\nuser-agent: FooBot\ndisallow: /\n", "/x/y", "FooBot", False),
        ("user-agent: *\nallow: /\nuser-agent: FooBot\ndisallow: /\n", "/x/y", "BarBot", True),
        ("user-agent: FooBot\nallow: /\nuser-agent: BarBot\ndisallow: /\n", "/x/y", "QuxBot", True),
        # ID_AllowDisallow_Value_CaseSensitive
        ("user-agent: FooBot\ndisallow: /X/\n", "/x/y", "FooBot", True),
        # ID_LongestMatch
        ("user-agent: FooBot\nallow: /x/page.html\ndisallow: /x/\n", "/x/", "FooBot", False),
        ("user-agent: FooBot\ndisallow: /x\nallow: /x/\n", "/x", "FooBot", False),
        ("user-agent: FooBot\ndisallow: /x\nallow: /x/\n", "/x/", "FooBot", True),
        ("user-agent: FooBot\nallow: /page\ndisallow: /*.html\n", "/page.html", "FooBot", False),
        ("User-agent: *\nDisallow: /x/\nUser-agent: FooBot\nDisallow: /y/\n", "/x/page", "FooBot", True),
        # ID_SpecialCharacters
        ("User-agent: FooBot\nDisallow: /foo/bar/quz\nAllow: /foo/*/qux\n", "/foo/bar/quz", "FooBot", False),
        ("User-agent: FooBot\nDisallow: /foo/bar$\nAllow: /foo/bar/qux\n", "/foo/bar", "FooBot", False),
        ("User-agent: FooBot\n# Disallow: /\nDisallow: /foo/quz#qux\nAllow: /\n", "/foo/quz", "FooBot", False),
        # GoogleOnly_DocumentationChecks
        ("user-agent: FooBot\ndisallow: /\nallow: /fish\n", "/catfish", "FooBot", False),
        ("user-agent: FooBot\ndisallow: /\nallow: /*.php$\n", "/filename.php?parameters", "FooBot", False),
        ("user-agent: FooBot\nallow: /$\ndisallow: /\n", "/", "FooBot", True),
        ("user-agent: FooBot\nallow: /$\ndisallow: /\n", "/page.html", "FooBot", False),
    ],
)
def test_plain_files_get_the_reference_decision(text: str, path: str, agent: str, expected: bool):
    assert allowed(text, path, agent) is expected


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending_separates_lines(newline: str):
    # ID_LinesNumbersAreCountedCorrectly: LF, CRLF and a lone CR all end a line.
    text = newline.join(["User-Agent: foo", "Allow: /some/path", "User-Agent: bar", "", "", "Disallow: /"])
    assert not allowed(text, "/x", agent="bar")
    assert allowed(text, "/x", agent="foo")


def test_a_rule_without_its_colon_still_disallows():
    # ID_LineSyntax_Line: "disallow /" is read as "disallow: /"; unknown keys stay unknown.
    assert not allowed("user-agent FooBot\ndisallow /\n", "/x/y")
    assert allowed("foo: FooBot\nbar: /\n", "/x/y")
    # Only exactly two words count: "disallow / now" is no rule.
    assert allowed("user-agent: FooBot\ndisallow / now\n", "/x/y")


@pytest.mark.parametrize("key", ["Disallow", "DISALLOW", "Disalow", "Dissallow", "Dissalow", "Diasllow", "Disallaw"])
def test_misspelled_disallow_still_disallows(key: str):
    # robots.cc accepts these spellings (kAllowFrequentTypos).
    assert not allowed(f"User-agent: FooBot\n{key}: /private\n", "/private/x")
    assert allowed(f"User-agent: FooBot\n{key}: /private\n", "/public")


def test_a_user_agent_line_names_the_agent_up_to_its_first_space():
    # GoogleOnly_AcceptUserAgentUpToFirstSpace: "Foo Bar" is the group of Foo; a crawler calling itself
    # "Foo Bar" is no product token, so only the `*` group speaks to it.
    text = "User-Agent: *\nDisallow: /\nUser-Agent: Foo Bar\nAllow: /x/\nDisallow: /\n"
    assert allowed(text, "/x/y", agent="Foo")
    assert not allowed(text, "/x/y", agent="Foo Bar")


@pytest.mark.parametrize("line", ["User-Agent: FOO BAR", "User-Agent: foo bar", "User-Agent: FoO bAr"])
@pytest.mark.parametrize("agent", ["Foo", "foo"])
def test_user_agent_values_ignore_case(line: str, agent: str):
    # ID_UserAgentValueCaseInsensitive
    text = f"{line}\nAllow: /x/\nDisallow: /\n"
    assert allowed(text, "/x/y", agent) and not allowed(text, "/a/b", agent)


def test_a_star_followed_by_words_is_the_star_group():
    # robots.cc (HandleUserAgent): "* followed by a space and more" is still everyone.
    assert not allowed("User-agent: * # everyone\nDisallow: /\n", "/x")
    assert not allowed("User-agent: * all robots\nDisallow: /\n", "/x")
    assert allowed("User-agent: *bot\nDisallow: /\n", "/x")  # not a space: no agent's name


def test_a_crawl_delay_between_user_agent_lines_keeps_one_group():
    # The reference knows no Crawl-delay: like any unknown line, it does not end the list of agents.
    text = "User-agent: FooBot\nCrawl-delay: 5\nUser-agent: other\nDisallow: /x\n"
    assert not allowed(text, "/x")
    assert RobotsRules.from_text(text, "FooBot").delay() == 5.0


def test_a_disallow_cut_at_the_line_limit_disallows_its_prefix():
    # GoogleOnly_LineTooLong: the reference drops what follows the limit, so the rule it keeps is shorter.
    prefix = "disallow: "
    long_path = "/x/" + "a" * (LINE_LIMIT - len(prefix) - len("/x/") - 1)  # the line is cut right after its "/"
    text = f"user-agent: FooBot\n{prefix}{long_path}/qux\n"
    assert allowed(text, "/fux")
    assert not allowed(text, long_path + "/fux")
    assert not allowed(text, long_path + "/qux")


def test_an_allow_cut_at_the_line_limit_allows_only_what_the_whole_line_says():
    # GoogleOnly_LineTooLong: the reference's cut Allow also allows `.../fux`; RFC 9309 (section 2.2.2) reads the
    # whole line, which allows only `.../qux`. We take the stricter reading and do not fetch `.../fux`.
    prefix = "allow: "
    path_a = "/x/" + "a" * (LINE_LIMIT - len(prefix) - len("/x/") - 1)
    path_b = "/x/" + "b" * (LINE_LIMIT - len(prefix) - len("/x/") - 1)
    text = f"user-agent: FooBot\ndisallow: /\n{prefix}{path_a}/qux\n{prefix}{path_b}/qux\n"
    assert not allowed(text, "/")
    assert allowed(text, path_a + "/qux") and allowed(text, path_b + "/qux")
    assert not allowed(text, path_b + "/fux")  # the reference allows it


def test_a_line_is_cut_in_bytes_not_characters():
    # The limit counts UTF-8 bytes: three-byte characters fill it three times as fast.
    prefix = "disallow: /"
    kept = (LINE_LIMIT - len(prefix)) // 3  # this many "ツ" fit, the rest of the line is dropped
    text = f"user-agent: FooBot\n{prefix}{'ツ' * kept}{'ツ' * 10}\n"
    assert not allowed(text, "/" + "%E3%83%84" * kept + "%E3%83%84")


@pytest.mark.parametrize(
    "rule, path, expected",
    [
        # ID_Encoding: a query that holds a URL is compared as written.
        ("Allow: /foo/bar?qux=taz&baz=http://foo.bar?tar&par", "/foo/bar?qux=taz&baz=http://foo.bar?tar&par", True),
        # A rule's non-ASCII characters are compared percent-encoded; the URL is taken as written, so a raw
        # character in it matches no rule but `*`.
        ("Allow: /foo/bar/ツ", "/foo/bar/%E3%83%84", True),
        ("Allow: /foo/bar/ツ", "/foo/bar/ツ", False),
        ("Allow: /foo/bar/%E3%83%84", "/foo/bar/%E3%83%84", True),
        ("Allow: /foo/bar/%E3%83%84", "/foo/bar/ツ", False),
        ("Allow: /foo/bar/%e3%83%84", "/foo/bar/%E3%83%84", True),  # TestMaybeEscapePattern: hex case aside
        # An escaped unreserved character is not taken as its letters: /foo/bar/%62%61%7A is not /foo/bar/baz.
        # RFC 9309 section 2.2.2 (its example table) would allow /foo/bar/baz; the stricter reading wins.
        ("Allow: /foo/bar/%62%61%7A", "/foo/bar/baz", False),
        ("Allow: /foo/bar/%62%61%7A", "/foo/bar/%62%61%7A", True),
    ],
)
def test_percent_encoding_as_the_reference_compares_it(rule: str, path: str, expected: bool):
    assert allowed(f"User-agent: FooBot\nDisallow: /\n{rule}\n", path) is expected


def test_a_disallow_written_escaped_also_covers_its_letters():
    # The reference allows /~user here (it compares `%7E` with `~` as text). RFC 9309 section 2.2.2 compares
    # both sides percent-encoded alike, so `%7E` is `~`: we take the stricter reading and do not fetch.
    assert not allowed("User-agent: FooBot\nDisallow: /%7Euser\n", "/~user/page")
    assert not allowed("User-agent: FooBot\nDisallow: /~user\n", "/%7Euser/page")


def test_allow_index_html_does_not_allow_its_directory():
    # GoogleOnly_IndexHTMLisDirectory: the reference also allows /allowed-slash/ here. RFC 9309 has no such rule
    # and the server may answer / with something else than /index.html, so we do not fetch the directory.
    text = "User-Agent: *\nAllow: /allowed-slash/index.html\nDisallow: /\n"
    assert allowed(text, "/allowed-slash/index.html", agent="foobot")
    assert not allowed(text, "/allowed-slash/", agent="foobot")  # the reference allows it
    assert not allowed(text, "/allowed-slash/index.htm", agent="foobot")
    assert not allowed(text, "/anyother-url", agent="foobot")


def test_a_colon_less_allow_does_not_widen_the_rules():
    # The reference reads "allow /x/" as an Allow and fetches /x/y; RFC 9309 (section 2.2) has no rule without
    # a colon, so the Disallow stands. We take the stricter reading.
    assert not allowed("User-agent: FooBot\nDisallow: /\nallow /x/\n", "/x/y")


@pytest.mark.parametrize(
    "url, path",
    [  # TestGetPathParamsQuery
        ("", "/"),
        ("http://www.example.com", "/"),
        ("http://www.example.com/a/b?c=http://d.e/", "/a/b?c=http://d.e/"),
        ("http://www.example.com/a/b?c=d&e=f#fragment", "/a/b?c=d&e=f"),
        ("example.com?a", "/?a"),
        ("example.com/a;b#c", "/a;b"),
        ("a/b", "/b"),
        ("//a/b/c", "/b/c"),
        ("http://foo.bar/ツ?q=ü", "/ツ?q=ü"),  # as written: nothing encoded
    ],
)
def test_path_as_written(url: str, path: str):
    assert path_as_written(url) == path


def test_a_latin1_rule_disallows_the_byte_it_holds():
    """A robots.txt saved in Latin-1: `é` is the byte E9, which the reference escapes to %E9. Decoded with
    replacement characters it became %EF%BF%BD, and the URL the file forbids was fetched."""
    text = robots_text(b"User-agent: *\nDisallow: /caf\xe9\n")
    assert not allowed(text, "/caf%E9")
    assert not allowed(text, "/caf%e9/menu")
    assert allowed(text, "/cafe")
