"""Fixtures of the backup tests: a backup directory per test, a scratch instance database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backup.backup_support import instance_database
from singularity.postgres.cluster import Cluster


@pytest.fixture
def backup_root(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def instance_db(cluster: Cluster) -> Iterator[str]:
    """A Singularity instance database (`<base>_<N>`) holding a scratch table; dropped after."""
    with instance_database(cluster) as name:
        yield name
