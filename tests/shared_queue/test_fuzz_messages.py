"""Fuzzing every queue of the bus with its real consumer running: whatever a sender puts on a
queue is handled or dead-lettered with a reason, nothing stays behind or vanishes, and the
consumer goes on serving.

Each test starts the consumer of one catalog queue in-process, the way its service builds it
(Nexus for LLM, approval and question requests; Genesis for jobs and experiments; a Singularity
instance's inbox for the five result queues; an evolution run's asker for
`genesis_llm_results`), and feeds it Hypothesis-drawn batches through SQL, as any publisher
sends: arbitrary JSON values, objects with random keys, and valid messages with one field (at
any depth) deleted, nulled, retyped, blown up to hundreds of kilobytes, made exotic unicode or
pushed out of range, or with an extra field. After each batch, for every message sent:

- it is archived (handled) or on `<queue>_dlq` with a non-empty reason, never both, never
  neither, and never left in the queue;
- it was never retried: a dead letter was written at the first delivery (a retry means the
  handler crashed on the message);
- a message its model rejects is dead-lettered; when it still names its request and a reply
  queue the consumer can answer on, and the service answers malformed requests, the asker
  gets an error answer;
- a valid message that was handled has its effect: the answer on its reply queue, the
  approval shown to reviewers, the result recorded for the waiting request.

At the end the service still runs and serves one more valid message correctly.

A body that is not JSON never reaches a queue: pgmq stores jsonb, and PostgreSQL refuses the
send (as it does JSON with a NUL character, an unpaired surrogate or NaN). That is proven once,
below; the fuzzed bodies are all JSON PostgreSQL accepts.

Run with more examples: HYPOTHESIS_PROFILE=thorough (see tests/conftest.py and docs/bus.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from genesis_support import GOOD_DIFF, TEST_COMMAND, RunningGenesis, make_repo, require_bwrap
from helpers import answer_queue
from nexus_support import RunningNexus
from singularity.config import Settings
from singularity.genesis.evolution.asker import LlmAsker
from singularity.genesis.store import GenesisStore
from singularity.nexus.fleet import Fleet
from singularity.nexus.hitl import Hitl
from singularity.orchestrator.flows import FLOWS
from singularity.orchestrator.inbox import inbox_consumers
from singularity.orchestrator.platform import connect
from singularity.orchestrator.store import SingularityStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import (
    QUEUES,
    ExperimentResult,
    JobResult,
    LlmResult,
    QueueSpec,
    TaskEvent,
    open_bus,
)
from singularity.shared_queue.publisher import encode_batch
from singularity.shared_queue.sql import QUERIES
from singularity.testing.openai_server import MockOpenAI

# -- what gets sent -------------------------------------------------------------------------


class _Marker:
    """A placeholder in a drawn body, filled in when it is sent."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __deepcopy__(self, memo: dict[int, Any]) -> _Marker:
        return self  # a copied body keeps its placeholders


KEY = _Marker("KEY")  # a fresh request key (a UUID), unique to the message
REPLY = _Marker("REPLY")  # the test's own reply queue
_DELETE = _Marker("DELETE")

# Numbers JSON can carry but a Python float cannot: sent as written, stored by jsonb as exact
# numerics, read back by the consumer as inf, 0.0 or a huge int.
_RAW = "\u2063raw:"
RAW_NUMBERS = [_RAW + text for text in ("1e400", "-1e400", "1e-400", "1" + "0" * 80)]

# jsonb holds neither NUL nor an unpaired surrogate: such a body cannot be sent (see below).
_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
TEXT = st.text(_CHARS, max_size=24)
TRICKY = st.sampled_from(
    [
        "",
        " ",
        "\u202eevil\u202c",
        "\ufeffbom",
        "zero\u200bwidth",
        "\U0001d54c\U0001d55f\U0001d55a\U0001d554\U0001d560\U0001d555\U0001d556 🧪 ç ß 漢字",
        "\\u0000",
        "%00",
        "'; DROP TABLE approval_requests; --",
        "../../etc/passwd",
        "/",
        "null",
        "{}",
        "\n\r\t",
        "\uffff\U0010ffff",
    ]
)
_NOISE_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F)) + "éλжあ🧪"


def _noise(seed: int, size: int) -> str:
    """Incompressible text (a repeated letter would compress away): a huge string is huge."""
    return "".join(random.Random(seed).choices(_NOISE_ALPHABET, k=size))


HUGE = st.builds(_noise, st.integers(0, 2**32), st.sampled_from([3_000, 20_000, 300_000]))
EXTREMES = st.sampled_from(
    [
        -1,
        0,
        2**31,
        2**63,
        -(2**63) - 1,
        10**40,
        1e308,
        -1e308,
        5e-324,
        -0.0,
        True,
        [],
        {},
        "",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2030-02-30T00:00:00Z",
        *RAW_NUMBERS,
    ]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(RAW_NUMBERS)
    | TEXT
    | TRICKY
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
# A field's value replaced by one of another type: every JSON type equally likely.
RETYPED = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.lists(LEAVES, min_size=1, max_size=3),
    st.dictionaries(TEXT, LEAVES, min_size=1, max_size=3),
    JSON,
)

# The deadline of a valid approval or question: far enough never to expire during the test.
LATER = "2999-01-01T00:00:00Z"
DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index path into a body, outer ones first."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        yield (*prefix, key)
        if isinstance(inner, dict | list) and inner:
            yield from _paths(inner, (*prefix, key))


def _put(body: Any, path: tuple[Any, ...], value: Any) -> None:
    *outer, last = path
    for step in outer:
        body = body[step]
    if value is _DELETE:
        del body[last]
    else:
        body[last] = value


@st.composite
def mutants(draw: st.DrawFn, bases: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """A valid body with one change: a field gone, null, another JSON value, huge, unicode,
    out of range; or an extra field; or no change at all."""
    body = copy.deepcopy(draw(st.sampled_from(bases)))
    how = draw(
        st.sampled_from(["delete", "null", "json", "huge", "text", "extreme", "extra", "as"])
    )
    if how == "as":
        return body
    if how == "extra":
        name = draw(TEXT.filter(lambda n: n not in body))
        body[name] = draw(JSON)
        return body
    path = draw(st.sampled_from(list(_paths(body))))
    values: dict[str, st.SearchStrategy[Any]] = {
        "delete": st.just(_DELETE),
        "null": st.none(),
        "json": RETYPED,
        "huge": HUGE,
        "text": TEXT | TRICKY,
        "extreme": EXTREMES,
    }
    _put(body, path, draw(values[how]))
    return body


def bodies(bases: tuple[dict[str, Any], ...]) -> st.SearchStrategy[Any]:
    """What a fuzzed sender puts on a queue (mostly near-valid messages: they go deepest)."""
    near = mutants(bases)
    return st.one_of(JSON, st.dictionaries(TEXT, JSON, max_size=6), near, near, near, near)


# -- the queues -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """How to fuzz one queue and what its consumer owes a valid message."""

    bases: tuple[dict[str, Any], ...]  # valid bodies, with KEY and REPLY placeholders
    group: str  # which consumer runs it: nexus, genesis, inbox or asker
    result: type[BaseModel] | None = None  # the answer a request gets on its reply queue
    default_reply: str | None = None  # where that answer goes without reply_to
    courtesy: bool = False  # a malformed request naming its request gets an error answer
    refusal_answered: bool = False  # a valid request refused gets an error answer
    final: dict[str, Any] | None = None  # the valid body sent after the fuzzing (else bases[0])
    tame: Callable[[Any], Any] | None = None  # keeps a drawn body from doing real harm


def _llm_result(**extra: Any) -> dict[str, Any]:
    return {
        "request_id": KEY,
        "result": "ok",
        "model": "alpha",
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        "cost_usd": 0.0001,
        "tier": "simple",
        "schema_version": 1,
        **extra,
    }


_LLM_ERROR = {"request_id": KEY, "error": {"code": "PROVIDER_ERROR", "message": "down"}}
# Valid experiments point at no repository: each is refused at once, with an answer, instead
# of copying a tree and running its tests; the one real experiment runs at the end.
_NO_REPO = "/nonexistent/fuzz-repository"


def _no_repository(body: Any) -> Any:
    """A drawn `repo` that names a real directory (`/`, `.`) would start a real experiment on
    it: it is moved under a path that does not exist."""
    repo = body.get("repo") if isinstance(body, dict) else None
    if isinstance(repo, str) and os.path.isdir(repo):
        return {**body, "repo": f"{_NO_REPO}/{repo}"}
    return body


TARGETS: dict[str, Target] = {
    "llm_requests": Target(
        (
            {
                "request_id": KEY,
                "reply_to": REPLY,
                "agent_id": "fuzz",
                "task_type": "classifier",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Is this a bug?"},
                ],
                "complexity": "simple",
                "schema_version": 1,
            },
            {
                "request_id": KEY,
                "reply_to": REPLY,
                "agent_id": "fuzz",
                "task_type": "summarize",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            },
        ),
        "nexus",
        result=LlmResult,
        default_reply="llm_results",
        courtesy=True,
    ),
    "approval_requests": Target(
        (
            {
                "id": KEY,
                "file_path": "app.py",
                "diff": DIFF,
                "description": "bump x",
                "reply_to": "approval_responses",
                "agent_id": "fuzz",
                "deadline": LATER,
                "schema_version": 1,
            },
        ),
        "nexus",
    ),
    "question_requests": Target(
        (
            {
                "id": KEY,
                "question": "Which database?",
                "context": {"options": ["pg", "sqlite"], "depth": [1, [2, [3]]]},
                "reply_to": "question_responses",
                "agent_id": "fuzz",
                "deadline": LATER,
                "schema_version": 1,
            },
        ),
        "nexus",
    ),
    "job_requests": Target(
        (
            {
                "id": KEY,
                "code": "print(1)",
                "language": "python",
                "reply_to": REPLY,
                "mode": "run",
                "stdin": "",
                "args": ["a"],
                "files": {"data.txt": "x"},
                "limits": {"wall_s": 5, "cpu_s": 2},
                "agent_id": "fuzz",
                "schema_version": 1,
            },
        ),
        "genesis",
        result=JobResult,
        default_reply="job_results",
        courtesy=True,
        refusal_answered=True,
    ),
    "experiment_requests": Target(
        (
            {
                "id": KEY,
                "repo": _NO_REPO,
                "diff": GOOD_DIFF,
                "test_command": TEST_COMMAND,
                "reply_to": REPLY,
                "llm_reduction": 0.5,
                "junit_path": "report.xml",
                "limits": {"wall_s": 20},
                "agent_id": "fuzz",
                "schema_version": 1,
            },
        ),
        "genesis",
        result=ExperimentResult,
        default_reply="experiment_results",
        courtesy=True,
        refusal_answered=True,
        final={"id": KEY, "diff": GOOD_DIFF, "test_command": TEST_COMMAND, "reply_to": REPLY},
        tame=_no_repository,
    ),
    "task_events": Target(
        (
            {
                "instance": 7,
                "task_id": 12,
                "event_id": 3,
                "at": "2026-12-07T10:00:00+00:00",
                "state": "working",
                "message": "model alpha: read_file",
                "agent_id": "coder-7",
                "description": "Document add()",
                "repo": "/srv/calc",
                "outcome": None,
                "request_id": KEY,
                "schema_version": 1,
            },
        ),
        "nexus",
    ),
    "llm_results": Target((_llm_result(), _LLM_ERROR), "inbox"),
    "genesis_llm_results": Target((_llm_result(), _LLM_ERROR), "asker"),
    "approval_responses": Target(
        (
            {
                "request_id": KEY,
                "approved": True,
                "reason": "fine",
                "status": "approved",
                "decided_by": "ana",
                "schema_version": 1,
            },
        ),
        "inbox",
    ),
    "question_responses": Target(
        ({"request_id": KEY, "response": "pg", "decided_by": "ana", "schema_version": 1},),
        "inbox",
    ),
    "job_results": Target(
        (
            {
                "request_id": KEY,
                "output": "1\n",
                "error": None,
                "status": "OK",
                "exit_code": 0,
                "wall_ms": 12.5,
                "cpu_ms": 8.0,
                "max_rss_kb": 9000,
                "truncated": False,
                "schema_version": 1,
            },
        ),
        "inbox",
    ),
    "experiment_results": Target(
        (
            {
                "request_id": KEY,
                "experiment_id": KEY,
                "status": "done",
                "recommendation": "merge",
                "success_rate": 1.0,
                "regression": 0.0,
                "error": None,
                "schema_version": 1,
            },
        ),
        "inbox",
    ),
}

# -- one message's journey ------------------------------------------------------------------


@dataclass
class Sent:
    """One message as sent, and what became of it."""

    template: Any
    key: str
    body: Any = None
    text: str = ""
    msg_id: int = 0
    archived: bool = False
    letter: dict[str, Any] | None = None
    valid: BaseModel | None = None

    @property
    def fresh(self) -> bool:
        """Whether the message's request key is the fresh one (it is nobody else's)."""
        body = self.body
        if not isinstance(body, dict):
            return False
        return body.get("request_id", body.get("id")) == self.key


def _fill(value: Any, key: str, reply: str | None) -> Any:
    if value is KEY:
        return key
    if value is REPLY:
        return reply
    if isinstance(value, dict):
        return {k: _fill(v, key, reply) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, key, reply) for v in value]
    return value


def _encode(body: Any) -> str:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    for raw in RAW_NUMBERS:
        text = text.replace(json.dumps(raw, ensure_ascii=False), raw.removeprefix(_RAW))
    return text


# -- the consumers under test ---------------------------------------------------------------

Effect = Callable[[Sent], Awaitable[str | None]]


@dataclass
class Harness:
    """A consumer running for the whole test, and how to see what it did."""

    queue: str
    task: asyncio.Task[Any]  # the service (or consumer) task: it must still run at the end
    replies: str | None = None  # the test's reply queue, which the consumer may answer on
    prepare: Callable[[list[Sent]], Awaitable[None]] | None = None
    effect: Effect | None = None  # what a handled valid message did; a problem, or None
    after: Callable[[], Awaitable[None]] | None = None  # a last look: raises if it finds harm
    forget: Callable[[list[Sent]], Awaitable[None]] | None = None  # removes what it stored
    repo: Path | None = None


@dataclass
class Needs:
    """What the harnesses are built from (the test's fixtures)."""

    spec: QueueSpec
    cluster: Cluster
    settings: Settings
    bus: AsyncConnectionPool
    tmp_path: Path


async def _reply(pool: AsyncConnectionPool, queues: list[str], request_id: str) -> Any:
    for queue in queues:
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT message FROM pgmq.q_{queue} WHERE message->>'request_id' = %s "
                    "ORDER BY msg_id LIMIT 1",
                    (request_id,),
                )
            ).fetchone()
        if row is not None:
            return row[0]
    return None


def _answered(needs: Needs, target: Target, replies: str) -> Effect:
    """The effect of a handled request: its answer, a valid result, on its reply queue."""
    assert target.result is not None and target.default_reply is not None
    result = target.result

    async def effect(sent: Sent) -> str | None:
        found = await _reply(needs.bus, [replies, target.default_reply], sent.key)
        if found is None:
            return "no answer on its reply queue"
        try:
            result.model_validate(found)
        except ValidationError as exc:
            return f"its answer is no valid {result.__name__}: {exc}"
        return None

    return effect


def _shown(hitl: Hitl, kind: str) -> Effect:
    """The effect of a taken approval or question: reviewers can open it."""

    async def effect(sent: Sent) -> str | None:
        try:
            item = await hitl.get(kind, sent.key)  # type: ignore[arg-type]
        except Exception as exc:
            return f"reviewers cannot open it: {type(exc).__name__}: {exc}"
        return None if item["id"] == sent.key else f"opened as {item['id']}"

    return effect


def _kept(fleet: Fleet) -> Effect:
    """The effect of a task event: Nexus keeps it, under its task."""

    async def effect(sent: Sent) -> str | None:
        event = sent.valid
        assert isinstance(event, TaskEvent)
        events = await fleet.events(event.instance, event.task_id)
        kept = any(row["event_id"] == event.event_id for row in events)
        return None if kept else "not kept among its task's events"

    return effect


@contextlib.asynccontextmanager
async def nexus_harness(needs: Needs) -> AsyncIterator[Harness]:
    target = TARGETS[needs.spec.name]
    async with (
        answer_queue(needs.cluster, Role.NEXUS, "fuzz") as replies,
        RunningNexus(needs.settings, needs.cluster) as nexus,
    ):
        hitl = nexus.parts.hitl
        if target.result is not None:
            effect = _answered(needs, target, replies)
        elif needs.spec.name == "task_events":
            effect = _kept(Fleet(nexus.parts.pool))
        else:
            effect = _shown(hitl, needs.spec.name.removesuffix("_requests"))

        async def after() -> None:
            # The lists reviewers see, and the web UI's snapshot, read every pending request.
            await hitl.pending("approval")
            await hitl.pending("question")
            await nexus.parts.events.snapshot()

        async def forget(sent: list[Sent]) -> None:
            # The approvals and questions taken stay out of later tests' pages (and lists).
            ids = [str(s.valid.id) for s in sent if s.archived and hasattr(s.valid, "id")]
            table = needs.spec.name  # approval_requests, question_requests: the nexus tables
            if ids and target.result is None and table != "task_events":
                async with async_connection(needs.cluster.admin(Database.NEXUS)) as conn:
                    await conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s::uuid[])", (ids,))

        yield Harness(
            needs.spec.name, nexus.task, replies, effect=effect, after=after, forget=forget
        )


@contextlib.asynccontextmanager
async def genesis_harness(needs: Needs) -> AsyncIterator[Harness]:
    require_bwrap()
    target = TARGETS[needs.spec.name]
    settings = needs.settings.model_copy(update={"genesis_data_dir": needs.tmp_path / "genesis"})
    async with (
        answer_queue(needs.cluster, Role.GENESIS, "fuzz") as replies,
        RunningGenesis(settings, needs.cluster) as genesis,
    ):
        repo = make_repo(needs.tmp_path) if target.final is not None else None
        yield Harness(
            needs.spec.name,
            genesis.task,
            replies,
            effect=_answered(needs, target, replies),
            repo=repo,
        )


@contextlib.asynccontextmanager
async def inbox_harness(needs: Needs) -> AsyncIterator[Harness]:
    """Instance 1's inbox consumer of the queue, as `connect()` builds and runs it."""
    flow = next(f for f in FLOWS.values() if f.results == needs.spec.name)
    assert flow.result is needs.spec.message
    async with connect(needs.cluster, needs.settings, name="fuzz", inbox=False) as connected:
        store = connected.store
        (consumer,) = [
            c
            for c in inbox_consumers(connected.bus, store, connected.client)
            if c.queue == needs.spec.name
        ]

        async def prepare(batch: list[Sent]) -> None:
            # Each fresh key is a request this instance is waiting on: its answer is recorded.
            for sent in batch:
                await _pending(store, flow.kind, flow.requests, flow.results, sent.key)

        async def effect(sent: Sent) -> str | None:
            return _recorded(await store.answer(sent.key), sent)

        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop), name=f"fuzz:{consumer.queue}")
        try:
            yield Harness(needs.spec.name, task, prepare=prepare, effect=effect)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def _recorded(recorded: Any, sent: Sent) -> str | None:
    """The effect of an answer: recorded for its request, as the consumer read it."""
    assert sent.valid is not None
    if recorded is None:
        return "the answer was not recorded"
    if not _same(recorded, sent.valid.model_dump(mode="json")):
        return f"recorded as {recorded!r:.300}"
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal JSON, numbers to a float's precision (jsonb writes -9.2e18 out as an integer)."""
    if isinstance(a, int | float) and isinstance(b, int | float) and bool not in (type(a), type(b)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        try:
            return math.isclose(a, b, rel_tol=1e-15)
        except OverflowError:  # an integer beyond any float: no float is close to it
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


async def _pending(store: SingularityStore, kind: str, queue: str, reply_to: str, key: str) -> None:
    body = {"agent_id": "fuzz", "task_type": "classifier"} if kind == "llm" else {}
    await store.record_request(
        request_id=key,
        task_id=None,
        step=None,
        kind=kind,
        queue=queue,
        reply_to=reply_to,
        body=body,
        deadline=None,
    )


@contextlib.asynccontextmanager
async def asker_harness(needs: Needs) -> AsyncIterator[Harness]:
    """An evolution run's answer consumer, as `singularity evolve` runs it."""
    pool = await open_pool(
        needs.cluster.service(Role.GENESIS, Database.GENESIS), name="fuzz-genesis", max_size=4
    )
    endpoint = needs.cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    run_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    try:
        async with open_bus(endpoint, needs.settings, name="fuzz-asker") as bus:
            store = GenesisStore(pool)
            asker = LlmAsker(store, bus.publisher, run_id, timeout_s=10)

            async def prepare(batch: list[Sent]) -> None:
                for sent in batch:
                    await store.record_evolution_request(
                        request_id=sent.key, run_id=run_id, step=sent.key, body={}, context={}
                    )

            async def effect(sent: Sent) -> str | None:
                return _recorded(await store.evolution_answer(sent.key), sent)

            stop = asyncio.Event()
            task = asyncio.create_task(asker.consumer(bus).run(stop), name="fuzz:asker")
            try:
                yield Harness(needs.spec.name, task, prepare=prepare, effect=effect)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        await pool.close()


HARNESSES = {
    "nexus": nexus_harness,
    "genesis": genesis_harness,
    "inbox": inbox_harness,
    "asker": asker_harness,
}

# -- sending a batch and judging it ---------------------------------------------------------

_SETTLE_S = 60.0  # generous: other test runs share the machine
# No shrinking: a failure names each message that went wrong, what happened to it and the
# consumer's log, and shrinking a batch would take minutes of redeliveries.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
_PROBLEM_EVENTS = {"handler_failed", "commit_failed", "commit_abandoned", "dead_letter_failed"}


@dataclass
class Fuzz:
    needs: Needs
    target: Target
    harness: Harness
    logs: list[dict[str, Any]]
    outcomes: dict[str, int] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return self.harness.queue

    async def batch(self, templates: list[Any], *, tame: bool = True) -> list[Sent]:
        """Send one batch, wait until the consumer is done with it, and judge every message."""
        batch = [Sent(t, str(uuid.uuid4())) for t in templates]
        for sent in batch:
            sent.body = _fill(sent.template, sent.key, self.harness.replies)
            if tame and self.target.tame is not None:
                sent.body = self.target.tame(sent.body)
            sent.text = _encode(sent.body)
        if self.harness.prepare is not None:
            await self.harness.prepare([s for s in batch if s.fresh])
        async with self.needs.bus.connection() as conn:
            cursor = await conn.execute(
                QUERIES["send_batch"],
                {
                    "queue": self.queue,
                    "messages": encode_batch([s.text for s in batch]),
                    "delay": 0,
                },
            )
            ids = [int(row[0]) for row in await cursor.fetchall()]
        for sent, msg_id in zip(batch, ids, strict=True):
            sent.msg_id = msg_id
        self.sent += batch
        await self._settled(batch)
        await self._fates(batch)
        problems = [p for sent in batch for p in await self._judge(sent)]
        assert not problems, "\n".join(problems) + self._log_excerpt()
        return batch

    async def _settled(self, batch: list[Sent]) -> None:
        """Wait until none of the batch is in the queue; fail at once on a second delivery."""
        ids = [s.msg_id for s in batch]
        deadline = asyncio.get_running_loop().time() + _SETTLE_S
        while True:
            async with self.needs.bus.connection() as conn:
                rows = await (
                    await conn.execute(
                        f"SELECT msg_id, read_ct FROM pgmq.q_{self.queue} WHERE msg_id = ANY(%s)",
                        (ids,),
                    )
                ).fetchall()
            if not rows:
                return
            again = [(m, n) for m, n in rows if n > 1]
            if again or asyncio.get_running_loop().time() > deadline:
                left = {s.msg_id: s for s in batch}
                shown = "\n".join(
                    f"  msg {m} (delivered {n} times): {left[m].text[:300]}" for m, n in rows
                )
                what = "delivered again (its handler failed)" if again else "still in the queue"
                raise AssertionError(f"messages {what}:\n{shown}" + self._log_excerpt())
            await asyncio.sleep(0.05)

    async def _fates(self, batch: list[Sent]) -> None:
        """Where each message went: the archive, or the dead-letter queue."""
        ids = [s.msg_id for s in batch]
        by_id = {s.msg_id: s for s in batch}
        async with self.needs.bus.connection() as conn:
            archived = await (
                await conn.execute(
                    f"SELECT msg_id, message::text FROM pgmq.a_{self.queue} WHERE msg_id = ANY(%s)",
                    (ids,),
                )
            ).fetchall()
            letters = await (
                await conn.execute(
                    f"SELECT message FROM pgmq.q_{self.needs.spec.dead_letter} "
                    "WHERE message->>'queue' = %s AND message->>'msg_id' = ANY(%s)",
                    (self.queue, [str(i) for i in ids]),
                )
            ).fetchall()
        for msg_id, text in archived:
            by_id[msg_id].archived = True
            by_id[msg_id].text = text  # as the consumer read it (jsonb's normal form)
        for (letter,) in letters:
            sent = by_id[int(letter["msg_id"])]
            assert sent.letter is None, f"msg {sent.msg_id} dead-lettered twice"
            sent.letter = letter
            sent.text = json.dumps(letter.get("original"))
        for sent in batch:
            try:
                sent.valid = self.needs.spec.message.model_validate_json(sent.text)
            except ValidationError:
                sent.valid = None

    async def _judge(self, sent: Sent) -> list[str]:
        where = f"msg {sent.msg_id} {sent.text[:300]}"
        letter = sent.letter
        if sent.archived and letter is not None:
            return [f"{where}: both archived and dead-lettered"]
        if not sent.archived and letter is None:
            return [f"{where}: lost (neither archived nor dead-lettered)"]
        if letter is not None:
            reason = letter.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                return [f"{where}: dead-lettered without a reason: {letter!r:.300}"]
            if letter.get("read_ct") != 1:
                return [
                    f"{where}: dead-lettered after {letter.get('read_ct')} deliveries: {reason}"
                ]
            if sent.valid is None:
                self._count("invalid")
                return await self._courtesy(sent, where)
            self._count("refused")
            return await self._refusal(sent, where, reason)
        if sent.valid is None:
            return [f"{where}: invalid for {self.needs.spec.message.__name__}, yet archived"]
        self._count("handled")
        if sent.fresh and self.harness.effect is not None:
            problem = await self.harness.effect(sent)
            if problem is not None:
                return [f"{where}: handled, but {problem}"]
        return []

    def _reply_queue(self, body: dict[str, Any]) -> str | None:
        """Where an answer to this body must go, when the test can tell (else None)."""
        reply_to = body.get("reply_to") or self.target.default_reply
        return reply_to if reply_to in (self.harness.replies, self.target.default_reply) else None

    async def _courtesy(self, sent: Sent, where: str) -> list[str]:
        """A malformed request that names its request and a reply queue hears why."""
        if not (self.target.courtesy and sent.fresh and isinstance(sent.body, dict)):
            return []
        queue = self._reply_queue(sent.body)
        if queue is None:
            return []
        found = await _reply(self.needs.bus, [queue], sent.key)
        if not isinstance(found, dict) or not found.get("error"):
            return [f"{where}: malformed, dead-lettered, but its asker got no error answer"]
        self._count("told why")
        return []

    async def _refusal(self, sent: Sent, where: str, reason: str) -> list[str]:
        """A valid request refused (not for its reply queue) is answered with the reason."""
        if not (self.target.refusal_answered and sent.fresh and isinstance(sent.body, dict)):
            return []
        if "reply_to" in reason or self._reply_queue(sent.body) is None:
            return []
        queue = self._reply_queue(sent.body)
        assert queue is not None
        found = await _reply(self.needs.bus, [queue], sent.key)
        if not isinstance(found, dict) or not found.get("error"):
            return [f"{where}: refused ({reason}), but its asker got no answer"]
        return []

    async def forget(self) -> None:
        """Remove this test's dead letters from the catalog's dead-letter queue, and what the
        service stored: later tests read those queues (and pages) and expect no such bodies
        (an `original` that is a list, say)."""
        ids = [str(s.msg_id) for s in self.sent if s.msg_id]
        async with self.needs.bus.connection() as conn:
            await conn.execute(
                f"DELETE FROM pgmq.q_{self.needs.spec.dead_letter} "
                "WHERE message->>'queue' = %s AND message->>'msg_id' = ANY(%s)",
                (self.queue, ids),
            )
        if self.harness.forget is not None:
            await self.harness.forget(self.sent)

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _log_excerpt(self) -> str:
        lines = [
            f"  {e.get('event')}: {str(e.get('error') or e.get('reason'))[:400]}"
            for e in self.logs
            if e.get("event") in _PROBLEM_EVENTS and e.get("queue") == self.queue
        ]
        return ("\nconsumer log:\n" + "\n".join(lines[-10:])) if lines else ""


def fuzz_in_thread(fuzz: Fuzz, loop: asyncio.AbstractEventLoop) -> None:
    """Hypothesis drives from a worker thread; each batch runs on the test's event loop, where
    the consumer runs all along."""

    @settings(deadline=None, phases=NO_SHRINK)
    @given(st.lists(bodies(fuzz.target.bases), min_size=1, max_size=10))
    def batches(templates: list[Any]) -> None:
        asyncio.run_coroutine_threadsafe(fuzz.batch(templates), loop).result(_SETTLE_S * 3)

    batches()


# -- the tests ------------------------------------------------------------------------------


def test_every_queue_of_the_catalog_is_fuzzed() -> None:
    assert set(TARGETS) == {spec.name for spec in QUEUES}
    for spec in QUEUES:
        for base in TARGETS[spec.name].bases:  # the starting points are valid messages
            spec.message.model_validate(_fill(base, str(uuid.uuid4()), "some_replies"))


@pytest.mark.parametrize("spec", QUEUES, ids=lambda spec: spec.name)
async def test_every_message_is_handled_or_dead_lettered_and_the_consumer_goes_on(
    spec: QueueSpec,
    cluster: Cluster,
    nexus_settings: Settings,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    tmp_path: Path,
) -> None:
    target = TARGETS[spec.name]
    needs = Needs(spec, cluster, nexus_settings, bus_pool, tmp_path)
    with capture_logs() as logs:
        async with HARNESSES[target.group](needs) as harness:
            fuzz = Fuzz(needs, target, harness, logs)
            try:
                await asyncio.to_thread(fuzz_in_thread, fuzz, asyncio.get_running_loop())

                assert not harness.task.done(), "the consumer stopped during the fuzzing"
                if harness.after is not None:
                    await harness.after()
                # One more valid message, after everything: handled, with its effect.
                final = target.final or target.bases[0]
                if harness.repo is not None:
                    final = {**final, "repo": str(harness.repo)}
                (last,) = await fuzz.batch([final], tame=False)
                assert last.archived and last.valid is not None, last
                if spec.name == "experiment_requests":
                    answer = await _reply(bus_pool, [harness.replies or ""], last.key)
                    assert answer["status"] == "completed" and answer["recommendation"], answer
                assert not harness.task.done()
            finally:
                await fuzz.forget()
    assert fuzz.outcomes.get("invalid", 0) > 0, fuzz.outcomes  # the fuzzing reached both sides
    assert fuzz.outcomes.get("handled", 0) + fuzz.outcomes.get("refused", 0) > 1, fuzz.outcomes


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        '{"id": "x", "code": "print(1)"',
        '{"text": "nul \\u0000 inside"}',
        '{"text": "lone \\ud800 surrogate"}',
        '{"cost_usd": NaN}',
        "",
    ],
    ids=["text", "truncated", "nul", "surrogate", "nan", "empty"],
)
async def test_a_body_postgresql_cannot_store_never_reaches_a_queue(
    bus_pool: AsyncConnectionPool, text: str
) -> None:
    # pgmq keeps messages as jsonb: what PostgreSQL does not take as JSON is refused at the
    # send, so no consumer ever sees it (and the fuzzed bodies leave exactly this out).
    async with bus_pool.connection() as conn:
        with pytest.raises(psycopg.DataError):
            await conn.execute("SELECT pgmq.send('job_requests', %s::jsonb)", (text,))


# -- depth and size, on every queue ---------------------------------------------------------

_SMALL_LIMIT = 64 * 1024  # SHARED_QUEUE_MAX_MESSAGE_BYTES for this test: 64 KiB


def _deep(body: dict[str, Any]) -> str:
    """`body` with a field nested 5,000 levels deep (written by hand: json.dumps recurses)."""
    return _encode(body)[:-1] + ',"nested":' + "[" * 5_000 + "]" * 5_000 + "}"


def _oversized(body: dict[str, Any]) -> str:
    return _encode({**body, "padding": _noise(7, 2 * _SMALL_LIMIT)})


# Each attack, and what the reason of its dead letter says.
_ATTACKS: tuple[tuple[Callable[[dict[str, Any]], str], str], ...] = (
    (_deep, "recursion limit"),
    (_oversized, "bytes long"),
)


async def _letter_in_sql(pool: AsyncConnectionPool, spec: QueueSpec, sent: Sent) -> Any:
    """(reason, read_ct, whether the original is kept whole) of a message's dead letter, read
    in SQL: a client decoding a 5,000-level body would recurse as the consumer once did."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT message->>'reason', (message->>'read_ct')::int, "
            f"message->'original' = %s::jsonb FROM pgmq.q_{spec.dead_letter} "
            "WHERE message->>'queue' = %s AND (message->>'msg_id')::bigint = %s",
            (sent.text, spec.name, sent.msg_id),
        )
        return await cursor.fetchone()


@pytest.mark.parametrize("spec", QUEUES, ids=lambda spec: spec.name)
async def test_a_deep_or_oversized_body_is_dead_lettered_at_once_and_the_consumer_goes_on(
    spec: QueueSpec,
    cluster: Cluster,
    nexus_settings: Settings,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    tmp_path: Path,
) -> None:
    # A body nested thousands of levels deep once stopped every consumer at its first read
    # (a RecursionError), and again after each restart. Each queue's real consumer gets one
    # such body and one longer than its size limit: both are dead-lettered at their first
    # delivery with the reason, kept whole, and the asker hears why where the service answers
    # malformed requests.
    target = TARGETS[spec.name]
    settings = nexus_settings.model_copy(update={"shared_queue_max_message_bytes": _SMALL_LIMIT})
    needs = Needs(spec, cluster, settings, bus_pool, tmp_path)
    with capture_logs() as logs:
        async with HARNESSES[target.group](needs) as harness:
            fuzz = Fuzz(needs, target, harness, logs)
            try:
                batch = [Sent(target.bases[0], str(uuid.uuid4())) for _ in _ATTACKS]
                for sent, (make, _) in zip(batch, _ATTACKS, strict=True):
                    sent.body = _fill(sent.template, sent.key, harness.replies)
                    sent.text = make(sent.body)
                if harness.prepare is not None:
                    await harness.prepare(batch)
                async with bus_pool.connection() as conn:
                    for sent in batch:
                        query = "SELECT pgmq.send(%s, %s::jsonb)"
                        row = await (await conn.execute(query, (spec.name, sent.text))).fetchone()
                        assert row is not None
                        sent.msg_id = int(row[0])
                fuzz.sent += batch
                await fuzz._settled(batch)

                for sent, (_, why) in zip(batch, _ATTACKS, strict=True):
                    found = await _letter_in_sql(bus_pool, spec, sent)
                    assert found is not None, f"{why}: not dead-lettered" + fuzz._log_excerpt()
                    reason, read_ct, kept = found
                    assert why in reason and read_ct == 1 and kept, found
                    queue = fuzz._reply_queue(sent.body)
                    if target.courtesy and queue is not None:
                        answer = await _reply(bus_pool, [queue], sent.key)
                        assert isinstance(answer, dict) and answer.get("error"), (why, answer)

                assert not harness.task.done(), "the consumer stopped"
                final = target.final or target.bases[0]
                if harness.repo is not None:
                    final = {**final, "repo": str(harness.repo)}
                (last,) = await fuzz.batch([final], tame=False)
                assert last.archived and last.valid is not None, last
                assert not harness.task.done()
            finally:
                await fuzz.forget()
