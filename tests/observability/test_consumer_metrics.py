"""Every consumer is counted by the one consumer runtime: each outcome, and handler time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from helpers import Running, eventually, job, rows_are
from singularity.observability.metrics import COLLECTORS
from singularity.shared_queue import (
    Consumer,
    ConsumerOptions,
    Delivery,
    JobRequest,
    PermanentFailure,
    Publisher,
)

FAST = ConsumerOptions(poll_interval_s=0.05, retry_base_s=0.05, max_deliveries=2)


async def test_each_outcome_of_a_delivery_is_counted_once(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    registry = CollectorRegistry()
    for collector in COLLECTORS:
        registry.register(collector)

    async def handle(delivery: Delivery[JobRequest]) -> None:
        if delivery.message.code == "refuse":
            raise PermanentFailure("never")
        if delivery.message.code == "crash":
            raise RuntimeError("boom")

    publisher = Publisher(bus_pool)
    for code in ("print(1)", "refuse", "crash"):
        await publisher.send(queue, _job(code))
    await publisher.send(queue, {"not": "a job"})

    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 3))
        await eventually(rows_are(bus_pool, f"a_{queue}", 1))

    def handled(outcome: str) -> float | None:
        labels = {"queue": queue, "outcome": outcome}
        return registry.get_sample_value("singularity_messages_handled_total", labels)

    # The crash: retried once, then failed on its last delivery; refused and unreadable:
    # dead-lettered at once.
    assert {o: handled(o) for o in ("ok", "retried", "failed", "dead_lettered")} == {
        "ok": 1,
        "retried": 1,
        "failed": 1,
        "dead_lettered": 2,
    }
    # The handler ran four times (the unreadable message never reached it).
    count = registry.get_sample_value("singularity_handle_seconds_count", {"queue": queue})
    assert count == 4


def _job(code: str) -> JobRequest:
    return job().model_copy(update={"code": code})
