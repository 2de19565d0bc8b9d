"""Which databases a backup holds: the platform's five, and every Singularity instance's own."""

from __future__ import annotations

import re
from dataclasses import dataclass

from singularity.orchestrator.backup.server import ServerCatalog
from singularity.postgres.cluster import Cluster
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import OWNER, Database

__all__ = ["Target", "backup_targets", "home_target", "target_for"]


@dataclass(frozen=True)
class Target:
    """One database to dump or restore, by its real name on its server."""

    name: str
    database: Database
    instance: int
    endpoint: Endpoint  # the administrator on this database
    owner: str | None  # its owner role; None: the administrator (the bus)

    @property
    def maintenance(self) -> Endpoint:
        return self.endpoint.with_database("postgres")


def target_for(cluster: Cluster, name: str, database: Database, instance: int = 1) -> Target:
    """A database of the platform as a backup target (instances live with `singularity`)."""
    owner = OWNER[database]
    endpoint = cluster.admin(database).with_database(name)
    return Target(name, database, instance, endpoint, cluster.role_name(owner) if owner else None)


def home_target(cluster: Cluster) -> Target:
    """Singularity instance 1's database: its server is where instance databases live."""
    return target_for(cluster, cluster.singularity_database(1), Database.SINGULARITY)


async def backup_targets(cluster: Cluster, catalog: ServerCatalog) -> list[Target]:
    """The five databases and the instance databases found on the singularity server.

    `catalog`: the administrator's connection to the server hosting the singularity database.
    """
    base = cluster.singularity_database(1)
    targets = [
        target_for(cluster, base if db is Database.SINGULARITY else cluster.database_name(db), db)
        for db in Database
    ]
    instance = re.compile(re.escape(base) + r"_([1-9][0-9]{0,2})")
    for name in await catalog.names_starting(base + "_"):
        match = instance.fullmatch(name)
        if match and int(match.group(1)) > 1:
            targets.append(target_for(cluster, name, Database.SINGULARITY, int(match.group(1))))
    return targets
