"""`singularity status` and `singularity doctor`, run as a user runs them, and the presence
of running services they read."""

from __future__ import annotations

import asyncio
import json
import os

from helpers import eventually, singularity
from singularity.config import Settings
from singularity.diagnostics import platform_status
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext, run_services


class Idle:
    """A service that only waits: what status sees of any service while it runs."""

    name = "singularity"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        self.started.set()
        await stop.wait()


async def test_a_running_service_is_seen_until_it_stops(
    settings: Settings, cluster: Cluster
) -> None:
    service, stop = Idle(), asyncio.Event()
    running = asyncio.create_task(run_services([service], ServiceContext(settings, cluster), stop))
    await service.started.wait()

    async def seen() -> bool:
        found = await platform_status(cluster)
        return any(s["pid"] == os.getpid() for s in found.services)

    await eventually(seen)
    found = await platform_status(cluster)
    mine = [s for s in found.services if s["pid"] == os.getpid()]
    assert [s["service"] for s in mine] == ["singularity"] and mine[0]["since"] is not None
    assert {"queue": "job_requests"}.items() <= next(
        q for q in found.queues if q["queue"] == "job_requests"
    ).items()
    assert found.pending_approvals is not None
    stop.set()
    await running

    async def gone() -> bool:
        return not await seen()

    await eventually(gone)


def test_status_prints_queues_and_the_ui() -> None:
    done = singularity("status", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["reachable"] and "/?token=" in shown["ui"]
    assert {"llm_requests", "genesis_llm_results_dlq"} <= {q["queue"] for q in shown["queues"]}
    text = singularity("status")
    assert text.returncode == 0 and "Queues" in text.stdout and "pending:" in text.stdout


def test_doctor_names_what_is_missing_and_how_to_fix_it() -> None:
    done = singularity("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    for name in ("database", "migrations", "bus", "sandbox", "language python"):
        assert checks[name]["verdict"] == "ok", checks[name]
    # The test environment has no model credentials: the one thing to fix, with the way.
    assert checks["models"]["verdict"] == "fail" and "OPENAI_BASE_URL" in checks["models"]["fix"]
    assert done.returncode == 1
    configured = singularity("doctor", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert configured.returncode == 0, configured.stdout
    assert "models" in configured.stdout and "fail" not in configured.stdout


def test_an_unreachable_server_is_one_line_and_a_fix() -> None:
    env = {"DB_HOST": "127.0.0.1", "DB_PORT": "1", "DB_USER": "nobody"}
    status = singularity("status", env=env)
    assert status.returncode == 1 and "unreachable" in status.stdout
    assert "Traceback" not in status.stdout + status.stderr
    doctor = singularity("doctor", "--json", env=env)
    database = json.loads(doctor.stdout)[0]
    assert database["name"] == "database" and database["verdict"] == "fail"
    assert "DB_HOST" in database["fix"]
    assert doctor.returncode == 1
