"""Which services run, and where: each running service holds one connection to the bus named
after it, so that PostgreSQL's own session list is the platform's list of running services.

The connection's `application_name` is `singularity.<service>@<host>:<pid>`. It disappears
when the process ends, however it ends (a SIGKILL closes the socket; a lost host is noticed
when its TCP connection times out), so the list needs no heartbeats and holds no stale rows.
Any role sees other sessions' application names in `pg_stat_activity`; the administrator also
sees when each started.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import psycopg
import structlog

from singularity.postgres.endpoint import Endpoint

__all__ = ["PRESENCE_PREFIX", "Presence", "hold_presence", "running_services"]

log = structlog.get_logger(__name__)

PRESENCE_PREFIX = "singularity."
_NAME_LIMIT = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes


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
    """Announce `service` while the block runs. A database that cannot be reached only costs
    the announcement (the service itself reports its own connection errors)."""
    conninfo = endpoint.conninfo(connect_timeout=10, application_name=presence_name(service))
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        log.warning("presence_unavailable", service=service, reason=str(exc).strip())
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.close()


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
