"""Serving the web application inside a service's own event loop."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from fastapi import FastAPI

from singularity.errors import SingularityError
from singularity.serving import InLoopServer, listen

__all__ = ["WS_MAX_MESSAGE_BYTES", "WebServer", "bind"]

# The page sends nothing but pings on its WebSocket: a larger message closes it with 1009
# (checked from the frame's header, before its payload is read).
WS_MAX_MESSAGE_BYTES = 64 * 1024


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or one line that says why there is none."""
    try:
        return listen(host, port)
    except OSError as exc:
        hint = " (another program uses it: set PORT to another port)" if port else ""
        raise SingularityError(
            f"the web UI cannot listen on {host}:{port}: {exc.strerror}{hint}"
        ) from None


class WebServer:
    """Uvicorn on a socket we bound ourselves, stopped by an event."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        self.socket = sock
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws_ping_interval=20.0,
            ws_max_size=WS_MAX_MESSAGE_BYTES,
        )
        self._server = InLoopServer(config)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    async def run(self, stop: asyncio.Event) -> None:
        serving = asyncio.create_task(self._server.serve(sockets=[self.socket]))
        await asyncio.wait(
            {serving, asyncio.create_task(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        self._server.should_exit = True
        await serving
        self.socket.close()
