"""The bridge's NATS connection: a clear error when the server cannot be reached at start,
then reconnecting for as long as the bridge runs (subscriptions come back by themselves)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import nats.errors
import structlog
from nats.aio.client import Client as NatsClient

from singularity.config import Settings
from singularity.errors import SingularityError

__all__ = ["open_nats", "shown_url"]

log = structlog.get_logger(__name__)

# How long the first connection may take before the start fails (attempts repeat meanwhile).
_FIRST_CONNECT_S = 5.0
_DRAIN_S = 5


def shown_url(url: str) -> str:
    """The URL with any password masked, for logs and errors."""
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":****@")).geturl()
    return url


@contextlib.asynccontextmanager
async def open_nats(settings: Settings, *, name: str) -> AsyncIterator[NatsClient]:
    """A connected client; drained (subscriptions ended, buffers flushed) when the block ends."""
    url = shown_url(settings.nats_url)
    last_error: list[BaseException] = []
    closing = False

    async def on_error(exc: BaseException) -> None:
        last_error[:] = [exc]
        log.warning("nats_error", url=url, error=f"{type(exc).__name__}: {exc}")

    async def on_disconnect() -> None:
        if not closing:
            log.warning("nats_disconnected", url=url)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", url=url)

    client = NatsClient()
    try:
        await asyncio.wait_for(
            client.connect(
                servers=[settings.nats_url],
                name=name,
                connect_timeout=2,
                reconnect_time_wait=1,
                max_reconnect_attempts=-1,  # after the first connection: never give up
                drain_timeout=_DRAIN_S,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            ),
            _FIRST_CONNECT_S,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        closing = True
        await client.close()
        cause = last_error[0] if last_error else exc
        raise SingularityError(
            f"cannot reach NATS at {url} ({type(cause).__name__}: {cause or 'no answer'}): "
            "is nats-server running? (set NATS_URL)"
        ) from None
    try:
        yield client
    finally:
        closing = True
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await client.drain()
        await client.close()
