"""Which hosts a setup step may reach, and which addresses no host may resolve to.

An entry is `host:port` (a URL's scheme gives its default port; a bare host means 443). A target
is allowed when its host, as written, is an entry's host with that port: names are compared
as names, so a literal address is allowed only when an entry names it.

Whatever the allowlist says, an address that is loopback, link-local, unspecified, multicast
or reserved is refused: those reach the worker's own host (its PostgreSQL, its metadata
service), never a registry. Private addresses are allowed, because the proxy only ever connects
to what an allowed host resolves to: a company mirror on 10.x is reached by its name, and a
name the allowlist does not hold is refused before it is resolved.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Endpoint", "endpoint_of_entry", "endpoint_of_url", "forbidden_address", "valid_host"]

_DEFAULT_PORTS = {"https": 443, "http": 80}
_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")


@dataclass(frozen=True, order=True)
class Endpoint:
    """A host (a lower-case name or a literal address) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def valid_host(host: str) -> str | None:
    """`host` normalised (lower case, no trailing dot, no brackets); None when it is neither a
    DNS name nor a literal address."""
    host = host.strip().lower().removesuffix(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host if _NAME.match(host) else None


def endpoint_of_url(url: str) -> Endpoint | None:
    """The host and port an http(s) URL reaches; None for other schemes (file: is local)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = valid_host(parts.hostname)
    if host is None:
        return None
    return Endpoint(host, port or _DEFAULT_PORTS[scheme])


def endpoint_of_entry(entry: str) -> Endpoint:
    """An allowlist entry (a URL or `host[:port]`); ValueError (one line) when it is neither."""
    text = entry.strip()
    if "://" in text:
        found = endpoint_of_url(text)
        if found is None:
            raise ValueError(f"registry {entry!r} is not an http(s) URL with a host")
        return found
    found = endpoint_of_url(f"https://{text}")
    if found is None or "/" in text:
        raise ValueError(f"registry {entry!r} is neither a URL nor host[:port]")
    return found


def forbidden_address(address: str) -> str | None:
    """The kind of host address `address` is ("loopback", ...), or None for any other."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unparsable"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, bad in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("this-network", isinstance(ip, ipaddress.IPv4Address) and ip.packed[0] == 0),
    ):
        if bad:
            return kind
    return None
