"""The platform's databases and login roles, by their logical names."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["OWNER", "Database", "Role", "service_role"]


class Database(StrEnum):
    """The five databases; the value is the default name (before any prefix)."""

    SINGULARITY = "singularity"
    CENTRALCLOUD = "centralcloud"
    GENESIS = "genesis"
    NEXUS = "nexus"
    SHARED_QUEUE = "shared_queue"


class Role(StrEnum):
    """One login role per service, plus CentralCloud's read-only analytics role."""

    SINGULARITY = "singularity"
    CENTRALCLOUD = "centralcloud"
    GENESIS = "genesis"
    NEXUS = "nexus"
    CENTRALCLOUD_ANALYTICS = "centralcloud_analytics"


# Each service database belongs to one role; the bus belongs to no service role (CentralCloud
# administers it through `db init`, every role reaches it only through its grants).
OWNER: dict[Database, Role | None] = {
    Database.SINGULARITY: Role.SINGULARITY,
    Database.CENTRALCLOUD: Role.CENTRALCLOUD,
    Database.GENESIS: Role.GENESIS,
    Database.NEXUS: Role.NEXUS,
    Database.SHARED_QUEUE: None,
}


def service_role(service: str) -> Role:
    """The role a service logs in as: its own, or singularity's for a service without one
    (the NATS bridge acts as a Singularity instance)."""
    try:
        return Role(service)
    except ValueError:
        return Role.SINGULARITY
