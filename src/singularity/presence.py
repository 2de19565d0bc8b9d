"""Which services run, and where: each running service holds one connection to the bus named
after it, so that PostgreSQL's own session list is the platform's list of running services.

The connection's `application_name` is `singularity.<service>@<host>:<pid>`. It disappears
when the process ends, however it ends (a SIGKILL closes the socket; a lost host is noticed
when its TCP connection times out), so the list needs no heartbeats and holds no stale rows.
Any role sees other sessions' application names in `pg_stat_activity`; the administrator also
sees when each started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import psycopg
import structlog

from singularity.postgres.connect import describe_error
from singularity.postgres.endpoint import Endpoint

__all__ = ["PRESENCE_PREFIX", "Presence", "hold_presence", "running_services"]

log = structlog.get_logger(__name__)

PRESENCE_PREFIX = "singularity."
_NAME_LIMIT = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes
_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # between attempts to connect again


@dataclass(frozen=True)
class Presence:
    service: str
    host: str
    pid: int
    since: datetime | None


def presence_name(service: str) -> str:
    host = socket.gethostname()[:24]
    return f"{PRESENCE_PREFIX}{service}@{host}:{os.getpid()}"[:_NAME_LIMIT]


@contextlib.asynccontextmanager
async def hold_presence(endpoint: Endpoint, service: str) -> AsyncIterator[None]:
    """Announce `service` while the block runs, connecting again whenever the connection is
    lost (a database restart ends every session). A database that cannot be reached only
    costs the announcement (the service itself reports its own connection errors)."""
    conninfo = endpoint.conninfo(connect_timeout=10, application_name=presence_name(service))
    conn = await _connect(conninfo, service, quiet=False)  # seen as soon as the block runs
    holder = asyncio.create_task(_hold(conninfo, service, conn), name=f"presence:{service}")
    try:
        yield
    finally:
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)


async def _connect(conninfo: str, service: str, *, quiet: bool) -> psycopg.AsyncConnection | None:
    try:
        return await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        if not quiet:
            log.warning("presence_unavailable", service=service, reason=str(exc).strip())
        return None


async def _hold(conninfo: str, service: str, conn: psycopg.AsyncConnection | None) -> None:
    failures = 0
    while True:
        if conn is None:
            await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])
            conn = await _connect(conninfo, service, quiet=failures > 0)
            failures = 0 if conn is not None else failures + 1
            if conn is not None:
                log.info("presence_restored", service=service)
            continue
        try:
            async with conn:
                # Nothing is listened to, so this only returns by raising: when the
                # connection is lost. No query, no polling.
                async for _ in conn.notifies():
                    pass
        except psycopg.Error as exc:
            log.warning("presence_lost", service=service, reason=describe_error(exc))
        conn = None


async def running_services(conn: psycopg.AsyncConnection) -> list[Presence]:
    """The services holding a presence connection now, by service, host and pid."""
    rows = await (
        await conn.execute(
            "SELECT application_name, backend_start FROM pg_stat_activity "
            "WHERE application_name LIKE %s ORDER BY application_name",
            (PRESENCE_PREFIX + "%",),
        )
    ).fetchall()
    found = []
    for name, since in rows:
        service, _, where = str(name).removeprefix(PRESENCE_PREFIX).partition("@")
        host, _, pid = where.rpartition(":")
        found.append(Presence(service, host, int(pid) if pid.isdigit() else 0, since))
    return found
