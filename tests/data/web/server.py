"""A real HTTP server on 127.0.0.1 for the web source's tests and benchmark, with controllable misbehaviour.

It serves ../shared/corpora/{web/html, web/pdf, hostile} under /files/..., and answers these routes:

  /robots.txt                      per host name: `server.robots[host]` text, or an int status code
  /files/<html|pdf|hostile>/<rel>  the file; ETag + Last-Modified, 304 on a matching conditional GET;
                                   `?type=` overrides the Content-Type; `.gz` files go out with
                                   Content-Encoding: gzip
  /status?code=N                   that status
  /flaky?key=K&code=N&n=M&path=P   the first M requests with key K get status N, later ones get P
  /retry-after?key=K&seconds=S&path=P   the first request gets 429 + Retry-After: S, later ones P
  /sleep?s=S&path=P                waits S seconds, then serves P (to make requests overlap)
  /drip?interval=S&n=N             an HTML body, one byte every S seconds
  /endless                         an HTML body that never ends
  /gzip-bomb                       ~32 KiB of gzip that inflates to 64 MiB
  /loop/a, /loop/b                 redirect to each other
  /redirect?to=URL                 302 to URL (absolute, any scheme)
  /binary                          random bytes served as text/html
  /huge-declared                   Content-Length of 1 GB (the body never comes)

Every request is logged (host, path, request headers, start/end time, status), and requests in flight are
counted per host name, so tests measure politeness where it matters: on the server.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import mimetypes
import random
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Past what any test or bench waits for; bounds how long a handler thread can outlive its client.
MAX_DRIP_SECONDS = 30.0
FIXED_MTIME = email.utils.formatdate(1_700_000_000, usegmt=True)


@dataclass
class Logged:
    host: str
    path: str
    headers: dict[str, str]
    start: float
    end: float = 0.0
    status: int = 0


@dataclass
class ServerState:
    roots: dict[str, Path]
    robots: dict[str, str | int] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    in_flight: Counter = field(default_factory=Counter)
    max_in_flight: Counter = field(default_factory=Counter)
    hits: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    bomb: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # close-delimited bodies: an endless body is simply one that never closes

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test log is `state.log`

    def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
        state = self.server.state
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        entry = Logged(host, self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
        with state.lock:
            state.log.append(entry)
            state.in_flight[host] += 1
            state.max_in_flight[host] = max(state.max_in_flight[host], state.in_flight[host])
        try:
            entry.status = self._route(urllib.parse.urlsplit(self.path), host)
        except (BrokenPipeError, ConnectionResetError):
            entry.status = -1  # the client hung up (deadline, size cap): expected in these tests
        finally:
            entry.end = time.monotonic()
            with state.lock:
                state.in_flight[host] -= 1

    # -- routes --------------------------------------------------------------------------------

    def _route(self, url: urllib.parse.SplitResult, host: str) -> int:
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = urllib.parse.unquote(url.path)
        state = self.server.state
        if path == "/robots.txt":
            rule = state.robots.get(host, "User-agent: *\nAllow: /\n")
            if isinstance(rule, int):
                return self._send(rule, b"no robots here", "text/plain")
            return self._send(200, rule.encode(), "text/plain")
        if path.startswith("/files/"):
            return self._file(path[len("/files/") :], q)
        if path == "/status":
            return self._send(int(q["code"]), b"<html><body>status page</body></html>", "text/html")
        if path in ("/flaky", "/retry-after"):
            with state.lock:
                state.hits[q["key"]] += 1
                hit = state.hits[q["key"]]
            if path == "/flaky" and hit <= int(q.get("n", "1")):
                return self._send(int(q["code"]), b"<html><body>try again</body></html>", "text/html")
            if path == "/retry-after" and hit == 1:
                return self._send(429, b"slow down", "text/plain", {"Retry-After": q["seconds"]})
            return self._route(urllib.parse.urlsplit(q["path"]), host)
        if path == "/sleep":
            time.sleep(float(q["s"]))
            return self._route(urllib.parse.urlsplit(q["path"]), host)
        if path == "/drip":
            return self._drip(float(q.get("interval", "0.2")), int(q.get("n", "100000")))
        if path == "/endless":
            return self._endless()
        if path == "/gzip-bomb":
            return self._send(200, state.bomb, "text/html", {"Content-Encoding": "gzip"})
        if path == "/loop/a":
            return self._send(302, b"", "text/html", {"Location": "/loop/b"})
        if path == "/loop/b":
            return self._send(302, b"", "text/html", {"Location": "/loop/a"})
        if path == "/redirect":
            return self._send(302, b"", "text/html", {"Location": q["to"]})
        if path == "/binary":
            noise = random.Random(7).randbytes(200_000)
            return self._send(200, noise, "text/html")
        if path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"<html>")
            return 200
        return self._send(404, b"<html><body>not found</body></html>", "text/html")

    def _file(self, rel: str, q: dict[str, str]) -> int:
        root_name, _, inner = rel.partition("/")
        root = self.server.state.roots.get(root_name)
        target = (root / inner).resolve() if root else None
        if target is None or root is None or not target.is_file() or not target.is_relative_to(root.resolve()):
            return self._send(404, b"<html><body>not found</body></html>", "text/html")
        body = target.read_bytes()
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag or self.headers.get("If-Modified-Since") == FIXED_MTIME:
            return self._send(304, b"", None, {"ETag": etag, "Last-Modified": FIXED_MTIME})
        headers = {"ETag": etag, "Last-Modified": FIXED_MTIME}
        name = target.name
        if name.endswith(".gz"):
            headers["Content-Encoding"] = "gzip"
            name = name[:-3]
        ctype = q.get("type") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._send(200, body, ctype, headers)

    def _send(self, code: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None) -> int:
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if code != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code != 304:
            self.wfile.write(body)
        return code

    def _drip(self, interval: float, n: int) -> int:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        deadline = time.monotonic() + MAX_DRIP_SECONDS
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            self.wfile.write(b"a")
            self.wfile.flush()
            time.sleep(interval)
        return 200

    def _endless(self) -> int:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>")
        chunk = b"<p>" + b"all work and no play makes jack a dull boy " * 300 + b"</p>\n"
        deadline = time.monotonic() + MAX_DRIP_SECONDS
        while time.monotonic() < deadline:
            self.wfile.write(chunk)
        return 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebTestServer:
    """`with WebTestServer(shared) as server: server.url("/files/pdf/x.pdf")`; two host names, one port.

    `bind` is a loopback address: 127.0.0.1 by default, another 127.x.y.z or ::1 for the address-policy tests.
    """

    def __init__(self, shared: Path, bind: str = "127.0.0.1"):
        corpora = shared / "corpora"
        roots = {"html": corpora / "web" / "html", "pdf": corpora / "web" / "pdf", "hostile": corpora / "hostile"}
        self.state = ServerState(roots=roots, bomb=_gzip_bomb())
        self.host = f"[{bind}]" if ":" in bind else bind
        self._server = (_Server6 if ":" in bind else _Server)((bind, 0), _Handler)
        self._server.state = self.state
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-test-server", daemon=True)

    def __enter__(self) -> WebTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def file_url(self, rel: str, host: str | None = None, **query: str) -> str:
        """URL of a corpus file, e.g. file_url("pdf/sf-001-minimal-document.pdf")."""
        quoted = urllib.parse.quote(rel)
        return self.url(f"/files/{quoted}" + (f"?{urllib.parse.urlencode(query)}" if query else ""), host)

    def requests(self, path_prefix: str = "", host: str | None = None) -> list[Logged]:
        with self.state.lock:
            return [
                e for e in self.state.log
                if e.path.startswith(path_prefix) and (host is None or e.host == host)
            ]

    def reset(self) -> None:
        with self.state.lock:
            self.state.log.clear()
            self.state.robots.clear()
            self.state.hits.clear()
            self.state.max_in_flight.clear()


def _gzip_bomb() -> bytes:
    return gzip.compress(b"<html><body><p>" + b"a" * (64 << 20), compresslevel=9)
