"""The schedule: hourly and daily backups when due, retention, one process at a time, and a loop
that outlives failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from helpers import eventually, holds
from singularity.config import Settings
from singularity.orchestrator.backup import (
    BackupBusy,
    BackupKind,
    backup_if_due,
    backup_now,
    list_backups,
    run_backups,
)
from singularity.orchestrator.backup.lock import backup_lock
from singularity.postgres.cluster import Cluster

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _keeping(settings: Settings, hourly: int, daily: int) -> Settings:
    return settings.model_copy(
        update={"singularity_backup_hourly_keep": hourly, "singularity_backup_daily_keep": daily}
    )


def _names(root: Path, kind: BackupKind) -> list[str]:
    return [b.name for b in list_backups(root, kind)]


async def test_backups_are_taken_when_due_and_pruned(
    cluster: Cluster, settings: Settings, backup_root: Path
) -> None:
    keep = _keeping(settings, hourly=2, daily=2)

    first = await backup_if_due(cluster, keep, now=T0, root=backup_root)
    assert [(b.kind.value, b.name) for b in first] == [
        ("hourly", "backup_20240501_120000"),
        ("daily", "backup_20240501_120000"),
    ]
    # The daily backup files the hourly one's dumps again instead of dumping twice.
    hourly, daily = first
    for dump in hourly.manifest().databases:
        assert (hourly.path / dump.file).samefile(daily.path / dump.file)
    assert daily.manifest().kind == "daily"

    assert (
        await backup_if_due(cluster, keep, now=T0 + timedelta(minutes=59), root=backup_root) == []
    )
    for hours in (1, 2):
        taken = await backup_if_due(
            cluster, keep, now=T0 + timedelta(hours=hours), root=backup_root
        )
        assert [b.kind for b in taken] == [BackupKind.HOURLY]
    assert _names(backup_root, BackupKind.HOURLY) == [
        "backup_20240501_140000",
        "backup_20240501_130000",
    ]
    assert _names(backup_root, BackupKind.DAILY) == ["backup_20240501_120000"]
    # The daily backup keeps its dumps after the hourly one it was filed from is pruned.
    assert all((daily.path / d.file).is_file() for d in daily.manifest().databases)

    taken = await backup_if_due(cluster, keep, now=T0 + timedelta(days=1), root=backup_root)
    assert [b.kind for b in taken] == [BackupKind.HOURLY, BackupKind.DAILY]
    assert _names(backup_root, BackupKind.DAILY) == [
        "backup_20240502_120000",
        "backup_20240501_120000",
    ]


async def test_a_kind_kept_zero_times_is_not_taken(
    cluster: Cluster, settings: Settings, backup_root: Path
) -> None:
    taken = await backup_if_due(cluster, _keeping(settings, 0, 1), now=T0, root=backup_root)

    assert [b.kind for b in taken] == [BackupKind.DAILY]
    assert _names(backup_root, BackupKind.HOURLY) == []
    # A backup asked for by hand is kept all the same.
    backup, pruned = await backup_now(cluster, _keeping(settings, 0, 1), root=backup_root)
    assert pruned == [] and _names(backup_root, BackupKind.HOURLY) == [backup.name]


async def test_one_backup_at_a_time(
    cluster: Cluster, settings: Settings, backup_root: Path
) -> None:
    async with backup_lock(backup_root):
        with pytest.raises(
            BackupBusy, match=rf"already running in process \d+ \(lock {backup_root}"
        ):
            await backup_if_due(cluster, settings, now=T0, root=backup_root)
        with pytest.raises(BackupBusy):
            await backup_now(cluster, settings, root=backup_root, wait_s=0.3)
    assert list_backups(backup_root) == []


async def test_the_loop_survives_failures_and_stops(
    cluster: Cluster, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    root.write_text("a file where the backup directory should be")
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(
            run_backups(
                cluster, settings, stop, interval_s=0.01, retry_s=0.01, clock=lambda: T0, root=root
            )
        )
        await eventually(holds(lambda: any(e["event"] == "backup_failed" for e in logs)))
        assert not task.done()
        root.unlink()
        await eventually(holds(lambda: len(list_backups(root)) == 2))
        stop.set()
        await asyncio.wait_for(task, 10)

    failed = next(e for e in logs if e["event"] == "backup_failed")
    assert failed["log_level"] == "warning" and "retry_in_s" in failed
    taken = [e for e in logs if e["event"] == "backup_taken"]
    assert len(taken) == 1  # the daily backup reused the hourly dumps; nothing more was due
    assert set(taken[0]) >= {"databases", "size", "seconds", "backup", "kind"}
    assert logs[-1]["event"] == "backups_stopped"
