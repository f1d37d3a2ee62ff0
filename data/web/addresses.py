"""Which addresses the crawler may connect to: public ones, plus what `scrape.allow_private` opts in.

Without this a URL list, or a redirect from any public page, turns the crawler inward: loopback services, the
LAN, cloud metadata at 169.254.169.254, with their bodies landing in training shards and the crawl report
acting as a port scanner. The check runs on the address actually connected to (see transport.py), so DNS names
that resolve inward and odd spellings the resolver accepts (`2130706433`, `0x7f.1`, `127.1`) are caught too.
Only the standard library is imported: config.py validates the setting with it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # shared address space (RFC 6598), carriers' inside
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are an IPv4 address


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d,
    6to4 2002:ab:cd::), which is where a connection to it really goes."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def refusal(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is (loopback, private, ...), or None for a public one."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        kind = refusal(inner)
        return f"{kind} (as {ip})" if kind else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"  # 169.254.169.254, the cloud metadata service, lives here
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"  # fec0::/10: deprecated, yet still routed inside some networks
    if not ip.is_global:
        return "not globally routable"
    return None


def parse_allow_entry(entry: str) -> str | IPNetwork:
    """A network (`10.0.0.0/8`, `127.0.0.2` as a /32, `::1`) or a lower-case host name; ValueError if neither."""
    text = entry.strip()
    if not text:
        raise ValueError("an empty entry; write an address (127.0.0.2), a network (10.0.0.0/8) or a host name")
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        pass
    if "/" in text or any(ch.isspace() for ch in text) or text.startswith(("http:", "https:")):
        raise ValueError(
            f"{text!r} is neither an address, a network nor a host name; write e.g. 127.0.0.2, 10.0.0.0/8 "
            "or intranet.example"
        )
    return text.lower().rstrip(".")


@dataclass(frozen=True)
class AddressPolicy:
    """`allow_all` (scrape.allow_private: true), or the host names and networks it lists."""

    allow_all: bool = False
    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, allow_private: bool | list[str]) -> AddressPolicy:
        if allow_private is True:
            return cls(allow_all=True)
        if not allow_private:
            return cls()
        hosts, networks = set(), []
        for entry in allow_private:
            parsed = parse_allow_entry(entry)
            if isinstance(parsed, str):
                hosts.add(parsed)
            else:
                networks.append(parsed)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def refuses(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to `ip` (for the URL host `host`) is refused, or None when it is allowed."""
        kind = refusal(ip)
        if kind is None or self.allow_all or host.lower().rstrip(".") in self.hosts:
            return None
        inner = embedded_ipv4(ip)
        if any(candidate in net for net in self.networks for candidate in (ip, inner) if candidate is not None
               and candidate.version == net.version):
            return None
        return kind
