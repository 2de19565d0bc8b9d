"""Waiting for the first of several things, with a limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

__all__ = ["race"]


async def race(*awaitables: Awaitable[object], seconds: float) -> None:
    """Wait until any awaitable finishes or `seconds` pass, then cancel the rest.

    A failure of an awaitable that finished is raised; cancellations are not failures.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
