"""The allowlisting proxy: the only way out of a setup step's sandbox, to the registries only.

It runs in the worker, outside every sandbox, on a unix socket in a directory only the worker
may enter; a setup run gets the socket bound in, and a forwarder inside relays the sandbox's
loopback to it (see `forwarder`). Per connection it reads one request head (bounded in size and
time), and serves `CONNECT host:port` or a plain `GET http://...` only when host:port is on the
allowlist; it resolves the name itself and connects to the address it got, refusing any address
of the host itself (loopback, link-local, ...: see `allowlist`). Every other request gets a 403
(or 400) whose reason phrase says why in one line, and each decision is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType

import structlog

from singularity.genesis.environments.allowlist import (
    Endpoint,
    forbidden_address,
    valid_host,
)
from singularity.genesis.environments.registries import Registries, load_registries
from singularity.genesis.environments.request import BadRequest, ProxyRequest, parse_head

__all__ = ["ProxyRefused", "RegistryProxy", "registry_proxy"]

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 15.0
RESOLVE_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 30.0  # once one side is done, how long the other may still take
TUNNEL_MAX_S = 1800.0
_CHUNK = 64 * 1024


class ProxyRefused(Exception):
    """A request the proxy does not carry out; the message is the one-line reason."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


class RegistryProxy:
    """An HTTP proxy on a unix socket that reaches only the allowed registries."""

    def __init__(
        self,
        registries: Registries,
        *,
        directory: Path | None = None,
        max_connections: int = 64,
    ) -> None:
        self.registries = registries
        self._directory = directory
        self._made: Path | None = None
        self._max = max_connections
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def socket_path(self) -> Path:
        """The socket to bind into a sandbox (only while the proxy runs)."""
        if self._server is None:
            raise RuntimeError("the registry proxy is not running")
        return self._where() / "proxy.sock"

    def _where(self) -> Path:
        return self._directory or self._made or Path("/nonexistent")

    async def __aenter__(self) -> RegistryProxy:
        if self._directory is None:
            # mkdtemp makes it 0700: only the worker reaches the socket, a root worker binds
            # it into a sandbox by staging (command.staged).
            self._made = Path(tempfile.mkdtemp(prefix="singularity-proxy-"))
        path = self._where() / "proxy.sock"
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(
            self._accepted, path=str(path), limit=MAX_HEAD_BYTES
        )
        # The sandbox's uid connects through a bind of this file; the directory guards it.
        os.chmod(path, 0o666)
        log.info("registry_proxy_started", allowed=sorted(map(str, self.registries.allowed)))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            self._made = None

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer), name="registry-proxy-connection")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request: ProxyRequest | None = None
        try:
            if len(self._tasks) > self._max:
                raise ProxyRefused(f"more than {self._max} connections at once", 503)
            head = await _read_head(reader)
            if head is None:
                return
            request = _parsed(head)
            up_reader, up_writer, address = await self._connect(request.target)
        except ProxyRefused as refused:
            _decided(request, refused=refused)
            await _refuse(writer, refused)
            return
        except Exception as exc:  # never let one connection's surprise stop the proxy
            log.warning("registry_proxy_error", error=f"{type(exc).__name__}: {exc}")
            await _close(writer)
            return
        _decided(request, address=address)
        try:
            if request.forward is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(request.forward)
            await _relay(reader, writer, up_reader, up_writer)
        finally:
            await _close(up_writer)
            await _close(writer)

    async def _connect(
        self, target: Endpoint
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        if target not in self.registries.allowed:
            raise ProxyRefused(f"{target} is not an allowed registry")
        addresses = await _resolve(target)
        last = "no address"
        for address in addresses:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, target.port), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                last = f"{address}: {exc.strerror if isinstance(exc, OSError) else 'timeout'}"
                continue
            return reader, writer, address
        raise ProxyRefused(f"cannot connect to {target} ({last})", 502)


@contextlib.asynccontextmanager
async def registry_proxy(allowed: Sequence[str] = ()) -> AsyncIterator[RegistryProxy]:
    """The proxy to the host's registries (or to `allowed`), for the block: once per worker."""
    async with RegistryProxy(await load_registries(allowed)) as proxy:
        yield proxy


def _parsed(head: bytes) -> ProxyRequest:
    try:
        return parse_head(head)
    except BadRequest as exc:
        raise ProxyRefused(f"bad request: {exc}", 400) from None


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The request head, or None when the client went away before sending one."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    except asyncio.LimitOverrunError:
        raise ProxyRefused(f"request head larger than {MAX_HEAD_BYTES} bytes", 431) from None
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProxyRefused("request head cut short", 400) from None
        return None
    except TimeoutError:
        raise ProxyRefused(f"no request head within {HEAD_TIMEOUT_S:g} s", 408) from None
    except ConnectionError:
        return None


async def _resolve(target: Endpoint) -> list[str]:
    """The target's addresses, as this proxy resolves them; ProxyRefused for a host address."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
            RESOLVE_TIMEOUT_S,
        )
    except (OSError, TimeoutError):
        raise ProxyRefused(f"{target.host} does not resolve", 502) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    # One bad address refuses the name: a name that also points at the host is not a registry.
    for address in addresses:
        kind = forbidden_address(address)
        if kind is not None and valid_host(target.host) == address:
            raise ProxyRefused(f"{address} is a {kind} address")
        if kind is not None:
            raise ProxyRefused(f"{target.host} resolves to {address}, a {kind} address")
    if not addresses:
        raise ProxyRefused(f"{target.host} does not resolve", 502)
    return addresses


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until both sides are done (or one is, and the other lingers)."""
    pumps = {
        asyncio.create_task(_pump(reader, up_writer)),
        asyncio.create_task(_pump(up_reader, writer)),
    }
    try:
        done, pending = await asyncio.wait(
            pumps, timeout=TUNNEL_MAX_S, return_when=asyncio.FIRST_COMPLETED
        )
        if pending and done:
            await asyncio.wait(pending, timeout=DRAIN_TIMEOUT_S)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def _refuse(writer: asyncio.StreamWriter, refused: ProxyRefused) -> None:
    reason = str(refused).replace("\r", " ").replace("\n", " ")
    body = f"{reason}\n".encode(errors="replace")
    head = (
        f"HTTP/1.1 {refused.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError, ConnectionError):
        writer.write(head.encode(errors="replace") + body)
        await asyncio.wait_for(writer.drain(), 5.0)
    await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ConnectionError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5.0)


def _decided(
    request: ProxyRequest | None,
    *,
    address: str | None = None,
    refused: ProxyRefused | None = None,
) -> None:
    """One structured line per request: what was asked, and whether (and why not) it was done."""
    asked = {} if request is None else {"method": request.method, "target": str(request.target)}
    if refused is not None:
        log.info(
            "registry_proxy_decision",
            allowed=False,
            status=refused.status,
            reason=str(refused),
            **asked,
        )
    else:
        log.info("registry_proxy_decision", allowed=True, address=address, **asked)
