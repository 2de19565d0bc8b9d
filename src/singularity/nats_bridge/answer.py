"""The bus to NATS: an answer on the bridge's reply queue, sent to its requester's subject."""

from __future__ import annotations

import structlog
from nats.aio.client import Client as NatsClient

from singularity.nats_bridge.forward import answer_body
from singularity.nats_bridge.pending import Pending
from singularity.shared_queue import BusMessage, Delivery

__all__ = ["Answerer"]

log = structlog.get_logger(__name__)


class Answerer:
    """The handler of one reply queue. Every answer is archived by the consumer runtime once
    this returns (the audit trail), whether or not someone on NATS still waits for it."""

    def __init__(self, nats: NatsClient, pending: Pending) -> None:
        self.nats = nats
        self.pending = pending

    async def __call__(self, delivery: Delivery[BusMessage]) -> None:
        waiting = self.pending.get(delivery.request_id)
        if waiting is None:
            log.warning(
                "result_unmatched",
                queue=delivery.queue,
                request_id=delivery.request_id,
                reason="no NATS request of this bridge waits for it (timed out, or the "
                "bridge that forwarded it restarted)",
            )
            return
        if waiting.reply is not None:
            # A failure here (NATS closed) raises: the consumer retries the delivery.
            await self.nats.publish(
                waiting.reply, answer_body(delivery.message, waiting.caller_request_id)
            )
        self.pending.remove(delivery.request_id)
        log.info(
            "nats_request_answered",
            subject=waiting.subject,
            request_id=delivery.request_id,
            caller_request_id=waiting.caller_request_id,
            waited_ms=self.pending.age_ms(waiting),
            replied=waiting.reply is not None,
        )
