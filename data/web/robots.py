"""robots.txt rules of one origin, read twice: as RFC 9309 says and as Google's reference parser does.

A URL is fetched only when both readings allow it. The reference parser (github.com/google/robotstxt, robots.cc)
is what sites test their files against, and it forbids some URLs that a strict RFC reading allows (a rule
written without its colon, a line cut at its length limit); the RFC in turn forbids some that the reference
allows (an escaped `%7E` rule against a path with `~`). A polite crawler takes the stricter of the two.

The RFC 9309 reading:
- Groups: one or more `User-agent` lines, then their rules; a `User-agent` line after a rule starts the next
  group. Lines we do not know (Sitemap, typos) are ignored and do not end a group.
- Our group: every group whose agent's product token (the leading letters, `-` and `_`) equals ours, ignoring
  case, merged into one; only when there is none, every `*` group, merged.
- Decision: the matching rule with the longest pattern wins, `Allow` on a tie; no matching rule allows.
  `*` matches any run of characters, a final `$` the end of the path. /robots.txt itself is always allowed.
- Paths and patterns are compared percent-encoded the same way: escapes of unreserved characters decoded,
  every other escape upper-cased, non-ASCII characters encoded as UTF-8.

The reference reading (what robots.cc does, in our words): the same groups and decision, but lines are cut
after 16,663 bytes; a line without a colon counts when it is exactly two words (`disallow /`); keys are matched
by their start and common misspellings (`Disalow`) count; `User-agent: * anything` is the `*` group; our agent
is compared whole (up to its first `/`), so `Foo Bar` is no group's name; only a pattern's raw non-ASCII bytes
are escaped and its escapes upper-cased, and the URL's path is compared as written, never re-encoded.
Its one rule that allows more than the file says, `Allow: /dir/index.html` also allowing `/dir/`, is not
followed (docs/data-sources.md, robots.txt).

Fetching robots.txt and its status handling (4xx = no rules, 5xx or unreachable = the origin is skipped)
live beside this file, in robots_fetch.py.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

# RFC 9309 asks crawlers to parse at least 500 KiB; more is cut (the rules must be near the top anyway).
MAX_ROBOTS_BYTES = 512 * 1024
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_HEX = frozenset(string.hexdigits)
# Printable ASCII that may stand in a path as is; anything else is compared percent-encoded.
_PLAIN = frozenset(chr(c) for c in range(0x21, 0x7F))
_AGENT_CHARS = frozenset(string.ascii_letters + "-_")

# The reference parser reads a line into a buffer of 2083 * 8 bytes (eight times the longest URL browsers took)
# with room for a final NUL, and drops the rest of the line.
_REFERENCE_LINE_BYTES = 2083 * 8 - 1
_ASCII_SPACE = b" \t\n\v\f\r"  # what the reference strips around keys and values
# Keys as the reference recognises them: by their start, ignoring case, common misspellings included.
_REFERENCE_KEYS = (
    ("user-agent", (b"user-agent", b"useragent", b"user agent")),
    ("allow", (b"allow",)),
    ("disallow", (b"disallow", b"dissallow", b"dissalow", b"disalow", b"diasllow", b"disallaw")),
)
_TWO_WORDS = re.compile(rb"([^ \t]+)[ \t]+([^ \t]+)")  # `disallow /`: a rule whose colon was forgotten


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str  # normalised (RFC 9309 reading) or escaped as the reference does (reference reading)

    def matches(self, path: str) -> bool:
        return _matches(self.pattern, path)


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)  # product tokens, lower case; "*" for everyone
    rules: list[Rule] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


@dataclass
class RobotsRules:
    rules: list[Rule]  # of our group(s) as RFC 9309 reads the file, in file order
    agent: str
    crawl_delay: float | None = None
    reference_rules: list[Rule] = field(default_factory=list)  # of our group(s) as the reference reads it

    @classmethod
    def from_text(cls, text: str, agent: str) -> RobotsRules:
        token = product_token(agent)
        groups = _parse(text)
        ours = [g for g in groups if token and token in g.agents]
        if not ours:
            ours = [g for g in groups if "*" in g.agents]
        delays = [d for g in ours for d in g.delays]
        rules = [r for g in ours for r in g.rules]
        return cls(rules, agent, max(delays) if delays else None, _reference_rules(text, agent))

    @classmethod
    def allow_all(cls, agent: str) -> RobotsRules:
        return cls([], agent)

    def allowed(self, url: str) -> bool:
        """Whether both readings let us fetch `url` (RFC 9309 section 2.2.2 keeps /robots.txt always allowed)."""
        raw = httpx.URL(url).raw_path.decode("ascii", errors="replace")  # path and query, as sent
        path = normalise(raw or "/")
        if path == "/robots.txt":
            return True
        return _decide(self.rules, path) and _decide(self.reference_rules, path_as_written(url))

    def delay(self) -> float | None:
        """Seconds between requests the site asks of us (Crawl-delay, or Request-rate as seconds per request)."""
        return self.crawl_delay


def product_token(agent: str) -> str:
    """`curriculum-gpt` of `curriculum-GPT/0.1 (+https://...)`, lower case: what a User-agent line names."""
    text = agent.strip()
    if text == "*":
        return "*"
    end = 0
    while end < len(text) and text[end] in _AGENT_CHARS:
        end += 1
    return text[:end].lower()


def path_as_written(url: str) -> str:
    """The path, parameters and query of `url` character for character, "/" when it has none: what the reference
    parser compares its patterns with (it expects the caller to have percent-encoded the URL, and encodes nothing).
    """
    start = 2 if url.startswith("//") else 0
    first = _first_of(url, "/?;", start)
    scheme = url.find("://", start)
    if scheme != -1 and (first == -1 or scheme < first):  # a `://` inside the path or query names no scheme
        start = scheme + 3
    begin = _first_of(url, "/?;", start)
    fragment = url.find("#", start)
    if begin == -1 or -1 < fragment < begin:
        return "/"
    path = url[begin : fragment if fragment != -1 else len(url)]
    return path if path.startswith("/") else "/" + path


def _first_of(text: str, chars: str, start: int) -> int:
    found = [i for i in (text.find(c, start) for c in chars) if i != -1]
    return min(found) if found else -1


def _reference_escape(pattern: bytes) -> str:
    """A rule's pattern as the reference parser compares it: bytes outside ASCII percent-encoded, the hex digits
    of existing escapes upper-cased, nothing decoded (`/%62%61%7A` stays and is not `/baz`)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(b"%", i) and i + 2 < len(pattern) and all(chr(b) in _HEX for b in pattern[i + 1 : i + 3]):
            out.append(pattern[i : i + 3].decode("ascii").upper())
            i += 3
            continue
        out.append(f"%{pattern[i]:02X}" if pattern[i] >= 0x80 else chr(pattern[i]))
        i += 1
    return "".join(out)


def normalise(path: str) -> str:
    """One spelling per path: %-escapes of unreserved characters decoded, other escapes upper case,
    characters that may not stand in a URL (non-ASCII, spaces, controls) percent-encoded as UTF-8."""
    out: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "%" and i + 2 < len(path) and path[i + 1] in _HEX and path[i + 2] in _HEX:
            byte = int(path[i + 1 : i + 3], 16)
            out.append(chr(byte) if chr(byte) in _UNRESERVED else f"%{byte:02X}")
            i += 3
            continue
        out.append(ch if ch in _PLAIN else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape")))
        i += 1
    return "".join(out)


def _matches(pattern: str, path: str) -> bool:
    """Whether `pattern` (with `*` and a final `$`) matches the start of `path`.

    Tracks the set of path positions reachable so far instead of backtracking, so a hostile pattern such as
    `/*a*a*a*a*b` costs pattern length x path length, never an exponential search.
    """
    positions = [0]
    for i, ch in enumerate(pattern):
        if ch == "$" and i == len(pattern) - 1:
            return positions[-1] == len(path)
        if ch == "*":
            positions = list(range(positions[0], len(path) + 1))
            continue
        positions = [p + 1 for p in positions if p < len(path) and path[p] == ch]
        if not positions:
            return False
    return True


def _decide(rules: list[Rule], path: str) -> bool:
    """The matching rule with the longest pattern decides, `Allow` on a tie; no matching rule allows."""
    best: Rule | None = None
    for rule in rules:
        if not rule.matches(path):
            continue
        if best is None or len(rule.pattern) > len(best.pattern) or (
            len(rule.pattern) == len(best.pattern) and rule.allow
        ):
            best = rule
    return best is None or best.allow


def _parse(text: str) -> list[_Group]:
    groups: list[_Group] = []
    current: _Group | None = None
    in_agents = False  # the previous line that counted was a User-agent line
    for line in text.removeprefix("\ufeff").splitlines():  # a BOM would hide the first User-agent line
        key, sep, value = line.split("#", 1)[0].partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in ("user-agent", "useragent", "user agent"):
            if current is None or not in_agents:
                current = _Group()
                groups.append(current)
            current.agents.append(product_token(value))
            in_agents = True
        elif key in ("allow", "disallow") and current is not None:
            in_agents = False
            if value:  # an empty Disallow allows everything: it is no rule at all
                current.rules.append(Rule(key == "allow", normalise(value)))
        elif key in ("crawl-delay", "request-rate") and current is not None:
            in_agents = False
            seconds = _delay_seconds(key, value)
            if seconds is not None:
                current.delays.append(seconds)
        # Anything else (Sitemap, unknown keys, rules before any User-agent) is ignored where it stands.
    return groups


def _delay_seconds(key: str, value: str) -> float | None:
    try:
        if key == "crawl-delay":
            seconds = float(value)
        else:  # Request-rate: n/s, requests per seconds
            requests, _, per = value.partition("/")
            seconds = float(per.rstrip("smhSMH") or "nan") / float(requests)
    except (ValueError, ZeroDivisionError):
        return None
    return seconds if seconds >= 0 and seconds == seconds else None


def robots_text(body: bytes) -> str:
    """A robots.txt body as text for `RobotsRules.from_text`: UTF-8, with any byte that is not UTF-8 (a Latin-1 `é`)
    kept as itself (surrogateescape), so a rule's pattern escapes to the byte the file holds (`%E9`), as the
    reference parser's does, and not to a replacement character that no URL matches."""
    return body.decode("utf-8", errors="surrogateescape")


def _reference_records(text: str) -> Iterator[tuple[str, bytes]]:
    """(key, value) of each line the reference parser accepts, key one of `_REFERENCE_KEYS` or "other".

    Works on the UTF-8 bytes, as the reference does: its line limit and its escapes count bytes.
    """
    data = text.removeprefix("\ufeff").encode("utf-8", "surrogateescape")
    for line in re.split(rb"\r\n|\r|\n", data):
        line = line[:_REFERENCE_LINE_BYTES].split(b"#", 1)[0].strip(_ASCII_SPACE)
        key, colon, value = line.partition(b":")
        if not colon:
            two_words = _TWO_WORDS.fullmatch(line)
            if two_words is None:
                continue  # one word, or three and more: no record
            key, value = two_words.groups()
        key, value = key.strip(_ASCII_SPACE).lower(), value.strip(_ASCII_SPACE)
        if not key:
            continue
        yield next((name for name, starts in _REFERENCE_KEYS if key.startswith(starts)), "other"), value


def _reference_rules(text: str, agent: str) -> list[Rule]:
    """Our rules as the reference parser picks them: every group naming our agent, else every `*` group."""
    ours = agent.partition("/")[0].lower()  # a User-Agent header names us by its first product
    specific: list[Rule] = []
    everyone: list[Rule] = []
    named_anywhere = in_ours = in_star = after_rule = False
    for key, value in _reference_records(text):
        if key == "user-agent":
            if after_rule:  # a User-agent line after a rule starts the next group
                in_ours = in_star = after_rule = False
            if value[:1] == b"*" and (len(value) == 1 or value[1:2].isspace()):
                in_star = True  # `* anything` is still the `*` group
            elif product_token(value.decode("ascii", errors="replace")) == ours:
                in_ours = named_anywhere = True
        elif key in ("allow", "disallow") and (in_ours or in_star):
            after_rule = True
            if value:  # an empty pattern decides nothing
                (specific if in_ours else everyone).append(Rule(key == "allow", _reference_escape(value)))
        # Other lines (Sitemap, Crawl-delay, unknown keys) neither count as rules nor end a group.
    return specific if named_anywhere else everyone
