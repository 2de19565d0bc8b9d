"""The bus's queries and the names of pgmq's tables."""

from __future__ import annotations

from singularity.postgres.queries import Queries

__all__ = ["QUERIES", "archive_table", "queue_table", "sequence_name", "wake_channel"]

QUERIES = Queries("singularity.shared_queue")


def queue_table(queue: str) -> str:
    return f"q_{queue}"


def archive_table(queue: str) -> str:
    return f"a_{queue}"


def sequence_name(queue: str) -> str:
    return f"q_{queue}_msg_id_seq"


def key_index(queue: str) -> str:
    return f"a_{queue}_request_key_idx"


def wake_channel(queue: str) -> str:
    """The NOTIFY channel a send to `queue` signals (pgmq's own naming)."""
    return f"pgmq.q_{queue}.INSERT"
