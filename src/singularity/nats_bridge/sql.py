"""The bridge's queries (one file: queries.sql)."""

from __future__ import annotations

from singularity.postgres.queries import Queries

__all__ = ["QUERIES"]

QUERIES = Queries("singularity.nats_bridge")
