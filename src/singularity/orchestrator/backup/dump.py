"""Taking a backup: `pg_dump` of every database into a staging directory, renamed when whole."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from singularity.errors import SingularityError
from singularity.orchestrator.backup.catalog import (
    Backup,
    BackupKind,
    backup_name,
    link_copy,
    publish,
    remove_partial,
    staging_dir,
)
from singularity.orchestrator.backup.lock import backup_lock
from singularity.orchestrator.backup.manifest import DatabaseDump, Manifest, human_size, sha256_of
from singularity.orchestrator.backup.server import ServerCatalog
from singularity.orchestrator.backup.targets import Target, backup_targets, home_target
from singularity.orchestrator.backup.tools import ClientTools, find_tools, run_tool
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection

__all__ = ["ProgressFn", "copy_backup", "take_backup", "take_backup_locked"]

log = structlog.get_logger(__name__)

ProgressFn = Callable[[str, str], None]
"""Told (database, what is happening to it) as a backup or restore goes along."""

# A migration holding a lock must not stall the dump for ever; the next round tries again.
_DUMP_OPTIONS = ("--format=plain", "--no-password", "--lock-wait-timeout=60s")


async def take_backup(
    cluster: Cluster,
    root: Path,
    kind: BackupKind = BackupKind.HOURLY,
    *,
    now: datetime | None = None,
    progress: ProgressFn | None = None,
    wait_s: float = 0.0,
) -> Backup:
    """Dump every database into `root/<kind>/backup_<UTC time>/`; all of them, or nothing.

    Waits up to `wait_s` for a backup or restore running in another process to finish.
    """
    async with backup_lock(root, wait_s=wait_s):
        return await take_backup_locked(cluster, root, kind, now=now, progress=progress)


async def take_backup_locked(
    cluster: Cluster,
    root: Path,
    kind: BackupKind,
    *,
    now: datetime | None = None,
    progress: ProgressFn | None = None,
) -> Backup:
    """`take_backup` for a caller that holds the backup lock already."""
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    remove_partial(root)
    staging = staging_dir(root, kind, backup_name(when))
    started = time.monotonic()
    try:
        dumps = await _dump_all(cluster, staging, progress or _quiet)
        seconds = round(time.monotonic() - started, 3)
        manifest = Manifest(
            name=backup_name(when),
            kind=kind.value,
            started_at=when,
            finished_at=when + timedelta(seconds=seconds),
            seconds=seconds,
            databases=dumps,
        )
        manifest.write(staging)
        backup = publish(staging, kind, when)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "backup_taken",
        backup=backup.name,
        kind=kind.value,
        databases=[d.name for d in dumps],
        size=manifest.bytes,
        seconds=seconds,
    )
    return backup


def copy_backup(source: Backup, root: Path, kind: BackupKind) -> Backup:
    """The same dumps as `source`, filed as a backup of another kind (hard links, no dump)."""
    staging = staging_dir(root, kind, source.name)
    try:
        link_copy(source.path, staging)
        manifest = source.manifest().model_copy(update={"kind": kind.value})
        manifest.write(staging)
        backup = publish(staging, kind, source.taken_at)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("backup_copied", backup=backup.name, source=source.kind.value, kind=kind.value)
    return backup


async def _dump_all(cluster: Cluster, staging: Path, progress: ProgressFn) -> list[DatabaseDump]:
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[tuple[str, int], tuple[ServerCatalog, ClientTools, str]] = {}

        async def server_of(target: Target) -> tuple[ServerCatalog, ClientTools, str]:
            key = target.endpoint.server
            if key not in servers:
                conn = await stack.enter_async_context(async_connection(target.maintenance))
                catalog = ServerCatalog(conn)
                major, version = await catalog.version()
                servers[key] = (catalog, find_tools(major, embedded=cluster.embedded), version)
            return servers[key]

        home = await server_of(home_target(cluster))
        targets = await backup_targets(cluster, home[0])
        for target in targets:
            progress(target.name, "waiting")
        dumps = []
        for target in targets:
            catalog, tools, version = await server_of(target)
            dumps.append(await _dump_one(target, catalog, tools, version, staging, progress))
        return dumps


async def _dump_one(
    target: Target,
    catalog: ServerCatalog,
    tools: ClientTools,
    server_version: str,
    staging: Path,
    progress: ProgressFn,
) -> DatabaseDump:
    if "/" in target.name or target.name.startswith("."):
        raise SingularityError(f"cannot back up database {target.name!r}: not a safe file name")
    progress(target.name, "dumping")
    started = time.monotonic()
    file = staging / f"{target.name}.sql"
    try:
        acl = await catalog.acl(target.name)
        await run_tool(tools.pg_dump, [*_DUMP_OPTIONS, f"--file={file}"], target.endpoint)
        digest = await asyncio.to_thread(sha256_of, file)
    except BaseException:
        progress(target.name, "failed")
        raise
    size = file.stat().st_size
    seconds = round(time.monotonic() - started, 3)
    progress(target.name, f"done: {human_size(size)} in {seconds:.1f}s")
    return DatabaseDump(
        name=target.name,
        database=target.database.value,
        instance=target.instance,
        file=file.name,
        bytes=size,
        sha256=digest,
        server="{}:{}".format(*target.endpoint.server),
        server_version=server_version,
        pg_dump_version=tools.version,
        owner=target.owner,
        acl=acl,
        seconds=seconds,
    )


def _quiet(database: str, state: str) -> None:
    return None
