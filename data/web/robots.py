"""robots.txt rules of one origin, parsed and matched as RFC 9309 says.

- Groups: one or more `User-agent` lines, then their rules; a `User-agent` line after a rule starts the next
  group. Lines we do not know (Sitemap, typos) are ignored and do not end a group.
- Our group: every group whose agent's product token (the leading letters, `-` and `_`) equals ours, ignoring
  case, merged into one; only when there is none, every `*` group, merged.
- Decision: the matching rule with the longest pattern wins, `Allow` on a tie; no matching rule allows.
  `*` matches any run of characters, a final `$` the end of the path. /robots.txt itself is always allowed.
- Paths and patterns are compared percent-encoded the same way: escapes of unreserved characters decoded,
  every other escape upper-cased, non-ASCII characters encoded as UTF-8.

Fetching robots.txt and its status handling (4xx = no rules, 5xx or unreachable = the origin is skipped)
live beside this file, in robots_fetch.py.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import httpx

# RFC 9309 asks crawlers to parse at least 500 KiB; more is cut (the rules must be near the top anyway).
MAX_ROBOTS_BYTES = 512 * 1024
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_HEX = frozenset(string.hexdigits)
# Printable ASCII that may stand in a path as is; anything else is compared percent-encoded.
_PLAIN = frozenset(chr(c) for c in range(0x21, 0x7F))
_AGENT_CHARS = frozenset(string.ascii_letters + "-_")


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str  # normalised

    def matches(self, path: str) -> bool:
        return _matches(self.pattern, path)


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)  # product tokens, lower case; "*" for everyone
    rules: list[Rule] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


@dataclass
class RobotsRules:
    rules: list[Rule]  # of our group(s), in file order
    agent: str
    crawl_delay: float | None = None

    @classmethod
    def from_text(cls, text: str, agent: str) -> RobotsRules:
        token = product_token(agent)
        groups = _parse(text)
        ours = [g for g in groups if token and token in g.agents]
        if not ours:
            ours = [g for g in groups if "*" in g.agents]
        delays = [d for g in ours for d in g.delays]
        return cls([r for g in ours for r in g.rules], agent, max(delays) if delays else None)

    @classmethod
    def allow_all(cls, agent: str) -> RobotsRules:
        return cls([], agent)

    def allowed(self, url: str) -> bool:
        raw = httpx.URL(url).raw_path.decode("ascii", errors="replace")  # path and query, as sent
        path = normalise(raw or "/")
        if path == "/robots.txt":
            return True
        best: Rule | None = None
        for rule in self.rules:
            if not rule.matches(path):
                continue
            if best is None or len(rule.pattern) > len(best.pattern) or (
                len(rule.pattern) == len(best.pattern) and rule.allow
            ):
                best = rule
        return best is None or best.allow

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
        out.append(ch if ch in _PLAIN else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
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
