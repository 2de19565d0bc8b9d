"""A consumer killed in the middle of a handler loses nothing: the message comes back."""

from __future__ import annotations

import asyncio
import signal
import sys

from psycopg_pool import AsyncConnectionPool

from helpers import Running, count, eventually, holds, job
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue import Consumer, ConsumerOptions, Delivery, JobRequest, Publisher

# A consumer process whose handler announces the message and then hangs.
HANGING_CONSUMER = """
import asyncio, sys
from singularity.logs import configure_logging
from singularity.postgres.connect import open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue import Consumer, ConsumerOptions, JobRequest

async def main():
    configure_logging("warning")
    pool = await open_pool(Endpoint.parse(sys.argv[1], host="", port=5432, dbname="",
                                          user=""), name="doomed")
    async def hang(delivery):
        print(delivery.msg_id, flush=True)
        await asyncio.Event().wait()
    options = ConsumerOptions(poll_interval_s=0.05, visibility_timeout_s=2)
    await Consumer(pool, sys.argv[2], JobRequest, hang, options=options).run(asyncio.Event())

asyncio.run(main())
"""


async def test_a_message_whose_consumer_was_killed_is_delivered_again(
    bus_pool: AsyncConnectionPool, bus_endpoint: Endpoint, queue: str
) -> None:
    msg_id = await Publisher(bus_pool).send(queue, job(1))
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HANGING_CONSUMER,
        bus_endpoint.conninfo(),
        queue,
        stdout=asyncio.subprocess.PIPE,
    )
    assert doomed.stdout is not None
    line = await asyncio.wait_for(doomed.stdout.readline(), 30)
    assert int(line) == msg_id  # it is in the handler now
    doomed.send_signal(signal.SIGKILL)
    await doomed.wait()

    deliveries: list[int] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        deliveries.append(delivery.read_ct)

    options = ConsumerOptions(poll_interval_s=0.05)
    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=options)):
        await eventually(holds(lambda: bool(deliveries)), seconds=10)
    assert deliveries == [2]  # the killed consumer's delivery was the first
    assert await count(bus_pool, f"a_{queue}") == 1
