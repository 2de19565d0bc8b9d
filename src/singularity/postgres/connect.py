"""Connections and pools, with connection failures turned into one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from singularity.errors import DatabaseUnavailable
from singularity.postgres.endpoint import Endpoint

__all__ = ["async_connection", "connection", "describe_error", "open_pool"]

_CONNECT_TIMEOUT_S = 10


def describe_error(exc: BaseException) -> str:
    """The first line of a driver error, without libpq's noise."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    for prefix in ("connection failed: ", "FATAL:  "):
        first = first.removeprefix(prefix)
    return first


@contextlib.asynccontextmanager
async def async_connection(
    endpoint: Endpoint, *, autocommit: bool = True
) -> AsyncIterator[psycopg.AsyncConnection]:
    """One async connection; closed on exit."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            endpoint.conninfo(connect_timeout=_CONNECT_TIMEOUT_S), autocommit=autocommit
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {endpoint}: {describe_error(exc)}") from None
    async with conn:
        yield conn


@contextlib.contextmanager
def connection(endpoint: Endpoint, *, autocommit: bool = True) -> Iterator[psycopg.Connection]:
    """One blocking connection; closed on exit."""
    try:
        conn = psycopg.connect(
            endpoint.conninfo(connect_timeout=_CONNECT_TIMEOUT_S),
            autocommit=autocommit,
            row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {endpoint}: {describe_error(exc)}") from None
    with conn:
        yield conn


async def open_pool(
    endpoint: Endpoint, *, name: str, min_size: int = 1, max_size: int = 8
) -> AsyncConnectionPool:
    """An open pool of autocommit connections; fails fast with a clear line if unreachable."""
    pool = AsyncConnectionPool(
        endpoint.conninfo(connect_timeout=_CONNECT_TIMEOUT_S),
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        kwargs={"autocommit": True},
    )
    try:
        await pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
    except Exception as exc:
        await pool.close()
        reason = await _probe(endpoint) or describe_error(exc)
        raise DatabaseUnavailable(f"cannot connect to {endpoint}: {reason}") from None
    return pool


async def _probe(endpoint: Endpoint) -> str | None:
    """Why a connection fails (the pool only says it timed out)."""
    try:
        conn = await psycopg.AsyncConnection.connect(endpoint.conninfo(connect_timeout=3))
    except psycopg.Error as exc:
        return describe_error(exc)
    await conn.close()
    return None
