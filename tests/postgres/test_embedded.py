"""The embedded server is shared by the processes of one home and stops with the last one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import embedded_only
from singularity.postgres.embedded import EmbeddedServer

pytestmark = embedded_only

# A process that holds a lease, prints the server's pid, and waits for a line on stdin.
HOLDER = """
import sys
from pathlib import Path
from singularity.logs import configure_logging
from singularity.postgres.embedded import EmbeddedServer
configure_logging("warning")
server = EmbeddedServer(Path(sys.argv[1]))
print(server.acquire().pid, flush=True)
sys.stdin.readline()
server.release()
"""


class Holder:
    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.server_pid = int(self.process.stdout.readline())

    def finish(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.wait(30) == 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    EmbeddedServer(tmp_path).stop()


def test_processes_of_one_home_share_one_server_until_the_last_exits(home: Path) -> None:
    first, second = Holder(home), Holder(home)
    assert first.server_pid == second.server_pid
    server = EmbeddedServer(home)
    first.finish()
    assert server.info() is not None  # the second process still uses it
    second.finish()
    assert server.info() is None


def test_a_killed_process_does_not_keep_the_server_running(home: Path) -> None:
    killed = Holder(home)
    killed.kill()
    survivor = Holder(home)
    assert survivor.server_pid == killed.server_pid
    survivor.finish()
    assert EmbeddedServer(home).info() is None


def test_stop_stops_it_and_names_who_was_still_using_it(home: Path) -> None:
    holder = Holder(home)
    users = EmbeddedServer(home).stop()
    assert users == [holder.process.pid]
    assert EmbeddedServer(home).info() is None
    holder.finish()


def test_data_survives_a_restart(home: Path) -> None:
    server = EmbeddedServer(home)
    info = server.acquire()
    url = f"host={info.socket_dir} port={info.port} dbname=postgres user=postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE kept")
    server.release()
    assert server.info() is None
    info = server.acquire()
    with psycopg.connect(url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    server.release()
    assert "kept" in names


def test_a_pinned_server_outlives_the_process_that_pinned_it(home: Path) -> None:
    env = {**os.environ, "SINGULARITY_HOME": str(home)}
    url = subprocess.run(
        [sys.executable, "-m", "singularity", "db", "url", "nexus"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=home,
    ).stdout.strip()
    assert url.startswith("postgresql://postgres@/nexus?host=")
    assert EmbeddedServer(home).info() is not None
    # The URL works from outside: here through libpq, as psql would use it.
    with psycopg.connect(url.replace("/nexus?", "/postgres?")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
