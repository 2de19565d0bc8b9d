"""Learning from the archives: which models' answers became approved, passing changes, and
which libraries executed code uses.

Each archive is read in order of (archived_at, msg_id) from a cursor kept in the centralcloud
database; a batch is learned and its cursor moved in one transaction that holds the cursor's
row lock, so each archived message is learned from exactly once, however often learning runs
and however many CentralClouds run it. The cursor is by archive time, not msg_id alone,
because messages are archived out of msg_id order (a retried message is archived late); the
newest `settle_s` seconds wait for the next run, so that a slow archiving transaction whose
rows carry an earlier archived_at is never passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from singularity.centralcloud.archives import ArchivedMessage, ArchiveReader
from singularity.centralcloud.libraries import canonical_language, libraries_in_job
from singularity.centralcloud.store import CentralCloudStore, Claim

__all__ = ["Learner", "LearningCounts"]

PROPOSALS = "approval_requests"
DECISIONS = "approval_responses"
JOBS = "job_requests"


@dataclass
class LearningCounts:
    """What one learning run read."""

    messages: int = 0
    proposals: int = 0  # approval requests learned (a resent one is not)
    decisions: int = 0  # first decisions learned (a change's later ones are not)
    jobs: int = 0
    libraries: int = 0  # (language, library) sightings, one per job that uses it

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


Learn = Callable[[Claim, Sequence[ArchivedMessage], LearningCounts], Awaitable[None]]


class Learner:
    """Learns from every archive it may read, from where the last run stopped."""

    def __init__(
        self,
        reader: ArchiveReader,
        store: CentralCloudStore,
        *,
        batch: int = 500,
        settle_s: float = 30.0,
    ) -> None:
        self.reader = reader
        self.store = store
        self.batch = batch
        self.settle_s = settle_s

    async def learn(self, stop: asyncio.Event | None = None) -> LearningCounts:
        """One run over every archive (until `stop` is set, between batches); returns what it
        read."""
        counts = LearningCounts()
        plan: tuple[tuple[str, Learn], ...] = (
            (PROPOSALS, _proposals),
            (DECISIONS, _decisions),
            (JOBS, _jobs),
        )
        for queue, learn in plan:
            for archive in await self.reader.readable_archives([queue]):
                if stop is not None and stop.is_set():
                    return counts
                await self._drain(archive, learn, counts, stop)
        return counts

    async def _drain(
        self, archive: str, learn: Learn, counts: LearningCounts, stop: asyncio.Event | None
    ) -> None:
        while True:
            async with self.store.claim(archive) as claim:
                batch = await self.reader.after(
                    archive, claim.position, limit=self.batch, settle_s=self.settle_s
                )
                if batch:
                    await learn(claim, batch, counts)
                    await claim.advance(batch[-1].position, len(batch))
            counts.messages += len(batch)
            if len(batch) < self.batch or (stop is not None and stop.is_set()):
                return


async def _proposals(
    claim: Claim, batch: Sequence[ArchivedMessage], counts: LearningCounts
) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for archived in batch:
        body = _body(archived)
        key = _text(body.get("request_id")) or _text(body.get("id")) or str(archived.msg_id)
        rows.setdefault(
            key,
            {
                "request_key": key,
                "agent_id": _text(body.get("agent_id")),
                "task_type": _text(body.get("task_type")),
                "model": _text(body.get("model")),
                "llm_request_id": _text(body.get("llm_request_id")),
                "tests_passed": _flag(body.get("tests_passed")),
                "success_rate": _number(body.get("success_rate")),
                "recommendation": _text(body.get("recommendation")),
                "proposed_at": archived.enqueued_at,
            },
        )
    counts.proposals += await claim.proposed(list(rows.values()))


async def _decisions(
    claim: Claim, batch: Sequence[ArchivedMessage], counts: LearningCounts
) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for archived in batch:
        body = _body(archived)
        key, approved = _text(body.get("request_id")), _flag(body.get("approved"))
        if key is not None and approved is not None:
            rows.setdefault(
                key,
                {
                    "request_key": key,
                    "approved": approved,
                    "decided_at": archived.enqueued_at,
                },
            )
    counts.decisions += await claim.decided(list(rows.values()))


async def _jobs(claim: Claim, batch: Sequence[ArchivedMessage], counts: LearningCounts) -> None:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for archived in batch:
        body = _body(archived)
        language, code = _text(body.get("language")), body.get("code")
        if language is None or not isinstance(code, str):
            continue
        files = body.get("files") if isinstance(body.get("files"), dict) else None
        at = archived.enqueued_at
        for lang, names in libraries_in_job(canonical_language(language), code, files).items():
            for name in names:
                row = seen.setdefault(
                    (lang, name),
                    {
                        "language": lang,
                        "library": name,
                        "jobs": 0,
                        "first_seen_at": at,
                        "last_seen_at": at,
                    },
                )
                row["jobs"] += 1
                row["first_seen_at"] = min(row["first_seen_at"], at)
                row["last_seen_at"] = max(row["last_seen_at"], at)
                counts.libraries += 1
        counts.jobs += 1
    await claim.libraries_seen(list(seen.values()))


def _body(archived: ArchivedMessage) -> dict[str, Any]:
    return archived.message if isinstance(archived.message, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
        return str(value)
    return None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
