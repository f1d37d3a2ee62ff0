"""robots.txt rules of one origin, read with the standard library's parser.

Status handling follows RFC 9309: a 4xx robots.txt means no rules (crawl everything); a 5xx or an
unreachable server means "assume everything is disallowed", which here means the origin's URLs are
skipped with that reason rather than fetched.
"""

from __future__ import annotations

import urllib.robotparser
from dataclasses import dataclass

# RFC 9309 asks crawlers to parse at least 500 KiB; more is cut (the rules must be near the top anyway).
MAX_ROBOTS_BYTES = 512 * 1024


@dataclass
class RobotsRules:
    parser: urllib.robotparser.RobotFileParser
    agent: str

    @classmethod
    def from_text(cls, text: str, agent: str) -> RobotsRules:
        parser = urllib.robotparser.RobotFileParser()
        parser.parse(text.splitlines())
        return cls(parser, agent)

    @classmethod
    def allow_all(cls, agent: str) -> RobotsRules:
        return cls.from_text("", agent)

    def allowed(self, url: str) -> bool:
        return self.parser.can_fetch(self.agent, url)

    def delay(self) -> float | None:
        """Seconds between requests the site asks of us (Crawl-delay, or Request-rate as seconds per request)."""
        delays = []
        crawl_delay = self.parser.crawl_delay(self.agent)
        if crawl_delay is not None:
            delays.append(float(crawl_delay))
        rate = self.parser.request_rate(self.agent)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None
