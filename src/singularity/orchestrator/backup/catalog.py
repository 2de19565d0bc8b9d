"""The backups on disk: `<root>/{hourly,daily}/backup_YYYYMMDD_HHMMSS/`, listed, found, pruned.

A backup is written under a temporary name (`.tmp-backup_...`) and renamed when complete, so a
directory named `backup_...` is always a whole backup.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from singularity.errors import NotFound, SingularityError
from singularity.orchestrator.backup.manifest import MANIFEST, Manifest, read_manifest
from singularity.private import DIR_MODE, private_dir

__all__ = [
    "Backup",
    "BackupKind",
    "backup_name",
    "find_backup",
    "link_copy",
    "list_backups",
    "newest",
    "prune",
    "publish",
    "remove_partial",
    "staging_dir",
]

_NAME = re.compile(r"^backup_(\d{8}_\d{6})$")
_STAMP = "%Y%m%d_%H%M%S"
_STAGING = ".tmp-"


class BackupKind(StrEnum):
    """Which schedule a backup belongs to (and which retention applies)."""

    HOURLY = "hourly"
    DAILY = "daily"


@dataclass(frozen=True)
class Backup:
    """One complete backup directory."""

    kind: BackupKind
    path: Path
    taken_at: datetime

    @property
    def name(self) -> str:
        return self.path.name

    def manifest(self) -> Manifest:
        return read_manifest(self.path)


def backup_name(when: datetime) -> str:
    """`backup_YYYYMMDD_HHMMSS` of a moment, in UTC."""
    return "backup_" + when.astimezone(UTC).strftime(_STAMP)


def list_backups(root: Path, kind: BackupKind | None = None) -> list[Backup]:
    """The complete backups under `root`, newest first (hourly before daily at equal times)."""
    found: list[Backup] = []
    for each in [kind] if kind else list(BackupKind):
        directory = root / each.value
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match and (path / MANIFEST).is_file():
                taken = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
                found.append(Backup(each, path, taken))
    order = list(BackupKind)
    return sorted(found, key=lambda b: (-b.taken_at.timestamp(), order.index(b.kind)))


def newest(root: Path, kind: BackupKind) -> Backup | None:
    backups = list_backups(root, kind)
    return backups[0] if backups else None


def find_backup(root: Path, name: str) -> Backup:
    """The backup called `name` (or `hourly/name`, `daily/name`); NotFound lists what exists."""
    kind_part, _, bare = name.rpartition("/")
    for backup in list_backups(root):
        if backup.name == bare and kind_part in ("", backup.kind.value):
            return backup
    names = sorted({b.name for b in list_backups(root)}, reverse=True)
    if not names:
        raise NotFound(f"no backup named {name!r}: there are no backups in {root}")
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    raise NotFound(f"no backup named {name!r}; the backups are: {shown}")


def prune(root: Path, kind: BackupKind, keep: int) -> list[Backup]:
    """Delete all but the newest `keep` backups of a kind; returns the deleted ones."""
    removed = list_backups(root, kind)[max(keep, 0) :]
    for backup in removed:
        shutil.rmtree(backup.path)
    return removed


def staging_dir(root: Path, kind: BackupKind, name: str) -> Path:
    """A fresh temporary directory for a backup being written."""
    directory = private_dir(root / kind.value)
    if (directory / name).exists():
        raise SingularityError(
            f"a backup named {kind.value}/{name} exists already; try again in a second"
        )
    staging = directory / f"{_STAGING}{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=DIR_MODE)
    return staging


def publish(staging: Path, kind: BackupKind, when: datetime) -> Backup:
    """Rename a complete staging directory to its final name (atomic on one filesystem)."""
    final = staging.with_name(staging.name.removeprefix(_STAGING))
    os.rename(staging, final)
    return Backup(kind, final, when.astimezone(UTC).replace(microsecond=0))


def remove_partial(root: Path) -> None:
    """Delete staging directories left by a process that died while writing a backup."""
    for kind in BackupKind:
        directory = root / kind.value
        if directory.is_dir():
            for path in directory.glob(f"{_STAGING}*"):
                shutil.rmtree(path, ignore_errors=True)


def link_copy(source: Path, target: Path) -> None:
    """Put the dumps of `source` into `target`: hard links where the filesystem allows."""
    for path in source.glob("*.sql"):
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)
