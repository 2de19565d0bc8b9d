"""Learning counts each archived message once, however often and however many learners run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from centralcloud.support import Archives
from singularity.centralcloud.archives import ArchiveReader
from singularity.centralcloud.learning import Learner
from singularity.centralcloud.report import LibraryRow, ModelRow
from singularity.centralcloud.store import CentralCloudStore

NOW = datetime.now(UTC) - timedelta(minutes=5)


async def _proposals(archives: Archives, tag: str) -> None:
    """Four changes written for one task type: three by one model, one by another."""
    coder, m1, m2 = f"coder_{tag}", f"m1_{tag}", f"m2_{tag}"
    other = await archives.instance_queue("approval_responses")
    changes = [(m1, True, True), (m1, False, False), (m2, True, True), (m1, True, None)]
    for i, (model, tests_passed, approved) in enumerate(changes):
        ident = str(uuid.uuid4())
        request = {
            "id": ident,
            "file_path": "a.py",
            "diff": "+x",
            "agent_id": f"agent_{tag}",
            "task_id": f"task{i}",
            "task_type": coder,
            "model": model,
            "llm_request_id": f"llm{i}{tag}",
            "tests_passed": tests_passed,
            "success_rate": 1.0 if tests_passed else 0.5,
            "recommendation": "merge" if tests_passed else "rollback",
        }
        if approved is not None:  # the decision first: learning must not depend on the order
            queue = other if i == 2 else "approval_responses"
            await archives.add(queue, {"request_id": ident, "approved": approved}, NOW)
        await archives.add("approval_requests", request, NOW)
        if i == 0:  # a second, later answer: the first decision is the one kept
            await archives.add("approval_responses", {"request_id": ident, "approved": False}, NOW)


async def _jobs(archives: Archives, tag: str) -> None:
    """Python, JavaScript and Elixir runs that use libraries named after this test."""
    runs = [
        ("python", f"import os\nimport lib{tag}a.sub\nfrom lib{tag}b import x\n", None),
        ("py", f"import lib{tag}a\n", {"requirements.txt": f"req{tag}>=1\n"}),
        ("node", f"const x = require('js{tag}');\nimport fs from 'fs';\n", None),
        ("elixir", f"defmodule A do\n  use Ex{tag}.Web\n  alias Enum\nend\n", None),
    ]
    for i, (language, code, files) in enumerate(runs):
        job = {"id": f"j{i}{tag}", "code": code, "language": language}
        if files:
            job["files"] = files
        await archives.add("job_requests", job, NOW)


def _models(rows: list[ModelRow], tag: str) -> dict[str, tuple]:
    return {
        r.model: (
            r.proposals,
            r.decided,
            r.approved,
            r.tests_passed,
            r.approved_and_passing,
            r.rate,
        )
        for r in rows
        if r.task_type == f"coder_{tag}"
    }


def _libraries(rows: list[LibraryRow], tag: str) -> dict[tuple[str, str], int]:
    return {(r.language, r.library): r.jobs for r in rows if tag in r.library.lower()}


async def test_learning_counts_each_message_once(
    archives: Archives, reader: ArchiveReader, store: CentralCloudStore, tag: str
) -> None:
    await _proposals(archives, tag)
    await _jobs(archives, tag)
    learner = Learner(reader, store, batch=3, settle_s=0)  # small batches: several per archive

    first = await learner.learn()
    assert first.proposals >= 4 and first.decisions >= 3 and first.jobs >= 4
    await asyncio.gather(learner.learn(), Learner(reader, store, settle_s=0).learn())
    again = await learner.learn()
    assert again.messages == 0

    patterns = await store.patterns(libraries_per_language=1000)
    assert _models(patterns.models, tag) == {
        f"m1_{tag}": (3, 2, 1, 2, 1, 0.5),
        f"m2_{tag}": (1, 1, 1, 1, 1, 1.0),
    }
    assert _libraries(patterns.libraries, tag) == {
        ("python", f"lib{tag}a"): 2,
        ("python", f"lib{tag}b"): 1,
        ("python", f"req{tag}"): 1,
        ("javascript", f"js{tag}"): 1,
        ("elixir", f"Ex{tag}"): 1,
    }


async def test_two_learners_at_once_count_once(
    archives: Archives, reader: ArchiveReader, store: CentralCloudStore, tag: str
) -> None:
    await _jobs(archives, tag)
    await asyncio.gather(*(Learner(reader, store, batch=2, settle_s=0).learn() for _ in range(3)))
    patterns = await store.patterns(libraries_per_language=1000)
    assert _libraries(patterns.libraries, tag)[("python", f"lib{tag}a")] == 2


async def test_messages_archived_in_the_last_seconds_wait_for_the_next_run(
    archives: Archives,
    reader: ArchiveReader,
    store: CentralCloudStore,
    centralcloud_db: AsyncConnectionPool,
    tag: str,
) -> None:
    await Learner(reader, store, settle_s=0).learn()  # up to date
    await _jobs(archives, tag)
    assert (await Learner(reader, store, settle_s=3600).learn()).jobs == 0
    assert (await Learner(reader, store, settle_s=0).learn()).jobs == 4
    async with centralcloud_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT archived_at IS NOT NULL, messages > 0 FROM learning_cursors "
                "WHERE archive = 'a_job_requests'"
            )
        ).fetchone()
    assert row == (True, True)


async def test_a_decision_learned_before_its_request_is_kept(
    archives: Archives, reader: ArchiveReader, store: CentralCloudStore, tag: str
) -> None:
    ident = str(uuid.uuid4())
    await archives.add("approval_responses", {"request_id": ident, "approved": True}, NOW)
    learner = Learner(reader, store, settle_s=0)
    await learner.learn()
    request = {
        "id": ident,
        "file_path": "a.py",
        "diff": "+x",
        "task_type": f"coder_{tag}",
        "model": f"m1_{tag}",
        "tests_passed": True,
    }
    await archives.add("approval_requests", request, NOW)
    await learner.learn()
    patterns = await store.patterns()
    assert _models(patterns.models, tag) == {f"m1_{tag}": (1, 1, 1, 1, 1, 1.0)}
