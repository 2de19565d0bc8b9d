"""The health and metrics server of a process: real services, a real bus, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from helpers import eventually
from nexus_support import wait_for_message
from observability.support import Idle, Served, samples, value
from singularity.centralcloud.service import CentralCloud
from singularity.config import Settings, load_settings
from singularity.nexus.service import Nexus
from singularity.observability.server import open_observability
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext, run_services
from singularity.shared_queue import QUEUES, LlmRequest, Publisher
from singularity.testing.openai_server import MockOpenAI, Reply


@pytest.fixture
async def served(
    nexus_settings: Settings, cluster: Cluster, llm: MockOpenAI
) -> AsyncIterator[Served]:
    """CentralCloud and Nexus in one process, as `singularity up` runs them."""
    async with Served([CentralCloud(), Nexus(web=False)], nexus_settings, cluster) as running:
        yield running


async def test_health_is_ok_and_metrics_are_prometheus_text_while_services_run(
    served: Served,
) -> None:
    health = await served.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "services": {"centralcloud": "running", "nexus": "running"},
    }
    live = await served.get("/livez")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})

    text = await served.metrics()
    found = samples(text)  # parsed: valid Prometheus text
    assert value(text, "singularity_service_up", service="centralcloud") == 1
    assert value(text, "singularity_service_up", service="nexus") == 1
    for spec in QUEUES:
        for queue in (spec.name, spec.dead_letter):
            assert ("singularity_queue_depth", frozenset({("queue", queue)})) in found
            age = value(text, "singularity_queue_oldest_age_seconds", queue=queue)
            assert age is not None and age >= 0
    pending = value(text, "singularity_pending_approvals")
    assert pending is not None and pending >= 0
    # Nexus's consumers are counted from the start, every outcome at its value so far.
    for outcome in ("ok", "failed", "dead_lettered", "retried"):
        labels = {"queue": "llm_requests", "outcome": outcome}
        assert value(text, "singularity_messages_handled_total", **labels) is not None
    assert value(text, "process_resident_memory_bytes") is not None


async def test_queue_depth_counts_a_message_waiting_on_the_bus(
    served: Served, bus_pool: AsyncConnectionPool
) -> None:
    # No Genesis runs here: a job request waits on its queue until this test takes it away.
    before = value(await served.metrics(), "singularity_queue_depth", queue="job_requests")
    assert before is not None
    body = {"id": f"job-{uuid.uuid4().hex[:8]}", "code": "print(1)", "language": "python"}
    msg_id = await Publisher(bus_pool).send("job_requests", body)
    try:

        async def grown() -> bool:
            depth = value(await served.metrics(), "singularity_queue_depth", queue="job_requests")
            return depth == before + 1

        await eventually(grown, seconds=15)  # the depths are cached for about 2 s
    finally:
        async with bus_pool.connection() as conn:
            await conn.execute("SELECT pgmq.delete('job_requests', %s::bigint)", (msg_id,))


async def test_a_routed_llm_request_counts_its_tokens_cost_and_handling(
    served: Served, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    llm.script("alpha", Reply("yes", prompt_tokens=200, completion_tokens=10))
    before = await served.metrics()
    request = LlmRequest.model_validate(
        {
            "request_id": str(uuid.uuid4()),
            "reply_to": reply_queue,
            "agent_id": "agent-7",
            "task_type": "classifier",
            "messages": [{"role": "user", "content": "Is this a bug?"}],
        }
    )
    await Publisher(bus_pool).send("llm_requests", request)
    result = await wait_for_message(bus_pool, reply_queue, request_id=request.request_id)
    assert result["model"] == "alpha"

    async def counted() -> bool:
        after = await served.metrics()
        return _grew(before, after, "singularity_messages_handled_total", 1, **_ok_llm)

    await eventually(counted)
    after = await served.metrics()
    assert _grew(before, after, "singularity_llm_tokens_total", 200, model="alpha", kind="prompt")
    assert _grew(
        before, after, "singularity_llm_tokens_total", 10, model="alpha", kind="completion"
    )
    # 200 x $1/M + 10 x $2/M
    assert _grew(before, after, "singularity_llm_cost_usd_total", 0.00022, model="alpha")
    assert _grew(before, after, "singularity_handle_seconds_count", 1, queue="llm_requests")


_ok_llm = {"queue": "llm_requests", "outcome": "ok"}


def _grew(before: str, after: str, name: str, by: float, **labels: str) -> bool:
    return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0) == (
        pytest.approx(by)
    )


async def test_health_names_a_service_that_has_not_started_or_has_stopped(
    settings: Settings, cluster: Cluster
) -> None:
    waiting, ending = Idle("waiting", becomes_ready=False), Idle("ending")
    served = Served([Idle("steady"), waiting, ending], settings, cluster)
    served.start()
    try:
        ending.end.set()  # its run returns: the others go on

        async def reported() -> bool:
            return (await served.get("/healthz")).json()["services"] == {
                "steady": "running",
                "waiting": "starting",
                "ending": "stopped",
            }

        await eventually(reported)
        health = await served.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (503, "unavailable")
        text = await served.metrics()
        assert value(text, "singularity_service_up", service="steady") == 1
        assert value(text, "singularity_service_up", service="waiting") == 0
        assert value(text, "singularity_service_up", service="ending") == 0
    finally:
        served.stop.set()
        await asyncio.wait_for(served.task, 30)


async def test_after_the_services_stop_health_fails_and_the_port_closes(
    settings: Settings, cluster: Cluster
) -> None:
    async with Served([Idle("one"), Idle("two")], settings, cluster) as served:
        assert (await served.get("/healthz")).status_code == 200
    # The app itself still answers (the socket is gone): everything stopped.
    transport = httpx.ASGITransport(app=served.observability.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://process") as client:
        health = await client.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {
        "status": "unavailable",
        "services": {"one": "stopped", "two": "stopped"},
    }
    with pytest.raises(httpx.ConnectError):
        await served.get("/livez")


async def test_an_unreachable_database_fails_health_but_not_liveness(
    platform_env: dict[str, str],
) -> None:
    closed = _closed_port()
    settings = load_settings(_env_file=None, db_host="127.0.0.1", db_port=closed)
    async with Served([Idle("genesis")], settings, Cluster(settings)) as served:
        health = await served.get("/healthz")
        assert health.status_code == 503
        state = health.json()["services"]["genesis"]
        assert state.startswith("database unreachable: ")
        assert f"127.0.0.1:{closed}" in state
        assert (await served.get("/livez")).status_code == 200
        text = await served.metrics()  # still served, without what the bus would have said
        assert value(text, "singularity_service_up", service="genesis") == 1
        assert not [name for name, _ in samples(text) if name.startswith("singularity_queue")]


async def test_a_port_in_use_costs_the_metrics_not_the_services(
    settings: Settings, cluster: Cluster
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = settings.model_copy(update={"singularity_metrics_port": port})
        context = ServiceContext(busy, cluster)
        service, stop = Idle("steady"), asyncio.Event()
        with capture_logs() as logs:
            running = asyncio.create_task(run_services([service], context, stop))
            await asyncio.wait_for(service.ready.wait(), 30)
            stop.set()
            await asyncio.wait_for(running, 30)
    unavailable = [e for e in logs if e["event"] == "metrics_unavailable"]
    assert len(unavailable) == 1
    assert unavailable[0]["address"] == f"127.0.0.1:{port}"
    assert "SINGULARITY_METRICS_PORT" in unavailable[0]["hint"]
    assert not [e for e in logs if e["event"] == "metrics_serving"]


async def test_a_negative_port_turns_the_server_off(settings: Settings, cluster: Cluster) -> None:
    off = settings.model_copy(update={"singularity_metrics_port": -1})
    with capture_logs() as logs:
        assert open_observability(ServiceContext(off, cluster), [Idle("x")]) is None
    assert logs == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
