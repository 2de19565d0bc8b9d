"""What a handler sees and returns: a delivery, its replies, and the consumer's options."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from singularity.config import Settings
from singularity.shared_queue.messages import BusMessage

__all__ = [
    "ConsumerOptions",
    "Delivery",
    "Done",
    "Handler",
    "InvalidHandler",
    "PermanentFailure",
    "Reply",
    "as_replies",
]

M = TypeVar("M", bound=BaseModel)


class PermanentFailure(Exception):
    """Raised by a handler for a message that can never succeed: dead-lettered at once.

    `replies` (an error result for the asker, say) are sent in the transaction that moves the
    message to the dead-letter queue, so the asker hears of it exactly once.
    """

    def __init__(self, reason: str, *, replies: Sequence[Reply] = ()) -> None:
        super().__init__(reason)
        self.replies = list(replies)


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to send when (and only when) the message being handled is archived."""

    queue: str
    message: BusMessage | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery(Generic[M]):
    """One delivery of one message to a handler."""

    queue: str
    msg_id: int
    read_ct: int
    enqueued_at: datetime
    message: M
    key: str | None

    @property
    def request_id(self) -> str:
        """The request this message belongs to; pgmq's msg_id stands in when it has none."""
        return self.key or str(self.msg_id)


Handler = Callable[[Delivery[M]], Awaitable[Sequence[Reply] | Reply | None]]

# Called with the parsed JSON body (None if it is not JSON) and the reason, for a message that
# fails validation: returns the replies to send with its dead letter (an error for the asker).
InvalidHandler = Callable[[Any, str], Awaitable[Sequence[Reply]]]


@dataclass(frozen=True)
class ConsumerOptions:
    """How a consumer reads; the defaults suit a request/response queue."""

    batch_size: int = 100
    visibility_timeout_s: int = 30
    max_deliveries: int = 5
    concurrency: int = 64
    poll_interval_s: float = 0.25
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    shutdown_grace_s: float = 10.0
    # A longer message (its JSON text) is dead-lettered unread (SHARED_QUEUE_MAX_MESSAGE_BYTES).
    max_message_bytes: int = Settings.model_fields["shared_queue_max_message_bytes"].default


@dataclass(slots=True)
class Done:
    """A handled delivery waiting to be archived, with the replies to send then."""

    delivery: Delivery[Any]
    replies: list[Reply] = field(default_factory=list)


def as_replies(outcome: Sequence[Reply] | Reply | None) -> list[Reply]:
    """A handler's return value as a list of replies."""
    if outcome is None:
        return []
    if isinstance(outcome, Reply):
        return [outcome]
    return list(outcome)
