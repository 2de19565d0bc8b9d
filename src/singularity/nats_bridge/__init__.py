"""The NATS bridge: the old system's NATS requests forwarded onto the bus, answered back.

A migration aid for running the old NATS-based agents beside the platform (dual operation):
each request on `llm.request`, `approval.request` or `question.ask` is published to its queue
with the bridge's own reply queue, and the answer that comes back is sent to the NATS reply
subject. The bridge is a service of its own and imports no other service.
"""

from singularity.nats_bridge.service import NatsBridge

__all__ = ["NatsBridge"]
