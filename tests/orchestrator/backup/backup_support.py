"""Helpers of the backup tests (also used by the CLI's): scratch data and database facts."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database, Role

__all__ = [
    "ROWS",
    "create_scratch_table",
    "database_facts",
    "instance_database",
    "owner_endpoint",
    "rows_of",
]

# Instance numbers no real instance of the test platform uses.
_INSTANCES = itertools.count(900 + (os.getpid() % 50))

ROWS = [(1, "alpha", {"n": 1}), (2, "beta", {"n": [1, 2]}), (3, "gamma ü", None)]


def create_scratch_table(endpoint: Endpoint, table: str = "scratch") -> None:
    """A table with ROWS, created as `endpoint`'s user (so it owns it)."""
    with connection(endpoint) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, label text, body jsonb)").format(
                sql.Identifier(table)
            )
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(sql.Identifier(table)),
                [(i, label, Jsonb(body)) for i, label, body in ROWS],
            )


def rows_of(endpoint: Endpoint, table: str = "scratch") -> list[tuple[object, ...]]:
    with connection(endpoint) as conn, conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            sql.SQL("SELECT id, label, body FROM {} ORDER BY id").format(sql.Identifier(table))
        )
        return cur.fetchall()


def database_facts(cluster: Cluster, name: str) -> tuple[str, list[str]]:
    """(owner, privileges) of a database on the singularity server."""
    with connection(cluster.maintenance(Database.SINGULARITY)) as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) AS owner, coalesce(datacl::text[], '{}') AS acl"
            " FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None, name
    return row["owner"], sorted(row["acl"])


@contextmanager
def instance_database(cluster: Cluster) -> Iterator[str]:
    """A Singularity instance database (`<base>_<N>`), provisioned as `db init` would, with a
    scratch table owned by the singularity role; dropped afterwards."""
    name = f"{cluster.singularity_database(1)}_{next(_INSTANCES)}"
    owner = cluster.role_name(Role.SINGULARITY)
    with connection(cluster.maintenance(Database.SINGULARITY)) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident, sql.Identifier(owner)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident, sql.Identifier(owner))
        )
    try:
        create_scratch_table(owner_endpoint(cluster, name))
        yield name
    finally:
        with connection(cluster.maintenance(Database.SINGULARITY)) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def owner_endpoint(cluster: Cluster, name: str) -> Endpoint:
    """The singularity service role on database `name`."""
    return cluster.service(Role.SINGULARITY, Database.SINGULARITY).with_database(name)
