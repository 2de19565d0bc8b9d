"""Backup, drop, restore gives back equal data; a restore that cannot load changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg import sql

from orchestrator.backup.backup_support import (
    ROWS,
    create_scratch_table,
    database_facts,
    owner_endpoint,
    rows_of,
)
from singularity.errors import SingularityError, UsageError
from singularity.orchestrator.backup import (
    ToolFailed,
    restore_backup,
    select_dumps,
    take_backup,
)
from singularity.orchestrator.backup.manifest import sha256_of
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database, Role

EXPECTED = [(i, label, body) for i, label, body in ROWS]


def _drop_table(cluster: Cluster, database: str, table: str = "scratch") -> None:
    with connection(owner_endpoint(cluster, database)) as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def _database_names(cluster: Cluster) -> set[str]:
    with connection(cluster.maintenance(Database.SINGULARITY)) as conn:
        return {row["datname"] for row in conn.execute("SELECT datname FROM pg_database")}


async def test_backup_drop_restore_gives_back_equal_data(
    cluster: Cluster, backup_root: Path, instance_db: str
) -> None:
    endpoint = owner_endpoint(cluster, instance_db)
    facts = database_facts(cluster, instance_db)
    backup = await take_backup(cluster, backup_root)
    with connection(endpoint) as conn:
        conn.execute("DELETE FROM scratch WHERE id = 1")
        conn.execute("UPDATE scratch SET label = 'changed'")
        conn.execute("CREATE TABLE extra (x int)")

    restored = await restore_backup(cluster, backup, [instance_db])

    assert restored == [instance_db]
    assert rows_of(endpoint) == EXPECTED  # read by the service role: it still owns its data
    with connection(endpoint) as conn:
        assert conn.execute("SELECT to_regclass('extra') AS t").fetchone() == {"t": None}
    assert database_facts(cluster, instance_db) == facts  # same owner, same CONNECT rights
    assert not any(name.endswith("__restore") for name in _database_names(cluster))


async def test_restore_of_the_singularity_database(cluster: Cluster, backup_root: Path) -> None:
    base = cluster.singularity_database(1)
    endpoint = cluster.service(Role.SINGULARITY, Database.SINGULARITY).with_database(base)
    create_scratch_table(endpoint, "backup_test_scratch")
    try:
        facts = database_facts(cluster, base)
        backup = await take_backup(cluster, backup_root)
        _drop_table(cluster, base, "backup_test_scratch")

        assert await restore_backup(cluster, backup, ["singularity"]) == [base]

        assert rows_of(endpoint, "backup_test_scratch") == EXPECTED
        assert database_facts(cluster, base) == facts
    finally:
        with connection(endpoint) as conn:
            conn.execute("DROP TABLE IF EXISTS backup_test_scratch")


async def test_a_dump_that_fails_to_load_leaves_the_database_as_it_was(
    cluster: Cluster, backup_root: Path, instance_db: str
) -> None:
    backup = await take_backup(cluster, backup_root)
    _drop_table(cluster, instance_db)
    dump = next(d for d in backup.manifest().databases if d.name == instance_db)
    path = backup.path / dump.file
    path.write_text(path.read_text() + "\nSELECT no_such_function();\n")
    # The checksum guards against damage: the file no longer matches its manifest...
    with pytest.raises(SingularityError, match="does not match the checksum"):
        await restore_backup(cluster, backup, [instance_db])
    # ...and with a matching checksum the load fails in psql, before anything is replaced.
    manifest = json.loads((backup.path / "manifest.json").read_text())
    for entry in manifest["databases"]:
        if entry["name"] == instance_db:
            entry["sha256"] = sha256_of(path)
    (backup.path / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ToolFailed, match=r"psql failed on .*no_such_function"):
        await restore_backup(cluster, backup, [instance_db])

    with connection(owner_endpoint(cluster, instance_db)) as conn:
        assert conn.execute("SELECT to_regclass('scratch') AS t").fetchone() == {"t": None}
    assert not any(name.endswith("__restore") for name in _database_names(cluster))


async def test_unknown_database_names_what_the_backup_holds(
    cluster: Cluster, backup_root: Path
) -> None:
    backup = await take_backup(cluster, backup_root)

    with pytest.raises(UsageError, match=r"holds no database 'nope'; it holds: .*shared_queue"):
        select_dumps(backup, ["nope"])
    assert [d.name for d in select_dumps(backup, ["nexus", "nexus"])] == [
        cluster.database_name(Database.NEXUS)
    ]
    assert len(select_dumps(backup, None)) == len(backup.manifest().databases)
