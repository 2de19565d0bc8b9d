"""The answers coming back to one Singularity instance, on its five reply queues.

Every answer is handed to the client's requester, which records it against its pending
request in the singularity database (the first one counts) and wakes the call waiting for it
here; a call waiting in another process finds it there. An answer to a request this instance
never recorded is logged (`result_unmatched`) and archived: there is no one to give it to.
"""

from __future__ import annotations

from singularity.orchestrator.client import PlatformClient
from singularity.orchestrator.flows import FLOWS
from singularity.orchestrator.store import SingularityStore
from singularity.shared_queue import Bus, Consumer

__all__ = ["inbox_consumers"]


def inbox_consumers(bus: Bus, store: SingularityStore, client: PlatformClient) -> list[Consumer]:
    """One consumer per reply queue of the client's instance; `store` is the client's, where
    its requester records the answers."""
    return [
        bus.consumer(flow.reply_to(client.instance), flow.result, client.requester.handle)
        for flow in FLOWS.values()
    ]
