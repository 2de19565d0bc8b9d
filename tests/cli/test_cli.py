"""The `singularity` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import embedded_only
from helpers import singularity
from singularity.config import load_settings
from singularity.nexus.token import ui_token
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, connection
from singularity.postgres.migrations import head_revision
from singularity.postgres.topology import Database
from singularity.shared_queue.deadletter import dead_letter


@pytest.fixture
def clean_jobs(cluster: Cluster) -> Iterator[None]:
    yield
    with connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        for queue in ("job_requests", "job_requests_dlq"):
            conn.execute("SELECT pgmq.purge_queue(%s)", (queue,))


BAD_INPUT = [
    (["queue", "send", "nope", "{}"], "no queue named 'nope'"),
    (["queue", "send", "job_requests", "not json"], "the message is not valid JSON"),
    (
        ["queue", "send", "job_requests", '{"id": "1"}'],
        "not a valid job_requests message: a job is either `code` in a `language`, or a `command`",
    ),
    (["queue", "send", "job_requests", '{"code": "1", "language": "x"}'], "message: id: Field"),
    (["queue", "read", "job_requests", "--n", "abc"], "Invalid value for '--n'"),
    (["queue", "read", "Bad Name"], "is not a valid queue name"),
    (["queue", "dlq", "redrive", "nope"], "no queue named 'nope'"),
    (["db", "url", "bogus"], "unknown database 'bogus'"),
    (["run", "bogus"], "unknown service 'bogus'; choose one of: centralcloud"),
    (["bogus"], "No such command 'bogus'"),
    (["queue", "send", "job_requests"], "Missing argument 'body'"),
    (["queue", "send", "job_requests", "[" * 5000 + "]" * 5000], "nested too deeply"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_bad_input_gets_one_clear_line(cluster: Cluster, args: list[str], message: str) -> None:
    result = singularity(*args)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]


def test_a_bad_setting_gets_one_clear_line(cluster: Cluster) -> None:
    result = singularity("config", "show", env={"DB_PORT": "abc"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: DB_PORT: Input should be a valid integer, unable to parse string as an integer "
        "(got 'abc')"
    )


def test_an_unreachable_server_gets_one_clear_line(tmp_path: Path) -> None:
    result = singularity(
        "db",
        "status",
        env={"DB_HOST": "127.0.0.1", "DB_PORT": "1", "SINGULARITY_HOME": str(tmp_path)},
    )
    assert result.returncode == 0  # status reports it; it does not crash
    assert "no" in result.stdout and "Traceback" not in result.stderr
    result = singularity(
        "queue",
        "list",
        env={"DB_HOST": "127.0.0.1", "DB_PORT": "1", "SINGULARITY_HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to postgresql://")
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-very-secret",
        "NEXUS_DATABASE_URL": "postgresql://nexus:hunter2@db.example:5432/nexus",
        "SINGULARITY_HOME": str(tmp_path),
    }
    result = singularity("config", "show", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "sk-very-secret" not in result.stdout and "hunter2" not in result.stdout
    assert shown["settings"]["OPENAI_API_KEY"] == "****"
    assert (
        shown["settings"]["NEXUS_DATABASE_URL"] == "postgresql://nexus:****@db.example:5432/nexus"
    )
    assert shown["database_mode"] == "external"


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SHARED_QUEUE_RETENTION_DAYS=7\nNEXUS_DB=hitl\n")
    result = singularity("config", "show", "--json", cwd=tmp_path)
    settings = json.loads(result.stdout)["settings"]
    assert settings["SHARED_QUEUE_RETENTION_DAYS"] == 7
    assert settings["NEXUS_DB"] == "hitl"


def test_send_read_and_metrics(cluster: Cluster, clean_jobs: None) -> None:
    body = '{"id": "cli-1", "code": "print(2)", "language": "python"}'
    sent = singularity("queue", "send", "job_requests", body)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent to job_requests: msg_id ")
    read = singularity("queue", "read", "job_requests", "--json")
    messages = [json.loads(line) for line in read.stdout.splitlines()]
    assert [m["message"]["id"] for m in messages] == ["cli-1"]
    again = singularity("queue", "read", "job_requests", "--json")  # reading takes nothing
    assert again.stdout == read.stdout
    metrics = json.loads(singularity("queue", "metrics", "--json").stdout)
    jobs = next(m for m in metrics if m["queue"] == "job_requests")
    assert jobs["length"] == 1
    listed = singularity("queue", "list").stdout
    assert "job_requests  singularity -> genesis" in listed


def test_read_prints_a_message_of_any_depth(cluster: Cluster, clean_jobs: None) -> None:
    deep = '{"id": "deep", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    with connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        conn.execute("SELECT pgmq.send('job_requests', %s::jsonb)", (deep,))
    read = singularity("queue", "read", "job_requests", "--json")
    assert read.returncode == 0 and "Traceback" not in read.stderr, read.stderr
    assert read.stdout.startswith('{"msg_id": ') and '"message": {"x": [[[' in read.stdout


def test_dead_letters_are_listed_and_redriven(cluster: Cluster, clean_jobs: None) -> None:
    async def make_dead_letter() -> None:
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            row = await (
                await conn.execute(
                    "SELECT pgmq.send('job_requests', %s::jsonb)",
                    ('{"id": "poison", "code": "x", "language": "python"}',),
                )
            ).fetchone()
            assert row is not None
            await dead_letter(
                conn,
                queue="job_requests",
                dead_letter_queue="job_requests_dlq",
                msg_id=row[0],
                read_ct=5,
                enqueued_at=datetime.now(UTC),
                reason="failed 5 times; last error: RuntimeError: sandbox unavailable",
            )

    asyncio.run(make_dead_letter())
    listed = singularity("queue", "dlq", "list", "job_requests")
    assert "sandbox unavailable" in listed.stdout
    redriven = singularity("queue", "dlq", "redrive", "job_requests")
    assert redriven.returncode == 0, redriven.stderr
    assert "redrove 1 message(s) from job_requests_dlq to job_requests" in redriven.stdout
    read = singularity("queue", "read", "job_requests", "--json")
    [message] = [json.loads(line) for line in read.stdout.splitlines()]
    assert message["message"]["id"] == "poison"
    assert message["read_ct"] == 0
    assert "no dead letters" in singularity("queue", "dlq", "list", "job_requests").stdout


def test_db_init_twice_and_status(cluster: Cluster, vector_available: bool) -> None:
    flags = [] if vector_available else ["--without-pgvector"]
    for _ in range(2):
        result = singularity("db", "init", *flags)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ready in ")
    statuses = json.loads(singularity("db", "status", "--json").stdout)
    assert [s["database"] for s in statuses] == [d.value for d in Database]
    assert all(s["reachable"] and s["up_to_date"] for s in statuses)
    nexus = next(s for s in statuses if s["database"] == "nexus")
    assert nexus["migration"] == head_revision(Database.NEXUS)
    assert {"approval_requests", "question_requests", "hitl_metrics"} <= {
        t["table"] for t in nexus["tables"]
    }
    migrated = singularity("db", "migrate")
    assert f"nexus: up to date (head {head_revision(Database.NEXUS)})" in migrated.stdout


def _start(*args: str, port: int | None = None) -> subprocess.Popen[str]:
    env = os.environ.copy()
    env["PORT"] = str(port or _free_port())  # the web UI of a Nexus in `up` or `run nexus`
    return subprocess.Popen(
        [sys.executable, "-m", "singularity", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(stream: object, text: str, seconds: float = 60) -> str:
    """Read lines until one holds `text`; returns everything read."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} not seen in:\n{''.join(seen)}")


def test_up_runs_until_ctrl_c_and_stops_cleanly(cluster: Cluster, vector_available: bool) -> None:
    flags = [] if vector_available else ["--without-pgvector"]
    port = _free_port()
    up = _start("up", *flags, port=port)
    banner = _wait_for(up.stdout, "Press Ctrl-C to stop")
    assert "Singularity is running" in banner
    assert "centralcloud, singularity, genesis, nexus" in banner
    token = ui_token(load_settings(_env_file=None))
    assert f"http://127.0.0.1:{port}/?token={token}" in banner
    _wait_for(up.stderr, "nexus_started")
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert json.load(health)["status"] == "ok"
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=30)
    assert up.returncode == 0, err
    assert "stopped" in out
    assert "centralcloud_stopped" in err and "nexus_stopped" in err
    assert "singularity_stopped" in err
    assert "Traceback" not in err


def test_run_serves_one_service_until_sigterm(cluster: Cluster) -> None:
    service = _start("run", "centralcloud")
    _wait_for(service.stderr, "bus_status")
    service.send_signal(signal.SIGTERM)
    _, err = service.communicate(timeout=30)
    assert service.returncode == 0, err
    assert "centralcloud_stopped" in err


@embedded_only
def test_running_a_service_before_db_init_names_the_fix(tmp_path: Path) -> None:
    result = singularity("run", "centralcloud", env={"SINGULARITY_HOME": str(tmp_path)})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert last.endswith("run `singularity db init` first)")
    assert "Traceback" not in result.stderr


def test_a_busy_web_port_is_one_clear_line(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = singularity("run", "nexus", env={"PORT": str(port)})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: the web UI cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another program uses it: set PORT to another port)"
    )
    assert "Traceback" not in result.stderr
