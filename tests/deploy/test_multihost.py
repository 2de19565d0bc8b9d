"""Many machines, on one: a database host, a Singularity host and two Genesis workers, each in
a network namespace of its own on one switch. A worker cut off from the network in the middle
of its jobs loses them to the other worker once their visibility timeout runs out; every job
is answered exactly once, and the cut-off worker coming back doubles nothing. A repository
that only the Singularity host may read travels to a worker as a workspace snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import EXTERNAL
from deploy.netns_support import (
    Host,
    Network,
    Postgres,
    Process,
    network,
    platform_command,
    require_netns,
)
from genesis_support import BAD_DIFF, GOOD_DIFF, TEST_COMMAND, make_repo, require_bwrap
from helpers import eventually
from singularity.config import Settings
from singularity.postgres.topology import Role
from singularity.shared_queue import JobRequest

# It builds its own database server: one run per CI run is enough, the embedded pass.
pytestmark = pytest.mark.skipif(
    EXTERNAL, reason="builds its own database server: runs in the pass without an external one"
)

JOBS = 12
CONCURRENCY = 3  # per worker: both hold jobs at once, the rest wait in the queue
VISIBILITY_S = 4
JOB_S = 3
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex[:12]}"
ROLE_PASSWORDS = {role: f"{role.value}-{uuid.uuid4().hex[:12]}" for role in Role}
DONE_EVENTS = ("job_done", "job_answered_again")

# Runs on the Singularity host: sends the jobs (JSON on stdin) as the singularity role.
PUBLISH = """
import asyncio, json, sys
from singularity.config import load_settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import JobRequest, Publisher

async def main() -> None:
    jobs = [JobRequest.model_validate(job) for job in json.load(sys.stdin)]
    endpoint = Cluster(load_settings()).service(Role.SINGULARITY, Database.SHARED_QUEUE)
    pool = await open_pool(endpoint, name="publish", max_size=1)
    try:
        print(json.dumps(await Publisher(pool).send_batch("job_requests", jobs)))
    finally:
        await pool.close()

asyncio.run(main())
"""

# Runs on the Singularity host: experiments (JSON on stdin), each on a workspace snapshot of its
# repository, or on the repository's path when it says "by_path"; prints the snapshot ids.
EXPERIMENT = """
import asyncio, json, sys
from pathlib import Path
from singularity.config import load_settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import ExperimentRequest, Publisher

async def main() -> None:
    endpoint = Cluster(load_settings()).service(Role.SINGULARITY, Database.SHARED_QUEUE)
    pool = await open_pool(endpoint, name="experiment", max_size=1)
    publisher, sent = Publisher(pool), []
    try:
        for asked in json.load(sys.stdin):
            repo = asked.pop("repo")
            if asked.pop("by_path"):
                asked["repo"] = repo
            else:
                published = await publisher.publish_workspace(Path(repo))
                asked["workspace"] = published.id
                sent.append([published.id, published.blobs_sent])
            await publisher.send("experiment_requests", ExperimentRequest.model_validate(asked))
    finally:
        await pool.close()
    print(json.dumps(sent))

asyncio.run(main())
"""


# Runs on a worker host: a transaction holding a row lock, as a worker's is while it archives
# a message, on the connection settings every part of the platform uses.
HOLD_LOCK = """
import sys, time
from singularity.postgres.connect import connection
from singularity.postgres.endpoint import Endpoint

endpoint = Endpoint(sys.argv[1], 5432, "postgres", "postgres", sys.argv[2])
with connection(endpoint, autocommit=False) as conn:
    conn.execute("SELECT id FROM held WHERE id = 1 FOR UPDATE")
    print("locked", flush=True)
    time.sleep(600)
"""


@dataclass
class Platform:
    """The hosts, the database server, and the processes started on the hosts."""

    net: Network
    db: Postgres
    root: Path
    processes: list[Process] = field(default_factory=list)

    def env(self, host: Host, **settings: str) -> dict[str, str]:
        """A clean environment (no platform setting of the test process) pointing at the db."""
        clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        return {
            **clean,
            "SINGULARITY_HOME": str(self.home(host)),
            "DB_HOST": self.db.host.address,
            "DB_PORT": str(Postgres.PORT),
            "DB_USER": "postgres",
            "SINGULARITY_LOG_FORMAT": "json",
            "SINGULARITY_METRICS_PORT": "-1",
            **settings,
        }

    def home(self, host: Host) -> Path:
        home = self.root / host.name
        home.mkdir(exist_ok=True)
        return home

    async def run(
        self, host: Host, what: str, argv: list[str], env: dict[str, str], stdin: str = ""
    ) -> str:
        """Run a command on a host to its end; its output, or a failure showing it."""
        done = await asyncio.to_thread(
            subprocess.run,
            host.command(*argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.home(host),
            timeout=300,
        )
        assert done.returncode == 0, f"{what} on {host.name}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start_worker(self, host: Host, **settings: str) -> Process:
        env = self.env(
            host,
            SINGULARITY_ROLE_PASSWORD_GENESIS=ROLE_PASSWORDS[Role.GENESIS],
            GENESIS_CONCURRENCY=str(CONCURRENCY),
            GENESIS_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S),
            **settings,
        )
        log = self.root / f"{host.name}.log"
        worker = Process(host, platform_command("run", "genesis"), env, log, self.home(host))
        self.processes.append(worker)
        return worker


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    require_netns()
    require_bwrap()
    with network(f"sgt{os.getpid()}") as net:
        server = Postgres(net.add("db"), tmp_path / "db", ADMIN_PASSWORD)
        for name in ("singularity", "w1", "w2"):
            net.add(name)
        built = Platform(net, server, tmp_path)
        try:
            server.start()
            yield built
        finally:
            # Cables back in first, so that a worker left cut off by a failure stops promptly.
            for host in net.hosts.values():
                with contextlib.suppress(RuntimeError):
                    net.restore(host)
            for process in built.processes:
                process.stop(timeout=30)
                print(f"--- {process.host.name}\n{process.log.tail(60)}")  # shown on failure
            server.stop()


async def test_a_worker_cut_off_mid_job_loses_its_jobs_to_the_other_and_none_is_doubled(
    platform: Platform,
) -> None:
    net = platform.net
    singularity, w1, w2 = net.hosts["singularity"], net.hosts["w1"], net.hosts["w2"]
    admin_env = platform.env(
        singularity,
        DB_PASSWORD=ADMIN_PASSWORD,
        **{f"SINGULARITY_ROLE_PASSWORD_{r.value.upper()}": p for r, p in ROLE_PASSWORDS.items()},
    )
    await platform.run(singularity, "db init", platform_command("db", "init"), admin_env)
    workers = {host.name: platform.start_worker(host) for host in (w1, w2)}
    await eventually(_started(workers), seconds=120)
    assert await _reachable(net, w1, platform.db.host)

    jobs = [_job(i) for i in range(JOBS)]
    ids = {job.id for job in jobs}
    publisher_env = platform.env(
        singularity, SINGULARITY_ROLE_PASSWORD_SINGULARITY=ROLE_PASSWORDS[Role.SINGULARITY]
    )
    payload = json.dumps([job.model_dump(exclude_none=True) for job in jobs])
    argv = [sys.executable, "-c", PUBLISH]
    async with await psycopg.AsyncConnection.connect(
        platform.db.socket_conninfo + " dbname=shared_queue", autocommit=True
    ) as bus:
        publish = asyncio.create_task(
            platform.run(singularity, "publishing", argv, publisher_env, payload)
        )

        # Both workers full (each takes at most CONCURRENCY): w1 is in the middle of its jobs.
        await eventually(_held(bus, 2 * CONCURRENCY), seconds=60)
        net.cut(w1)
        assert len(json.loads(await publish)) == JOBS
        assert not await _reachable(net, w1, platform.db.host)

        await eventually(_answered(bus, ids), seconds=120)
        results = await _results(bus, ids)
        assert sorted(r["request_id"] for r in results) == sorted(ids)  # one each, none missing
        for result in results:
            assert result["status"] == "OK", result
            assert result["output"] == f"done {result['request_id']}\n"
        deliveries = await _deliveries(bus, ids)
        assert sorted(deliveries) == sorted(ids), "each job archived once"
        redelivered = {key for key, read_ct in deliveries.items() if read_ct >= 2}
        assert redelivered, "w1 was cut off holding jobs: they must have been delivered again"
        assert redelivered <= _finished(workers["w2"]), "w2 finished what w1 held"

        # The cut-off worker comes back: it finishes what it held, but publishes nothing.
        net.restore(w1)
        await eventually(lambda: _reachable(net, w1, platform.db.host), seconds=30)
        await eventually(_finishes(workers["w1"], redelivered), seconds=120)
        assert workers["w1"].stop() == 0, workers["w1"].log.tail()
        stopped = [
            event
            for event in workers["w1"].log.events("consumer_stopped")
            if event.get("queue") == "job_requests"
        ]
        assert stopped and stopped[0]["duplicates"] >= len(redelivered), stopped
        again = await _results(bus, ids)
        assert sorted(r["request_id"] for r in again) == sorted(ids), "no late duplicate"
        assert await _deliveries(bus, ids) == deliveries


async def test_a_cut_off_hosts_transaction_ends_and_releases_its_locks(platform: Platform) -> None:
    net, w1 = platform.net, platform.net.hosts["w1"]
    async with await psycopg.AsyncConnection.connect(
        platform.db.socket_conninfo + " dbname=postgres", autocommit=True
    ) as admin:
        await admin.execute("CREATE TABLE held (id int PRIMARY KEY)")
        await admin.execute("INSERT INTO held VALUES (1)")
        argv = [sys.executable, "-c", HOLD_LOCK, platform.db.host.address, ADMIN_PASSWORD]
        log = platform.root / "holder.log"
        holder = Process(w1, argv, platform.env(w1), log)
        platform.processes.append(holder)

        def locked() -> Any:
            async def check() -> bool:
                assert holder.running, holder.log.tail()
                return "locked" in holder.log.tail()

            return check

        await eventually(locked(), seconds=60)
        assert not await _can_lock(admin)
        net.cut(w1)
        # The server's keepalive (10 s idle, then 3 probes 5 s apart) ends the session: the
        # kernel's default would keep the lock for two hours.
        await eventually(lambda: _can_lock(admin), seconds=90)
        row = await (
            await admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s",
                (w1.address,),
            )
        ).fetchone()
        assert row is not None and row[0] == 0, "the cut-off host's session is gone"


async def test_a_repository_only_the_singularity_host_has_is_tested_by_a_worker_elsewhere(
    platform: Platform,
) -> None:
    net = platform.net
    singularity, w1 = net.hosts["singularity"], net.hosts["w1"]
    admin_env = platform.env(
        singularity,
        DB_PASSWORD=ADMIN_PASSWORD,
        **{f"SINGULARITY_ROLE_PASSWORD_{r.value.upper()}": p for r, p in ROLE_PASSWORDS.items()},
    )
    await platform.run(singularity, "db init", platform_command("db", "init"), admin_env)
    # The worker may read repositories under its own folder only; the repository is elsewhere.
    allowed = platform.root / "w1-repositories"
    allowed.mkdir()
    elsewhere = platform.root / "singularity-only"
    elsewhere.mkdir()
    repo = make_repo(elsewhere)
    workers = {"w1": platform.start_worker(w1, GENESIS_REPO_ROOTS=str(allowed))}
    await eventually(_started(workers), seconds=120)

    asked = {
        "by-path": {"diff": GOOD_DIFF, "by_path": True},
        "good": {"diff": GOOD_DIFF, "by_path": False},
        "bad": {"diff": BAD_DIFF, "by_path": False},
    }
    ids = {name: f"multihost-{name}-{uuid.uuid4().hex[:8]}" for name in asked}
    requests = [
        {"id": ids[name], "repo": str(repo), "test_command": TEST_COMMAND, **fields}
        for name, fields in asked.items()
    ]
    publisher_env = platform.env(
        singularity, SINGULARITY_ROLE_PASSWORD_SINGULARITY=ROLE_PASSWORDS[Role.SINGULARITY]
    )
    argv = [sys.executable, "-c", EXPERIMENT]
    sent = json.loads(
        await platform.run(singularity, "experiments", argv, publisher_env, json.dumps(requests))
    )
    # The same tree twice: the second publish found every blob in the bus already.
    assert sent[0][0] == sent[1][0] and sent[0][1] > 0 and sent[1][1] == 0

    async with await psycopg.AsyncConnection.connect(
        platform.db.socket_conninfo + " dbname=shared_queue", autocommit=True
    ) as bus:
        await eventually(_answered_on(bus, "experiment", set(ids.values())), seconds=180)
        results = {r["request_id"]: r for r in await _results(bus, set(ids.values()), "experiment")}
    refused = results[ids["by-path"]]
    assert refused["status"] == "error" and "outside the directories" in refused["error"]
    good, bad = results[ids["good"]], results[ids["bad"]]
    assert (good["status"], good["recommendation"], good["success_rate"]) == (
        "completed",
        "merge",
        1.0,
    ), good
    assert (bad["status"], bad["recommendation"]) == ("completed", "rollback"), bad
    assert bad["success_rate"] < 1 and bad["baseline"]["passed"] == 3
    done = {event["experiment_id"] for event in workers["w1"].log.events("experiment_done")}
    assert {ids["good"], ids["bad"]} <= done


async def _can_lock(conn: psycopg.AsyncConnection) -> bool:
    try:
        await conn.execute("SELECT id FROM held WHERE id = 1 FOR UPDATE NOWAIT")
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def _job(i: int) -> JobRequest:
    key = f"multihost-{i}-{uuid.uuid4().hex[:8]}"
    code = f"import time\ntime.sleep({JOB_S})\nprint('done', {key!r})\n"
    return JobRequest(id=key, code=code, language="python", reply_to="job_results")


def _started(workers: dict[str, Process]) -> Any:
    async def check() -> bool:
        for name, worker in workers.items():
            assert worker.running, f"{name} exited:\n{worker.log.tail()}"
        return all(worker.log.events("genesis_started") for worker in workers.values())

    return check


def _held(bus: psycopg.AsyncConnection, expected: int) -> Any:
    async def check() -> bool:
        query = "SELECT count(*) FROM pgmq.q_job_requests WHERE read_ct >= 1 AND vt > now()"
        row = await (await bus.execute(query)).fetchone()
        return bool(row and row[0] >= expected)

    return check


def _answered(bus: psycopg.AsyncConnection, ids: set[str]) -> Any:
    return _answered_on(bus, "job", ids)


def _answered_on(bus: psycopg.AsyncConnection, kind: str, ids: set[str]) -> Any:
    async def check() -> bool:
        return len(await _results(bus, ids, kind)) >= len(ids)

    return check


async def _results(
    bus: psycopg.AsyncConnection, ids: set[str], kind: str = "job"
) -> list[dict[str, Any]]:
    """The answers to these requests, in the reply queue and in its archive."""
    query = (
        f"SELECT message FROM pgmq.q_{kind}_results WHERE message->>'request_id' = ANY(%(ids)s)"
        " UNION ALL"
        f" SELECT message FROM pgmq.a_{kind}_results WHERE message->>'request_id' = ANY(%(ids)s)"
    )
    rows = await (await bus.execute(query, {"ids": list(ids)})).fetchall()
    return [row[0] for row in rows]


async def _deliveries(bus: psycopg.AsyncConnection, ids: set[str]) -> dict[str, int]:
    """How many times each archived job was delivered."""
    query = "SELECT message->>'id', read_ct FROM pgmq.a_job_requests WHERE message->>'id' = ANY(%s)"
    rows = await (await bus.execute(query, (list(ids),))).fetchall()
    found: dict[str, int] = {}
    for key, read_ct in rows:
        assert key not in found, f"{key} archived twice"
        found[key] = read_ct
    return found


def _finished(worker: Process) -> set[str]:
    return {
        event["request_id"]
        for name in DONE_EVENTS
        for event in worker.log.events(name)
        if "request_id" in event
    }


def _finishes(worker: Process, keys: set[str]) -> Any:
    async def check() -> bool:
        assert worker.running, worker.log.tail()
        return keys <= _finished(worker)

    return check


async def _reachable(net: Network, source: Host, target: Host) -> bool:
    return await asyncio.to_thread(net.reachable, source, target, Postgres.PORT)
