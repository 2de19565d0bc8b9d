"""Restoring a backup: each database is rebuilt from its dump, then put in place of the old one.

The dump is loaded into a fresh database under a temporary name, in one transaction; only when
that has worked are the old database's sessions ended, the old database dropped and the new one
renamed to its name. A dump that fails to load leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import structlog

from singularity.errors import SingularityError, UsageError
from singularity.orchestrator.backup.catalog import Backup
from singularity.orchestrator.backup.dump import ProgressFn
from singularity.orchestrator.backup.lock import backup_lock
from singularity.orchestrator.backup.manifest import DatabaseDump, sha256_of
from singularity.orchestrator.backup.server import ServerCatalog
from singularity.orchestrator.backup.targets import Target, target_for
from singularity.orchestrator.backup.tools import find_tools, run_tool
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database

__all__ = ["restore_backup", "select_dumps"]

log = structlog.get_logger(__name__)

_TEMP_SUFFIX = "__restore"
_MAX_NAME = 63  # PostgreSQL's identifier limit
_PSQL_OPTIONS = ("--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction")


def select_dumps(backup: Backup, databases: Sequence[str] | None) -> list[DatabaseDump]:
    """The dumps of `backup` to restore: all, or those named (by real or logical name)."""
    dumps = backup.manifest().databases
    if not databases:
        return dumps
    chosen = []
    for wanted in databases:
        match = [d for d in dumps if wanted in (d.name, d.database if d.instance == 1 else None)]
        if not match:
            held = ", ".join(d.name for d in dumps)
            raise UsageError(f"backup {backup.name} holds no database {wanted!r}; it holds: {held}")
        chosen.extend(d for d in match if d not in chosen)
    return chosen


async def restore_backup(
    cluster: Cluster,
    backup: Backup,
    databases: Sequence[str] | None = None,
    *,
    progress: ProgressFn | None = None,
    wait_s: float = 0.0,
) -> list[str]:
    """Replace databases by their dumps in `backup`; returns the names restored."""
    report = progress or (lambda database, state: None)
    dumps = select_dumps(backup, databases)
    async with backup_lock(backup.path.parent.parent, wait_s=wait_s):
        for dump in dumps:
            report(dump.name, "checking")
            await _verify(backup, dump)
        restored = []
        for dump in dumps:
            started = time.monotonic()
            target = _target(cluster, dump)
            try:
                await _restore_one(cluster, backup, dump, target, report)
            except BaseException:
                report(dump.name, "failed")
                raise
            seconds = round(time.monotonic() - started, 3)
            report(dump.name, f"restored in {seconds:.1f}s")
            log.info("backup_restored", backup=backup.name, database=target.name, seconds=seconds)
            restored.append(target.name)
        return restored


async def _verify(backup: Backup, dump: DatabaseDump) -> None:
    path = backup.path / dump.file
    if not path.is_file():
        raise SingularityError(f"backup {backup.name} is missing {dump.file}")
    if await asyncio.to_thread(sha256_of, path) != dump.sha256:
        raise SingularityError(
            f"{path} does not match the checksum in its manifest (the file is damaged); "
            "restore another backup"
        )


def _target(cluster: Cluster, dump: DatabaseDump) -> Target:
    """Where a dump goes on this cluster: the database playing the same part here."""
    try:
        database = Database(dump.database)
    except ValueError:
        raise SingularityError(
            f"the backup names an unknown database kind {dump.database!r}"
        ) from None
    if database is not Database.SINGULARITY:
        return target_for(cluster, cluster.database_name(database), database)
    name = cluster.singularity_database(dump.instance)
    return target_for(cluster, name, database, dump.instance)


async def _restore_one(
    cluster: Cluster, backup: Backup, dump: DatabaseDump, target: Target, report: ProgressFn
) -> None:
    temp = target.name[: _MAX_NAME - len(_TEMP_SUFFIX)] + _TEMP_SUFFIX
    async with async_connection(target.maintenance) as conn:
        catalog = ServerCatalog(conn)
        major, _ = await catalog.version()
        tools = find_tools(major, embedded=cluster.embedded)
        await catalog.drop(temp)  # left by a restore that was interrupted
        await catalog.create(temp, target.owner)
        try:
            report(dump.name, "loading")
            args = [*_PSQL_OPTIONS, f"--file={backup.path / dump.file}"]
            await run_tool(tools.psql, args, target.endpoint.with_database(temp))
            skipped = await catalog.set_acl(temp, dump.acl)
            if skipped:
                log.warning("backup_grants_skipped", database=target.name, roles=skipped)
            report(dump.name, "replacing")
            await catalog.drop(target.name)
            await catalog.rename(temp, target.name)
        except BaseException:
            with contextlib.suppress(Exception):
                await catalog.drop(temp)
            raise
