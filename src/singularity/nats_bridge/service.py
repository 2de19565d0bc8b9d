"""The NATS bridge service (`singularity run nats-bridge`; not part of `singularity up`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from singularity.nats_bridge.answer import Answerer
from singularity.nats_bridge.forward import Forwarder
from singularity.nats_bridge.instance import claim_instance, reply_queues
from singularity.nats_bridge.link import open_nats, shown_url
from singularity.nats_bridge.pending import Pending
from singularity.nats_bridge.routes import QUEUE_GROUP, ROUTES, Route
from singularity.postgres.topology import Database, Role
from singularity.service_context import ServiceContext, run_tasks
from singularity.shared_queue import open_bus
from singularity.shared_queue.waiting import race

__all__ = ["NatsBridge"]

log = structlog.get_logger(__name__)


class NatsBridge:
    """Forwards the old system's NATS requests onto the bus and their answers back."""

    name = "nats-bridge"

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.pending: Pending | None = None

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        settings, cluster = context.settings, context.cluster
        instance = settings.nats_bridge_instance
        # The bridge publishes and reads answers exactly as a Singularity instance does.
        endpoint = cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(claim_instance(endpoint, instance))
            bus = await stack.enter_async_context(
                open_bus(endpoint, settings, name="nats-bridge-bus", max_connections=8)
            )
            client = await stack.enter_async_context(
                open_nats(settings, name=f"singularity-nats-bridge-{instance}")
            )
            pending = self.pending = Pending(settings.nats_bridge_timeout_s)
            answerer = Answerer(client, pending)
            consumers = [
                bus.consumer(route.reply_to(instance), route.result, answerer) for route in ROUTES
            ]
            tasks = [
                asyncio.create_task(consumer.run(stop), name=f"nats-bridge:{consumer.queue}")
                for consumer in consumers
            ]
            tasks.append(asyncio.create_task(_expire(pending, stop), name="nats-bridge:expiry"))
            forwarder = Forwarder(client, bus.publisher, pending, instance)
            prefix = settings.nats_bridge_subject_prefix
            subscriptions = [
                await client.subscribe(
                    prefix + route.subject, queue=QUEUE_GROUP, cb=_callback(forwarder, route)
                )
                for route in ROUTES
            ]
            await client.flush()  # the server has the subscriptions before we say we are ready
            tasks.append(
                asyncio.create_task(
                    _unsubscribe(client, subscriptions, stop), name="nats-bridge:stop"
                )
            )
            log.info(
                "nats_bridge_started",
                subjects=[prefix + route.subject for route in ROUTES],
                queue_group=QUEUE_GROUP,
                url=shown_url(settings.nats_url),
                instance=instance,
                reply_queues=reply_queues(instance),
                timeout_s=settings.nats_bridge_timeout_s,
            )
            self.ready.set()
            await run_tasks(tasks, stop)
            log.info("nats_bridge_stopped", still_waiting=len(pending))


def _callback(forwarder: Forwarder, route: Route) -> Callable[[Msg], Awaitable[None]]:
    async def callback(msg: Msg) -> None:
        await forwarder.forward(route, msg)

    return callback


async def _unsubscribe(
    client: NatsClient, subscriptions: list[Subscription], stop: asyncio.Event
) -> None:
    """On stop, take no new requests first: answers may still come while the rest stops."""
    await stop.wait()
    for subscription in subscriptions:
        with contextlib.suppress(Exception):  # a closed connection has no subscription left
            await subscription.unsubscribe()


async def _expire(pending: Pending, stop: asyncio.Event) -> None:
    period = max(0.05, min(5.0, pending.timeout_s / 4))
    while not stop.is_set():
        await race(stop.wait(), seconds=period)
        for request_id, entry in pending.expire():
            # The requester's own NATS timeout has long fired; a later answer is archived.
            log.warning(
                "nats_request_expired",
                subject=entry.subject,
                request_id=request_id,
                timeout_s=pending.timeout_s,
            )
