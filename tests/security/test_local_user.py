"""A local unprivileged user on the platform's host: the embedded server and the private files.

The platform runs as root here (as in CI); the attacker is `nobody` (65534), with no group of
anyone else's, running only programs every user may run. Each attack is made for real, then
the platform must still answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from conftest import embedded_only
from singularity.config import Settings
from singularity.errors import ConfigError
from singularity.nexus.token import token_file, ui_token
from singularity.orchestrator.backup.dump import take_backup
from singularity.orchestrator.backup.tools import find_tools, run_tool
from singularity.postgres.cluster import Cluster
from singularity.postgres.embedded import EmbeddedServer
from singularity.postgres.secrets import RolePasswords
from singularity.postgres.topology import Database, Role

pytestmark = [
    embedded_only,
    pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root"),
]

NOBODY = 65534
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
# Connects to a Unix socket and says what happened, as any program of the attacker's could.
CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__)
else:
    print("connected")
"""


def as_stranger(
    *argv: str, stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a program as `nobody`, in no group but its own."""
    return subprocess.run(
        list(argv),
        input=stdin,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def psql() -> str:
    return str(find_tools(16, embedded=True).psql)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def still_serving(cluster: Cluster) -> None:
    with psycopg.connect(cluster.service(Role.NEXUS, Database.NEXUS).conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def spare_home(tmp_path: Path) -> Iterator[Path]:
    """A home for an extra embedded server, stopped afterwards."""
    home = tmp_path / "spare"
    yield home
    EmbeddedServer(home).stop()


# -- finding 5: the server's socket ---------------------------------------------------------


def test_finding_5_socket_directory_is_private(cluster: Cluster) -> None:
    socket_dir = Path(cluster.admin(Database.NEXUS).host)
    socket = socket_dir / ".s.PGSQL.5432"
    assert socket.is_socket()
    assert as_stranger(PYTHON, "-c", CONNECT, str(socket)).stdout.strip() == "PermissionError"
    conninfo = f"host={socket_dir} dbname=postgres user=postgres"
    refused = as_stranger(psql(), "--no-psqlrc", "--command=SELECT 1", conninfo)
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr
    still_serving(cluster)


def test_finding_5_a_long_home_gets_a_socket_directory_nobody_can_plant(
    tmp_path: Path, spare_home: Path
) -> None:
    home = spare_home / ("long" * 25)
    pgdata = home.resolve() / "pgdata"
    # Where the old code put the socket, computed as the attacker would, and planted first.
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    predictable = Path("/tmp") / f"singularity-{os.getuid()}-{digest}"
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    assert as_stranger("ln", "-s", str(victim), str(predictable)).returncode == 0
    try:
        server = EmbeddedServer(home)
        info = server.acquire()
        try:
            assert mode(victim) == 0o700  # root was not made to chmod it
            assert predictable.is_symlink() and os.readlink(predictable) == str(victim)
            assert info.socket_dir.parent == Path("/tmp") and info.socket_dir != predictable
            owner = os.lstat(info.socket_dir)
            assert not stat.S_ISLNK(owner.st_mode) and mode(info.socket_dir) == 0o700
            assert owner.st_uid == psutil.Process(info.pid).uids().real
            attempt = as_stranger(PYTHON, "-c", CONNECT, str(info.socket_dir / ".s.PGSQL.5432"))
            assert attempt.stdout.strip() == "PermissionError"
            url = f"host={info.socket_dir} port={info.port} dbname=postgres user=postgres"
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            server.release()
        assert not info.socket_dir.exists()  # removed with the server
    finally:
        predictable.unlink()


# -- finding 6: private files ---------------------------------------------------------------


def test_finding_6_private_files_are_readable_by_their_owner_only(
    cluster: Cluster, settings: Settings
) -> None:
    home = settings.singularity_home
    os.chmod(home, 0o755)  # as an older version (or pgserver) left it
    # pytest makes it 0700; the multi-host test's own server opens it on its way: close it.
    os.chmod(home.parent, 0o700)
    ui_token(settings)
    RolePasswords(settings).ensure(Role.NEXUS)
    result = subprocess.run(
        [sys.executable, "-m", "singularity", "backup", "now"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    backup = max((settings.backup_dir / "hourly").glob("backup_*"))  # this command's
    dumps = sorted(backup.glob("*.sql"))
    platform = {"centralcloud", "genesis", "nexus", "shared_queue", "singularity"}
    assert platform <= {dump.stem for dump in dumps}  # other tests' instances may be there too
    secrets = RolePasswords(settings).path
    files = [token_file(settings), secrets, *dumps, backup / "manifest.json"]
    directories = [
        home,
        settings.pgdata,
        token_file(settings).parent,
        secrets.parent,
        settings.backup_dir,
        backup.parent,
        backup,
    ]
    assert {str(p): oct(mode(p)) for p in directories} == {str(p): "0o700" for p in directories}
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
    assert mode(home.parent) & 0o077 == 0  # no command of the platform widened it
    for path in [home, *files]:
        attempt = as_stranger("cat", str(path))
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, path
    assert as_stranger("ls", str(home)).returncode != 0
    still_serving(cluster)


# -- finding 10: the server's roles and processes -------------------------------------------


def test_finding_10_service_roles_cannot_connect_to_the_servers_own_databases(
    cluster: Cluster,
) -> None:
    for role in Role:
        for name in ("postgres", "template1"):
            endpoint = cluster.service(role, Database.NEXUS).with_database(name)
            with pytest.raises(psycopg.OperationalError, match="permission denied"):
                psycopg.connect(endpoint.conninfo()).close()
    still_serving(cluster)


def test_finding_10_server_processes_run_without_roots_group(cluster: Cluster) -> None:
    postmaster = psutil.Process(EmbeddedServer(cluster.settings.singularity_home).info().pid)  # type: ignore[union-attr]
    processes = [postmaster, *postmaster.children()]
    assert len(processes) > 3  # the checkpointer, the writers, the backends
    for process in processes:
        try:  # a backend of another test may end meanwhile
            uids, gids = process.uids(), process.gids()
            status = Path(f"/proc/{process.pid}/status").read_text()
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
        assert uids.real != 0
        assert set(gids) == {gids.real} and gids.real != 0
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        assert groups.split()[1:] == [], groups
    still_serving(cluster)


# -- attacks of a local user ----------------------------------------------------------------


def test_attack_tcp_is_closed_even_after_alter_system(spare_home: Path) -> None:
    server = EmbeddedServer(spare_home)
    info = server.acquire()
    url = f"host={info.socket_dir} port={info.port} dbname=postgres user=postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET listen_addresses = '*'")
    server.release()
    info = server.acquire()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        # No socket but the Unix one (another PostgreSQL may well own 127.0.0.1:5432).
        assert psutil.Process(info.pid).net_connections(kind="inet") == []
        hba = (spare_home / "pgdata" / "pg_hba.conf").read_text().splitlines()
        rules = [line.split() for line in hba if line.strip() and not line.startswith("#")]
        assert [r for r in rules if r[0] == "host" and r[-1] == "trust"] == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.release()


# Reads every process's command line and environment it can, for three seconds.
SCAN = """
import json, os, sys, time
secrets, marker = sys.stdin.read().split(), sys.argv[1]  # not in our own command line
seen, leaks = False, []
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    for pid in set(filter(str.isdigit, os.listdir("/proc"))) - {str(os.getpid())}:
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as handle:
                    text = handle.read().decode(errors="replace")
            except OSError:
                continue
            seen = seen or marker in text
            leaks += [f"{pid}/{name}" for s in secrets if s in text]
    time.sleep(0.05)
print(json.dumps({"seen": seen, "leaks": sorted(set(leaks))}))
"""


def test_attack_process_listings_reveal_no_password_or_token(
    cluster: Cluster, settings: Settings
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    marker = f"marker_{uuid.uuid4().hex[:8]}"
    endpoint = cluster.admin(Database.NEXUS).as_user("postgres", password)
    query = [f"--command=SELECT pg_sleep(2) AS {marker}"]
    tools = find_tools(16, embedded=True)

    async def attack() -> subprocess.CompletedProcess[str]:
        client = asyncio.create_task(run_tool(tools.psql, query, endpoint))
        await asyncio.sleep(0.3)
        secrets = f"{password} {ui_token(settings)}"
        scan = await asyncio.to_thread(as_stranger, PYTHON, "-c", SCAN, marker, stdin=secrets)
        await client
        return scan

    found = json.loads(asyncio.run(attack()).stdout)
    assert found == {"seen": True, "leaks": []}  # the client was seen, and nothing in it
    still_serving(cluster)


def test_attack_the_server_log_is_unreadable(cluster: Cluster, settings: Settings) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    with (
        psycopg.connect(cluster.admin(Database.NEXUS).conninfo()) as conn,
        pytest.raises(psycopg.errors.InvalidTextRepresentation),
    ):
        conn.execute(f"SELECT '{canary}'::int")
    log = settings.pgdata / "log"
    assert canary in log.read_text()  # the statement is there to be stolen
    assert mode(log) == 0o600
    for path in (log, settings.pgdata):
        attempt = as_stranger("cat" if path == log else "ls", str(path))
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr
    still_serving(cluster)


def test_attack_a_backup_directory_prepared_by_a_stranger_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    trap = Path("/tmp") / f"team-backups-{uuid.uuid4().hex[:8]}"
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    victim.chmod(0o600)
    assert as_stranger("mkdir", "-m", "777", str(trap)).returncode == 0
    try:
        assert as_stranger("ln", "-s", str(victim), str(trap / ".lock")).returncode == 0
        with pytest.raises(ConfigError, match=f"belongs to user {NOBODY}"):
            asyncio.run(take_backup(cluster, trap))
        with pytest.raises(ConfigError, match="may be written by every user"):
            asyncio.run(take_backup(cluster, Path("/tmp")))
        with pytest.raises(ConfigError, match=f"lies in {trap}, which another user controls"):
            asyncio.run(take_backup(cluster, trap / "inner"))
        # A link in /tmp aimed at a directory of root's: followed, root would chmod it.
        aimed = Path(f"{trap}-link")
        assert as_stranger("ln", "-s", str(tmp_path), str(aimed)).returncode == 0
        tmp_mode = mode(tmp_path)
        try:
            with pytest.raises(ConfigError, match=f"link made by user {NOBODY}"):
                asyncio.run(take_backup(cluster, aimed))
        finally:
            aimed.unlink()
        assert mode(tmp_path) == tmp_mode
        assert mode(Path("/tmp")) == 0o1777 and victim.read_text() == "root's\n"
        assert sorted(p.name for p in trap.iterdir()) == [".lock"]
    finally:
        shutil.rmtree(trap)
    backup = asyncio.run(take_backup(cluster, tmp_path / "backups"))
    assert {mode(p) for p in backup.path.iterdir()} == {0o600}
    still_serving(cluster)
