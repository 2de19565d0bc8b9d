"""CentralCloud's queries (one file: queries.sql), and the union of a flow's result archives."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from singularity.postgres.queries import Queries

__all__ = ["QUERIES", "report_query"]

QUERIES = Queries("singularity.centralcloud")


def report_query(name: str, *, requests: str, results: Sequence[str]) -> sql.Composed:
    """A report query over one requests archive and the UNION ALL of its results archives."""
    parts = [QUERIES.compose("result_rows", archive=archive) for archive in results]
    union = sql.SQL(" UNION ALL ").join(parts) if parts else QUERIES["no_result_rows"]
    return QUERIES[name].format(requests=sql.Identifier(requests), results=union)
