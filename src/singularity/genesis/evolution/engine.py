"""Which database a run uses, and the SQLAlchemy engine for it.

The API is synchronous (a plain SQLAlchemy engine with sqlite3 or psycopg); the asyncio
evolution loop calls it through `asyncio.to_thread`, which `AsyncProgramDatabase` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from singularity.config import Settings
from singularity.errors import UsageError

__all__ = ["Target", "default_url", "open_engine", "parse_url", "resolve_target"]


def default_url(settings: Settings) -> str:
    """The SQLite file of the run when no PostgreSQL URL is given."""
    return f"sqlite:///{settings.genesis_dir / 'evolution.db'}"


def parse_url(text: str, *, must_exist: bool = False) -> URL:
    """A `sqlite:///PATH` or `postgresql://...` URL, with the driver this project uses."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise UsageError(f"not a database URL: {text!r}") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise UsageError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://")
    if not url.database or url.database == ":memory:":
        raise UsageError(f"{text!r} names no SQLite file; use sqlite:///PATH")
    if must_exist and not Path(url.database).is_file():
        raise UsageError(f"no such SQLite file: {url.database}")
    return url.set(drivername="sqlite")


@dataclass(frozen=True)
class Target:
    """A database URL and whether it is the platform's own (migrated by Alembic)."""

    url: URL
    platform: bool


def resolve_target(settings: Settings, db: str | None = None) -> Target:
    """`db` if given, else GENESIS_DATABASE_URL (the platform's), else the SQLite file."""
    if db:
        return Target(parse_url(db), platform=False)
    if settings.genesis_database_url is not None:
        return Target(parse_url(settings.genesis_database_url.get_secret_value()), platform=True)
    return Target(parse_url(default_url(settings)), platform=False)


def open_engine(url: URL | str) -> Engine:
    """An engine; SQLite gets its directory, WAL, and enforced foreign keys."""
    url = parse_url(url) if isinstance(url, str) else url
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    assert url.database is not None
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
