"""The backups on disk: listed newest first, found by name, pruned to the newest N."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from singularity.errors import NotFound, SingularityError
from singularity.orchestrator.backup import BackupKind, find_backup, list_backups
from singularity.orchestrator.backup.catalog import (
    backup_name,
    prune,
    publish,
    remove_partial,
    staging_dir,
)
from singularity.orchestrator.backup.manifest import Manifest

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _fake_backup(root: Path, kind: BackupKind, when: datetime) -> str:
    staging = staging_dir(root, kind, backup_name(when))
    Manifest(
        name=backup_name(when),
        kind=kind.value,
        started_at=when,
        finished_at=when,
        seconds=0.0,
        databases=[],
    ).write(staging)
    return publish(staging, kind, when).name


def test_names_are_utc_timestamps() -> None:
    assert backup_name(T0) == "backup_20240501_120000"
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert backup_name(plus_two) == "backup_20240501_120000"


def test_backups_are_listed_newest_first(tmp_path: Path) -> None:
    names = [_fake_backup(tmp_path, BackupKind.HOURLY, T0 + timedelta(hours=h)) for h in range(3)]
    daily = _fake_backup(tmp_path, BackupKind.DAILY, T0 + timedelta(hours=1))
    (tmp_path / "hourly" / "not_a_backup").mkdir()
    staging_dir(tmp_path, BackupKind.HOURLY, backup_name(T0 + timedelta(hours=9)))  # unfinished

    listed = [(b.kind.value, b.name) for b in list_backups(tmp_path)]

    assert listed == [
        ("hourly", names[2]),
        ("hourly", names[1]),
        ("daily", daily),
        ("hourly", names[0]),
    ]
    assert [b.name for b in list_backups(tmp_path, BackupKind.DAILY)] == [daily]
    assert list_backups(tmp_path / "missing") == []


def test_find_by_name_or_kind_and_name(tmp_path: Path) -> None:
    name = _fake_backup(tmp_path, BackupKind.HOURLY, T0)
    _fake_backup(tmp_path, BackupKind.DAILY, T0)

    assert find_backup(tmp_path, name).kind is BackupKind.HOURLY
    assert find_backup(tmp_path, f"daily/{name}").kind is BackupKind.DAILY
    with pytest.raises(NotFound, match=rf"no backup named 'nope'; the backups are: {name}$"):
        find_backup(tmp_path, "nope")
    with pytest.raises(NotFound, match="there are no backups in"):
        find_backup(tmp_path / "empty", "nope")


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    names = [_fake_backup(tmp_path, BackupKind.HOURLY, T0 + timedelta(hours=h)) for h in range(5)]
    daily = _fake_backup(tmp_path, BackupKind.DAILY, T0)

    removed = prune(tmp_path, BackupKind.HOURLY, 2)

    assert sorted(b.name for b in removed) == names[:3]
    assert [b.name for b in list_backups(tmp_path, BackupKind.HOURLY)] == [names[4], names[3]]
    assert [b.name for b in list_backups(tmp_path, BackupKind.DAILY)] == [daily]
    assert prune(tmp_path, BackupKind.HOURLY, 0) and list_backups(tmp_path, BackupKind.HOURLY) == []


def test_staging_refuses_an_existing_name_and_partial_work_is_removed(tmp_path: Path) -> None:
    name = _fake_backup(tmp_path, BackupKind.HOURLY, T0)
    with pytest.raises(SingularityError, match="exists already"):
        staging_dir(tmp_path, BackupKind.HOURLY, name)
    staging = staging_dir(tmp_path, BackupKind.HOURLY, backup_name(T0 + timedelta(seconds=1)))
    (staging / "half.sql").write_text("--")

    remove_partial(tmp_path)

    assert not staging.exists()
    assert [b.name for b in list_backups(tmp_path)] == [name]


def test_a_damaged_manifest_is_one_line(tmp_path: Path) -> None:
    name = _fake_backup(tmp_path, BackupKind.HOURLY, T0)
    (tmp_path / "hourly" / name / "manifest.json").write_text('{"name": 1}')
    with pytest.raises(SingularityError, match=r"manifest.json is damaged"):
        find_backup(tmp_path, name).manifest()
