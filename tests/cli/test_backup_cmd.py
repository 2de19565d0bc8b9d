"""`singularity backup ...`, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from helpers import singularity
from orchestrator.backup.backup_support import (
    ROWS,
    instance_database,
    owner_endpoint,
    rows_of,
)
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection


def _without_terminal(*args: str) -> subprocess.CompletedProcess[str]:
    """The command with stdin that is not a terminal (as from a script or cron)."""
    return subprocess.run(
        [sys.executable, "-m", "singularity", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
        timeout=120,
    )


def _one_error_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0], lines[0]


@pytest.fixture(scope="module")
def cli_backup(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """(backup name, instance database) of one `singularity backup now`."""
    with instance_database(cluster) as database:
        result = singularity("backup", "now")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("backed up "), result.stdout
        listed = json.loads(singularity("backup", "list", "--json").stdout)
        newest = next(row for row in listed if database in row["databases"])
        yield newest["name"], database


def test_now_then_list(cluster: Cluster, cli_backup: tuple[str, str]) -> None:
    name, database = cli_backup
    listed = json.loads(singularity("backup", "list", "--json").stdout)
    row = next(r for r in listed if r["name"] == name)
    assert row["kind"] == "hourly" and row["error"] is None and row["bytes"] > 0
    assert database in row["databases"]
    table = singularity("backup", "list")
    assert table.returncode == 0 and name in table.stdout and "hourly" in table.stdout


def test_restore_one_database(cluster: Cluster) -> None:
    with instance_database(cluster) as database:
        taken = singularity("backup", "now")
        assert taken.returncode == 0, taken.stderr
        listed = json.loads(singularity("backup", "list", "--json").stdout)
        name = next(row["name"] for row in listed if database in row["databases"])
        with connection(owner_endpoint(cluster, database)) as conn:
            conn.execute("DELETE FROM scratch")

        result = _without_terminal("backup", "restore", name, "--database", database, "--yes")

        assert result.returncode == 0, result.stderr
        assert f"restored {database} from hourly/{name}" in result.stdout
        assert rows_of(owner_endpoint(cluster, database)) == list(ROWS)


def test_a_bad_name_lists_the_backups(cluster: Cluster, cli_backup: tuple[str, str]) -> None:
    name, _ = cli_backup
    result = _without_terminal("backup", "restore", "backup_19990101_000000", "--yes")
    _one_error_line(result, "no backup named 'backup_19990101_000000'; the backups are: ")
    assert name in result.stderr


def test_restore_refuses_to_ask_without_a_terminal(
    cluster: Cluster, cli_backup: tuple[str, str]
) -> None:
    name, database = cli_backup
    result = _without_terminal("backup", "restore", name, "--database", database)
    _one_error_line(result, "stdin is not a terminal): add --yes")


def test_an_unknown_database_names_what_the_backup_holds(
    cluster: Cluster, cli_backup: tuple[str, str]
) -> None:
    name, _ = cli_backup
    result = _without_terminal("backup", "restore", name, "-d", "bogus", "--yes")
    _one_error_line(result, f"backup {name} holds no database 'bogus'; it holds: ")


def test_an_unknown_kind_is_one_line(cluster: Cluster) -> None:
    _one_error_line(singularity("backup", "now", "--kind", "weekly"), "Invalid value for '--kind'")
