"""Taking a backup: one plain-SQL dump per database, a manifest, nothing half written."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg import sql

from singularity.orchestrator.backup import BackupKind, ToolFailed, list_backups, take_backup
from singularity.orchestrator.backup.manifest import sha256_of
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database, Role


async def test_a_backup_holds_one_dump_per_database(cluster: Cluster, backup_root: Path) -> None:
    events: list[tuple[str, str]] = []
    backup = await take_backup(
        cluster, backup_root, progress=lambda db, state: events.append((db, state))
    )

    assert backup.kind is BackupKind.HOURLY
    assert backup.path.parent == backup_root / "hourly"
    assert re.fullmatch(r"backup_\d{8}_\d{6}", backup.name)
    assert abs((datetime.now(UTC) - backup.taken_at).total_seconds()) < 60
    five = {cluster.database_name(db) for db in Database}
    files = {p.name for p in backup.path.iterdir()}
    assert {f"{name}.sql" for name in five} <= files
    assert "manifest.json" in files

    manifest = backup.manifest()
    assert manifest.name == backup.name and manifest.kind == "hourly"
    assert five <= {d.name for d in manifest.databases}
    for dump in manifest.databases:
        path = backup.path / dump.file
        assert dump.bytes == path.stat().st_size > 0
        assert dump.sha256 == sha256_of(path)
        assert dump.server_version and dump.pg_dump_version
    bus = next(d for d in manifest.databases if d.database == "shared_queue")
    assert bus.owner is None
    assert "CREATE TABLE" in (backup.path / bus.file).read_text()
    # Every database went from waiting through dumping to done.
    for name in five:
        states = [state for db, state in events if db == name]
        assert states[:2] == ["waiting", "dumping"] and states[-1].startswith("done")
    assert [b.name for b in list_backups(backup_root)] == [backup.name]


async def test_instance_databases_are_backed_up(
    cluster: Cluster, backup_root: Path, instance_db: str
) -> None:
    backup = await take_backup(cluster, backup_root, BackupKind.DAILY)

    assert backup.path.parent.name == "daily"
    dump = next(d for d in backup.manifest().databases if d.name == instance_db)
    assert dump.database == "singularity"
    assert dump.instance == int(instance_db.rsplit("_", 1)[1])
    assert dump.owner == cluster.role_name(Role.SINGULARITY)
    assert dump.acl is not None
    assert {(g.grantee, g.privilege) for g in dump.acl} >= {
        (cluster.role_name(Database.SINGULARITY), "CONNECT")  # type: ignore[arg-type]
    }
    assert "alpha" in (backup.path / dump.file).read_text()


async def test_a_failed_dump_leaves_no_backup(
    cluster: Cluster, backup_root: Path, instance_db: str
) -> None:
    with connection(cluster.maintenance(Database.SINGULARITY)) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(instance_db))
        )

    with pytest.raises(ToolFailed, match=rf"pg_dump failed on {instance_db}: .*connections"):
        await take_backup(cluster, backup_root)

    assert list_backups(backup_root) == []
    assert [p.name for p in (backup_root / "hourly").iterdir()] == []  # no staging directory


async def test_an_instance_backs_up_every_instance(
    cluster: Cluster, backup_root: Path, instance_db: str
) -> None:
    backup = await take_backup(cluster.with_instance(2), backup_root)

    names = [d.name for d in backup.manifest().databases]
    assert len(names) == len(set(names))
    assert {cluster.singularity_database(1), instance_db} <= set(names)
    by_name = {d.name: d for d in backup.manifest().databases}
    assert by_name[cluster.singularity_database(1)].instance == 1
