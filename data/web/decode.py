"""Content-Encoding decoding that never produces more than the caller allows (a gzip bomb stays small).

We read raw bytes and decode them here, instead of letting httpx decode, because httpx inflates each
network chunk in full: one 64 KiB chunk of a bomb becomes ~64 MB before any cap can look at it.
"""

from __future__ import annotations

import zlib

# We advertise only what we decode with a bound.
ACCEPT_ENCODING = "gzip, deflate"


class DecodeError(Exception):
    """The body is not valid data of its Content-Encoding, or uses an encoding we did not ask for."""


class BoundedDecoder:
    """Feeds raw chunks, returns decoded bytes, at most `room + 1` per call (one past the cap proves excess)."""

    def __init__(self, content_encoding: str | None):
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1:
            raise DecodeError(f"Content-Encoding {content_encoding!r} stacks encodings; we accept one of gzip, deflate")
        self.coding = codings[0] if codings else ""
        if self.coding in ("gzip", "x-gzip"):
            self._inflate: zlib._Decompress | None = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self.coding == "deflate":
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
        elif self.coding == "":
            self._inflate = None
        else:
            raise DecodeError(
                f"Content-Encoding {content_encoding!r} was not asked for (we send Accept-Encoding: {ACCEPT_ENCODING})"
            )
        self._started = False

    def feed(self, chunk: bytes, room: int) -> bytes:
        if self._inflate is None:
            return chunk
        try:
            out = self._inflate.decompress(chunk, room + 1)
        except zlib.error as error:
            if self.coding == "deflate" and not self._started:
                # "deflate" is zlib-wrapped by the RFC, but some servers send raw deflate.
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return self.feed(chunk, room)
            raise DecodeError(f"body is not valid {self.coding} data: {error}") from None
        self._started = True
        return out

    def finish(self) -> None:
        """Checks that a compressed body ended where its format says (a cut body is not a page)."""
        if self._inflate is not None and self._started and not self._inflate.eof:
            raise DecodeError(f"{self.coding} body ends early (truncated transfer)")
