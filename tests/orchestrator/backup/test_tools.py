"""Finding pg_dump and psql: the embedded server's own, or a version that suits the server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from singularity.orchestrator.backup import ToolsMissing, find_tools
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database


def _server_major(cluster: Cluster) -> int:
    with connection(cluster.maintenance(Database.SINGULARITY)) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int AS v").fetchone()
    assert row is not None
    return int(row["v"]) // 10000


def test_the_tools_suit_the_server(cluster: Cluster) -> None:
    major = _server_major(cluster)
    tools = find_tools(major, embedded=cluster.embedded)

    assert tools.major >= major
    assert os.access(tools.pg_dump, os.X_OK) and os.access(tools.psql, os.X_OK)
    if cluster.embedded:
        assert tools.major == major  # pgserver's own binaries, next to its postgres
        assert (tools.bin_dir / "postgres").is_file()


def _fake_tools(directory: Path, version: str) -> Path:
    """A bin directory whose pg_dump says it is `version` (and a psql beside it)."""
    directory.mkdir(parents=True)
    for name in ("pg_dump", "psql"):
        script = directory / name
        script.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n")
        script.chmod(0o755)
    return directory


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """PATH holds a PostgreSQL 17 and then a 15; no Debian client packages."""
    newer = _fake_tools(tmp_path / "pg17", "17.1")
    older = _fake_tools(tmp_path / "pg15", "15.4")
    monkeypatch.setenv("PATH", f"{newer}{os.pathsep}{older}")
    monkeypatch.setattr("singularity.orchestrator.backup.tools._DEBIAN_ROOT", tmp_path / "none")
    return newer, older


def test_the_closest_version_not_older_than_the_server_is_chosen(
    fake_path: tuple[Path, Path],
) -> None:
    newer, older = fake_path
    bundled = find_tools(16, embedded=True)  # the embedded server's: pgserver's own 16

    assert (bundled.major, bundled.bin_dir.name) == (16, "bin")
    assert find_tools(15, embedded=False).bin_dir == older
    assert find_tools(14, embedded=False).bin_dir == older
    assert find_tools(16, embedded=False).bin_dir == bundled.bin_dir
    assert find_tools(17, embedded=False) == find_tools(17, embedded=True)
    assert find_tools(17, embedded=False).bin_dir == newer


def test_no_suitable_version_names_what_to_install(fake_path: tuple[Path, Path]) -> None:
    with pytest.raises(ToolsMissing) as caught:
        find_tools(18, embedded=False)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("backups of this PostgreSQL 18 server need pg_dump and psql 18")
    assert "(found only 17.1 in" in message and "15.4 in" in message and "16." in message
    assert "`apt install postgresql-client-18`" in message
