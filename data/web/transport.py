"""The crawler's httpx client, whose every connection goes to an address it has checked first.

httpcore opens connections through a network backend; ours resolves the host name itself, checks every address
against the AddressPolicy, and connects to a checked address, never to the name. There is no second lookup
between check and connect for a rebinding DNS server to answer differently, and a redirect's target is
checked the same way when its connection opens. A refused host raises AddressNotAllowed before any packet
is sent to it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable

import anyio
import certifi
import httpcore
import httpx

from data.web.addresses import AddressPolicy


class AddressNotAllowed(Exception):
    """Every address of a host is one the policy refuses; the message names them and the setting to change."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"resolving {host} took more than {timeout:g} s") from error
        except OSError as error:  # socket.gaierror: no such name, no network
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        allowed, refused = [], []
        for info in infos:
            address = str(info[4][0])
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is no part of it
            kind = self.policy.refuses(host, ip)
            if kind is not None:
                refused.append(f"{ip} ({kind})")
            elif address not in allowed:
                allowed.append(address)
        if not allowed:
            raise AddressNotAllowed(
                f"{host} is {', '.join(dict.fromkeys(refused))}: not connected to. To crawl it (an intranet, a "
                f"test server), add it to scrape.allow_private, e.g. [{host}], or set scrape.allow_private: true"
            )
        last: Exception | None = None
        for address in allowed:  # in the resolver's order, as socket.create_connection tries them
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await self.inner.connect_tcp(address, port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise AddressNotAllowed(f"unix socket {path}: the crawler connects over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def crawler_client(
    policy: AddressPolicy, timeout: httpx.Timeout, max_connections: int, headers: dict[str, str]
) -> httpx.AsyncClient:
    """The client the Fetcher uses: redirects by hand, connections through GuardedBackend.

    Proxies from the environment are not used (trust_env=False): through a proxy the address connected to would
    be the proxy's, and the check above would not see where a request really goes.
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx does not take a network backend; the pool it builds is replaced by the same pool with ours.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(cafile=certifi.where()),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(policy),
    )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,  # each hop is checked (scheme, robots, politeness) by us
        timeout=timeout,
        headers=headers,
        trust_env=False,
    )


def describe_error(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if not text.startswith(type(error).__name__) else text
