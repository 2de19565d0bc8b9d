"""Serving an ASGI app inside a service's own event loop, on a socket bound beforehand (so a
port in use is known before anything starts, and port 0 gives the real port at once)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

__all__ = ["InLoopServer", "listen"]


def listen(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening, non-blocking socket; OSError when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class InLoopServer(uvicorn.Server):
    """Uvicorn that leaves the signals alone: the service runner owns them (Ctrl-C stops every
    service, and their servers with them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
