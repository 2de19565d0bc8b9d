"""Backups of every database: hourly and daily `pg_dump`s, kept N of each, and restore.

Layout: `<SINGULARITY_HOME>/.db-backup/{hourly,daily}/backup_YYYYMMDD_HHMMSS/` holding one
`<database>.sql` (plain SQL, loadable with psql) per database and a `manifest.json`.
"""

from __future__ import annotations

from singularity.orchestrator.backup.catalog import Backup, BackupKind, find_backup, list_backups
from singularity.orchestrator.backup.dump import ProgressFn, take_backup
from singularity.orchestrator.backup.lock import BackupBusy
from singularity.orchestrator.backup.manifest import DatabaseDump, Manifest, human_size
from singularity.orchestrator.backup.restore import restore_backup, select_dumps
from singularity.orchestrator.backup.schedule import backup_if_due, backup_now, run_backups
from singularity.orchestrator.backup.tools import ClientTools, ToolFailed, ToolsMissing, find_tools

__all__ = [
    "Backup",
    "BackupBusy",
    "BackupKind",
    "ClientTools",
    "DatabaseDump",
    "Manifest",
    "ProgressFn",
    "ToolFailed",
    "ToolsMissing",
    "backup_if_due",
    "backup_now",
    "find_backup",
    "find_tools",
    "human_size",
    "list_backups",
    "restore_backup",
    "run_backups",
    "select_dumps",
    "take_backup",
]
