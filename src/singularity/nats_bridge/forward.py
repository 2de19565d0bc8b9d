"""NATS to the bus: a request on one of the old subjects, checked and published to its queue.

Each forwarded request gets a fresh `request_id` (the key the answer comes back under) and the
bridge's own `reply_to`; the caller's own `request_id`, if it sent one, is put back into the
answer, so the old system sees the id it chose.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import ValidationError

from singularity.nats_bridge.pending import Pending
from singularity.nats_bridge.routes import Route
from singularity.postgres.connect import describe_error
from singularity.shared_queue import BusMessage, Publisher
from singularity.shared_queue.messages import ErrorInfo

__all__ = ["Forwarder", "InvalidRequest", "Prepared", "answer_body", "error_body", "prepare"]

log = structlog.get_logger(__name__)


class InvalidRequest(Exception):
    """A NATS body that is not a request of its subject; `str()` says why."""


@dataclass(frozen=True)
class Prepared:
    """A request ready for the bus."""

    request_id: str
    message: BusMessage
    caller_request_id: Any


def prepare(route: Route, data: bytes, reply_to: str) -> Prepared:
    """The bus message for a NATS body, or InvalidRequest with the reason."""
    try:
        body = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise InvalidRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body must be a JSON object, not {type(body).__name__}")
    request_id = str(uuid.uuid4())
    fields = {**body, "request_id": request_id, "reply_to": reply_to}
    if route.id_field and fields.get("id") is None:
        fields["id"] = request_id
    try:
        message = route.request.model_validate(fields)
    except ValidationError as exc:
        raise InvalidRequest(_summary(exc)) from None
    return Prepared(request_id, message, body.get("request_id"))


def error_body(code: str, message: str) -> bytes:
    """The NATS reply for a request the bridge could not forward."""
    return json.dumps({"error": ErrorInfo(code=code, message=message).model_dump()}).encode()


def answer_body(result: BusMessage, caller_request_id: Any) -> bytes:
    """The NATS reply carrying a result, under the caller's own request_id if it had one."""
    body = result.model_dump(mode="json", exclude_none=True)
    if caller_request_id is not None:
        body["request_id"] = caller_request_id
    return json.dumps(body).encode()


class Forwarder:
    """The NATS subscription callbacks: one request in, one message on the bus out."""

    def __init__(
        self, nats: NatsClient, publisher: Publisher, pending: Pending, instance: int
    ) -> None:
        self.nats = nats
        self.publisher = publisher
        self.pending = pending
        self.instance = instance

    async def forward(self, route: Route, msg: Msg) -> None:
        reply = msg.reply or None
        try:
            prepared = prepare(route, msg.data, route.reply_to(self.instance))
        except InvalidRequest as exc:
            log.warning("nats_request_invalid", subject=msg.subject, reason=str(exc))
            if reply is not None:
                await self.nats.publish(reply, error_body("invalid_request", str(exc)))
            return
        # Remembered before it is sent: the answer may come back before `send` returns.
        self.pending.add(prepared.request_id, msg.subject, reply, prepared.caller_request_id)
        try:
            await self.publisher.send(route.requests, prepared.message)
        except psycopg.Error as exc:
            self.pending.remove(prepared.request_id)
            reason = f"the bus did not take the request: {describe_error(exc)}"
            log.error("nats_request_failed", subject=msg.subject, reason=reason)
            if reply is not None:
                await self.nats.publish(reply, error_body("unavailable", reason))
            return
        log.info(
            "nats_request_forwarded",
            subject=msg.subject,
            queue=route.requests,
            request_id=prepared.request_id,
            caller_request_id=prepared.caller_request_id,
            # Without a reply subject nobody waits: the answer is archived when it comes.
            reply_subject=reply,
        )


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
