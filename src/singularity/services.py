"""The services `singularity run` and `singularity up` can start."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from singularity.errors import UsageError
from singularity.service_context import Service

__all__ = ["SERVICES", "resolve_services"]


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


# Later services register here; `up` runs all of them.
SERVICES: dict[str, Callable[[], Service]] = {
    "centralcloud": _centralcloud,
    "singularity": _singularity,
    "genesis": _genesis,
    "nexus": _nexus,
}


def resolve_services(names: Sequence[str]) -> list[Service]:
    """Services by name, or a UsageError that lists the valid names."""
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise UsageError(
            f"unknown service {unknown[0]!r}; choose one of: {', '.join(sorted(SERVICES))}"
        )
    return [SERVICES[name]() for name in names]
