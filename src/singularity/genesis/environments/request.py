"""A proxy request's head, parsed strictly: what a client in the sandbox asks the proxy for.

Two forms are served: `CONNECT host:port` (a TLS tunnel) and `GET`/`HEAD` of an absolute
`http://` URL (forwarded with the URL made relative). Anything else, and any head that is not
well-formed HTTP/1.x, is a BadRequest whose message says why in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from singularity.genesis.environments.allowlist import Endpoint, valid_host

__all__ = ["BadRequest", "ProxyRequest", "parse_head"]

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_VERSION = re.compile(r"^HTTP/1\.[01]$")
_FORWARDED = ("GET", "HEAD")
# Hop-by-hop headers, and the client's proxy credentials: never sent on to a registry.
_DROPPED = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}
MAX_HEADERS = 100


class BadRequest(ValueError):
    """A head the proxy does not serve; the message is one line."""


@dataclass(frozen=True)
class ProxyRequest:
    """A parsed request: a tunnel to `target`, or a GET/HEAD whose `forward` head is ready."""

    method: str
    target: Endpoint
    forward: bytes | None  # the head to send upstream (None for CONNECT)


def parse_head(head: bytes) -> ProxyRequest:
    """The request in `head` (the bytes up to and with the blank line); BadRequest if unserved."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("the request head is not ASCII") from None
    if not text.endswith("\r\n\r\n"):
        raise BadRequest("the request head does not end with a blank line")
    lines = text[:-4].split("\r\n")
    method, target, version = _request_line(lines[0])
    headers = _headers(lines[1:])
    if method == "CONNECT":
        return ProxyRequest(method, _authority(target), None)
    if method not in _FORWARDED:
        raise BadRequest(f"method {method} is not served (only CONNECT, GET and HEAD)")
    if any(name in ("content-length", "transfer-encoding") for name, _ in headers):
        raise BadRequest(f"a {method} request with a body is not served")
    return _forwarded(method, target, version, headers)


def _request_line(line: str) -> tuple[str, str, str]:
    words = line.split(" ")
    if len(words) != 3 or not _TOKEN.match(words[0]) or not _VERSION.match(words[2]):
        raise BadRequest("the request line is not METHOD TARGET HTTP/1.x")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in words[1]):
        raise BadRequest("the request target holds control characters")
    return words[0], words[1], words[2]


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    if len(lines) > MAX_HEADERS:
        raise BadRequest(f"more than {MAX_HEADERS} header fields")
    found = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise BadRequest("a header field is not NAME: VALUE")
        if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
            raise BadRequest("a header value holds control characters")
        found.append((name.lower(), value.strip()))
    return found


def _authority(target: str) -> Endpoint:
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRequest("the CONNECT target is not host:port")
    checked = valid_host(host)
    if checked is None or (":" in checked and not host.startswith("[")):
        raise BadRequest("the CONNECT target's host is not a name or an address")
    return Endpoint(checked, int(port))


def _forwarded(
    method: str, target: str, version: str, headers: list[tuple[str, str]]
) -> ProxyRequest:
    try:
        url = urlsplit(target)
        port = url.port or 80
    except ValueError:
        raise BadRequest("the request target is not a URL") from None
    if url.scheme != "http" or not url.hostname:
        raise BadRequest("a forwarded request must name an absolute http:// URL")
    if url.username is not None or url.password is not None:
        raise BadRequest("credentials in the URL are not forwarded")
    host = valid_host(url.hostname)
    if host is None:
        raise BadRequest("the URL's host is not a name or an address")
    endpoint = Endpoint(host, port)
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"
    kept = [(n, v) for n, v in headers if n not in _DROPPED and n != "host"]
    authority = str(endpoint) if port != 80 else str(endpoint).rsplit(":", 1)[0]
    lines = [f"{method} {path} {version}", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in kept]
    lines.append("Connection: close")  # one request per connection: the proxy then just relays
    return ProxyRequest(method, endpoint, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
