"""Copy a whole evolution run from one database to another, losslessly and idempotently.

Every table is read in full on both sides, each row serialised canonically (decoded
values, JSON with sorted keys) and hashed. Rows missing from the target are inserted, rows
that differ are updated, equal rows are left alone, so a second run copies nothing. Then
the row counts and the checksums (SHA-256 over the row hashes in key order) of both sides
are compared; a difference is an error. Numbers compare by value, as JSON defines them
(see `_canonical`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from singularity.errors import SingularityError
from singularity.genesis.evolution.engine import open_engine, parse_url
from singularity.genesis.evolution.rows import insert_for
from singularity.genesis.evolution.schema import TABLES, create_schema, require_schema
from singularity.genesis.evolution.types import dump_json

__all__ = ["Progress", "TableReport", "checksum", "copy_run"]

BATCH = 500

# Enough digits for any double's exact decimal and for big integers: nothing is rounded.
_EXACT = Context(prec=2000)

# Called with (table name, rows done, rows in the table).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TableReport:
    """What the copy did to one table, and the verified figures."""

    table: str
    rows: int
    inserted: int
    updated: int
    checksum: str


def _key(table: Table) -> str:
    return table.primary_key.columns.values()[0].name


def _canonical(value: Any) -> Any:
    """JSON number semantics: a number is its decimal value, whatever its Python type.

    JSONB keeps a number's value but not its spelling: 3.0 stays 3.0, yet the float
    1.7976931348623157e308 comes back as the integer 17976931348623157000...0. Both
    sides hash a number as its normalised exact decimal, so equal values hash alike and
    different values (floats by their shortest repr, integers exactly) never do.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float | int):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return {"#": str(number.normalize(_EXACT))}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    return value


def _row_hashes(conn: Connection, table: Table) -> dict[Any, tuple[str, dict[str, Any]]]:
    """Each row by its key: its hash over a canonical serialisation, and its values."""
    rows: dict[Any, tuple[str, dict[str, Any]]] = {}
    for row in conn.execute(select(table)).mappings():
        values = dict(row)
        digest = hashlib.sha256(dump_json(_canonical(values)).encode()).hexdigest()
        rows[values[_key(table)]] = (digest, values)
    return rows


def checksum(conn: Connection, table: Table) -> tuple[int, str]:
    """The table's row count and checksum (ordered by key in Python: collations differ)."""
    hashes = _row_hashes(conn, table)
    total = hashlib.sha256()
    for key in sorted(hashes):
        total.update(hashes[key][0].encode())
    return len(hashes), total.hexdigest()


def _copy_table(
    source: Connection, target: Connection, table: Table, progress: Progress
) -> tuple[int, int]:
    theirs = _row_hashes(target, table)
    ours = _row_hashes(source, table)
    key = table.c[_key(table)]
    fresh = [values for k, (digest, values) in sorted(ours.items()) if k not in theirs]
    changed = [
        values
        for k, (digest, values) in sorted(ours.items())
        if k in theirs and theirs[k][0] != digest
    ]
    done = len(ours) - len(fresh) - len(changed)
    progress(table.name, done, len(ours))
    for start in range(0, len(fresh), BATCH):
        batch = fresh[start : start + BATCH]
        target.execute(insert_for(target, table), batch)
        done += len(batch)
        progress(table.name, done, len(ours))
    for values in changed:
        target.execute(table.update().where(key == values[key.name]).values(values))
        done += 1
    progress(table.name, done, len(ours))
    return len(fresh), len(changed)


def _engines(source_url: str, target_url: str) -> tuple[Engine, Engine]:
    source = parse_url(source_url, must_exist=True)
    target = parse_url(target_url)
    if source == target:
        raise SingularityError("--from and --to are the same database")
    return open_engine(source), open_engine(target)


def copy_run(
    source_url: str, target_url: str, progress: Progress | None = None
) -> list[TableReport]:
    """Copy every table of the run at `source_url` into `target_url`, then verify."""
    report = progress or (lambda _table, _done, _total: None)
    source, target = _engines(source_url, target_url)
    try:
        require_schema(source)
        create_schema(target)
        with source.connect() as src, target.begin() as dst:
            # Parents first (archive refers to programs); updates run before inserts of
            # later tables, all in one transaction: the target never holds half a run.
            counts = [_copy_table(src, dst, table, report) for table in TABLES]
        with source.connect() as src, target.connect() as dst:
            return [_verified(src, dst, table, *n) for table, n in zip(TABLES, counts, strict=True)]
    except OperationalError as exc:
        raise SingularityError(f"cannot reach the database: {_first_line(exc)}") from None
    except SQLAlchemyError as exc:
        raise SingularityError(f"copy failed: {_first_line(exc)}") from None
    finally:
        source.dispose()
        target.dispose()


def _verified(
    src: Connection, dst: Connection, table: Table, inserted: int, updated: int
) -> TableReport:
    rows, ours = checksum(src, table)
    their_rows, theirs = checksum(dst, table)
    if (rows, ours) != (their_rows, theirs):
        raise SingularityError(
            f"table {table.name} differs after the copy: {rows} rows ({ours[:12]}) in the "
            f"source, {their_rows} rows ({theirs[:12]}) in the target"
        )
    return TableReport(table.name, rows, inserted, updated, ours)


def _first_line(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
