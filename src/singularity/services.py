"""The services `singularity run` and `singularity up` can start."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from singularity.errors import UsageError
from singularity.service_context import Service

__all__ = ["RUN_ONLY", "SERVICES", "resolve_services"]


def _centralcloud() -> Service:
    from singularity.centralcloud.service import CentralCloud

    return CentralCloud()


def _genesis() -> Service:
    from singularity.genesis.service import Genesis

    return Genesis()


def _nexus() -> Service:
    from singularity.nexus.service import Nexus

    return Nexus()


def _singularity() -> Service:
    from singularity.orchestrator.service import Singularity

    return Singularity()


def _nats_bridge() -> Service:
    from singularity.nats_bridge.service import NatsBridge

    return NatsBridge()


# Later services register here; `up` runs all of them.
SERVICES: dict[str, Callable[[], Service]] = {
    "centralcloud": _centralcloud,
    "singularity": _singularity,
    "genesis": _genesis,
    "nexus": _nexus,
}

# Services that only `singularity run` starts: aids next to the platform, not part of it.
RUN_ONLY: dict[str, Callable[[], Service]] = {
    "nats-bridge": _nats_bridge,
}


def resolve_services(names: Sequence[str]) -> list[Service]:
    """Services by name, or a UsageError that lists the valid names."""
    known = {**SERVICES, **RUN_ONLY}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"unknown service {unknown[0]!r}; choose one of: {', '.join(sorted(SERVICES))}, "
            f"or {', '.join(sorted(RUN_ONLY))} (`singularity run` only)"
        )
    return [known[name]() for name in names]
