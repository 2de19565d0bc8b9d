"""The backup schedule the Singularity service runs: hourly and daily backups, kept N of each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.orchestrator.backup.catalog import Backup, BackupKind, newest, prune
from singularity.orchestrator.backup.dump import ProgressFn, copy_backup, take_backup_locked
from singularity.orchestrator.backup.lock import BackupBusy, backup_lock
from singularity.postgres.cluster import Cluster

__all__ = ["PERIOD", "Clock", "backup_if_due", "backup_now", "run_backups", "utc_now"]

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

PERIOD = {BackupKind.HOURLY: timedelta(hours=1), BackupKind.DAILY: timedelta(days=1)}
_MAX_RETRY_S = 3600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def _keep(settings: Settings, kind: BackupKind) -> int:
    if kind is BackupKind.HOURLY:
        return settings.singularity_backup_hourly_keep
    return settings.singularity_backup_daily_keep


def _due(root: Path, kind: BackupKind, now: datetime) -> bool:
    last = newest(root, kind)
    return last is None or now - last.taken_at >= PERIOD[kind]


async def backup_if_due(
    cluster: Cluster, settings: Settings, *, now: datetime, root: Path | None = None
) -> list[Backup]:
    """Take the hourly and daily backups that are due at `now`, then apply retention.

    A kind kept 0 times is not taken. A daily backup due together with an hourly one files the
    same dumps again (hard links) rather than dumping twice. BackupBusy if another process holds
    the backup directory.
    """
    directory = root or settings.backup_dir
    taken: list[Backup] = []
    async with backup_lock(directory):
        hourly = None
        if _keep(settings, BackupKind.HOURLY) > 0 and _due(directory, BackupKind.HOURLY, now):
            hourly = await take_backup_locked(cluster, directory, BackupKind.HOURLY, now=now)
            taken.append(hourly)
        if _keep(settings, BackupKind.DAILY) > 0 and _due(directory, BackupKind.DAILY, now):
            if hourly is not None:
                taken.append(copy_backup(hourly, directory, BackupKind.DAILY))
            else:
                taken.append(
                    await take_backup_locked(cluster, directory, BackupKind.DAILY, now=now)
                )
        for kind in {backup.kind for backup in taken}:
            for gone in prune(directory, kind, _keep(settings, kind)):
                log.info("backup_pruned", backup=gone.name, kind=kind.value)
    return taken


async def backup_now(
    cluster: Cluster,
    settings: Settings,
    kind: BackupKind = BackupKind.HOURLY,
    *,
    root: Path | None = None,
    progress: ProgressFn | None = None,
    wait_s: float = 0.0,
) -> tuple[Backup, list[Backup]]:
    """Take a backup of `kind` now and apply its retention; (the backup, those pruned).

    The new backup is kept even when its kind is kept 0 times (the schedule then takes none).
    """
    directory = root or settings.backup_dir
    async with backup_lock(directory, wait_s=wait_s):
        backup = await take_backup_locked(cluster, directory, kind, progress=progress)
        pruned = prune(directory, kind, max(_keep(settings, kind), 1))
    return backup, pruned


async def run_backups(
    cluster: Cluster,
    settings: Settings,
    stop: asyncio.Event,
    *,
    interval_s: float = 60.0,
    retry_s: float = 300.0,
    clock: Clock = utc_now,
    root: Path | None = None,
) -> None:
    """Until `stop` is set: every `interval_s`, take the backups that are due.

    A failure is logged and retried after `retry_s`, doubling up to an hour while it persists;
    the loop itself never fails.
    """
    directory = root or settings.backup_dir
    log.info(
        "backups_scheduled",
        directory=str(directory),
        hourly_keep=settings.singularity_backup_hourly_keep,
        daily_keep=settings.singularity_backup_daily_keep,
    )
    failures = 0
    while not stop.is_set():
        delay = interval_s
        try:
            await backup_if_due(cluster, settings, now=clock(), root=directory)
            failures = 0
        except BackupBusy:
            log.info("backup_skipped", reason="another process holds the backup directory")
        except Exception as exc:  # the schedule outlives any one failure
            failures += 1
            delay = max(interval_s, min(retry_s * 2 ** (failures - 1), _MAX_RETRY_S))
            log.warning("backup_failed", error=_describe(exc), retry_in_s=round(delay, 3))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    log.info("backups_stopped")


def _describe(exc: Exception) -> str:
    if isinstance(exc, SingularityError):
        return str(exc)
    lines = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {lines[0]}" if lines else "")
