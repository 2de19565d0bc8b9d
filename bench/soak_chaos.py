"""Soak and chaos: every flow of the bus under load while services are SIGKILLed and
PostgreSQL restarts, then a check that every request got exactly one result.

The platform runs as an operator runs it on several machines: the stand-in provider
(`singularity.testing.openai_server`), Nexus (`singularity run nexus`) and two Genesis workers
(`singularity run genesis`), each in its own process, under a supervisor loop that restarts a
process that exits. This script plays the agent: it keeps `--outstanding` requests in flight
across the four flows (LLM calls, approvals, questions, code jobs), each with a unique
request_id and a reply queue of its own, and plays the human too, deciding approvals and
answering questions through Nexus's HTTP API.

The run has three parts, by requests sent: a calm first part (`--calm-fraction`), the chaos
(a SIGKILL of Nexus or a Genesis worker at random moments, `--kill-every-s` apart on average,
and `--pg-restarts` restarts of PostgreSQL), and a calm last part. After the last request it
waits for every result, lets late duplicates show up (`--settle-s`), stops the services and
checks the reply queues and their archives, the dead-letter queues and the request queues.
Throughput is the requests answered per `--window-s` window; the anchor is the median window
of the calm first part, compared with the median of the calm last part (target >= 0.9).

    python bench/soak_chaos.py [--requests 100000] [--outstanding 256]
        [--mix llm=70,approval=10,question=10,job=10] [--kill-every-s 8] [--pg-restarts 2]
        [--pg-restart-mode fast|immediate] [--database-url URL --pg-restart-command CMD]

Exits with status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from _chaos import (
    FORCED_WINDOW_S,
    CpuSampler,
    Restart,
    Supervisor,
    genesis_process,
    nexus_process,
    postmaster_pid,
    restart_postgres,
)
from _common import console, emit_json, machine, progress_console
from _nexus import (
    KEY_VALUE,
    KEY_VARIABLE,
    Platform,
    add_log_level_argument,
    add_platform_arguments,
    free_port,
    llm_request,
    load_average,
    mock_providers,
    open_platform,
    percentile,
    reply_queue,
    write_registry,
)
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Role
from singularity.presence import running_services
from singularity.shared_queue import Listener
from singularity.shared_queue.publisher import send_message
from singularity.shared_queue.waiting import race

FLOWS = ("llm", "approval", "question", "job")
REQUEST_QUEUE = {
    "llm": "llm_requests",
    "approval": "approval_requests",
    "question": "question_requests",
    "job": "job_requests",
}
ANSWERED_BY = {
    "llm": Role.NEXUS,
    "approval": Role.NEXUS,
    "question": Role.NEXUS,
    "job": Role.GENESIS,
}
DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
TARGET_RATIO = 0.9
SENDERS = 4  # concurrent send loops: sends are one round trip each
REVIEWERS = 16  # decisions under way at once: several people review
READ_BATCH = 500
READ_VT_S = 30


def parse_mix(text: str) -> dict[str, int]:
    weights = dict.fromkeys(FLOWS, 0)
    try:
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in weights:
                raise ValueError(f"unknown flow {name!r} (flows: {', '.join(FLOWS)})")
            weights[name] = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--mix {text!r}: {exc}") from None
    if any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise argparse.ArgumentTypeError(f"--mix {text!r}: weights must be >= 0, not all 0")
    return weights


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--requests", type=int, default=100_000, help="requests across all flows")
    add("--outstanding", type=int, default=256, help="requests in flight at most")
    add("--mix", type=parse_mix, default=parse_mix("llm=70,approval=10,question=10,job=10"))
    add("--provider-delay-ms", type=int, default=20, help="the stand-in provider's delay")
    add("--genesis-workers", type=int, default=2, help="Genesis worker processes")
    add("--calm-fraction", type=float, default=0.25, help="share of requests in each calm part")
    add("--chaos-seconds", type=float, help="end the chaos after this long (default: by requests)")
    add("--kill-every-s", type=float, default=8.0, help="mean seconds between SIGKILLs")
    add("--restart-delay-s", type=float, default=1.0, help="pause before a killed service restarts")
    add("--pg-restarts", type=int, default=2, help="restarts of PostgreSQL during the chaos")
    add("--pg-restart-mode", choices=("fast", "immediate"), default="fast")
    add(
        "--pg-restart-command",
        help="with --database-url: the command that restarts that server ({mode} is replaced)",
    )
    add("--drain-timeout-s", type=float, default=300.0, help="wait this long for the last results")
    add("--settle-s", type=float, default=35.0, help="then this long for late duplicates")
    add("--window-s", type=float, default=10.0, help="throughput window")
    add("--human-poll-ms", type=int, default=100, help="how often the human looks at the UI")
    add("--seed", type=int, default=1, help="random seed (flows, kills, decisions)")
    add_log_level_argument(parser)
    add_platform_arguments(parser)
    args = parser.parse_args()
    if args.requests < 1 or args.outstanding < 1 or args.genesis_workers < 1:
        parser.error("--requests, --outstanding and --genesis-workers must be positive")
    if not 0 < args.calm_fraction < 0.5:
        parser.error("--calm-fraction must be between 0 and 0.5")
    if args.kill_every_s <= 0 or args.window_s <= 0 or args.pg_restarts < 0:
        parser.error("--kill-every-s and --window-s must be positive, --pg-restarts >= 0")
    if args.database_url and args.pg_restarts and not args.pg_restart_command:
        parser.error(
            "--database-url with --pg-restarts needs --pg-restart-command, e.g. "
            "'sudo pg_ctlcluster 16 main restart -m {mode}' (or --pg-restarts 0)"
        )
    if args.pg_restart_command and not args.database_url:
        parser.error("--pg-restart-command is for --database-url (the embedded server is ours)")
    return args


# -- the agent's records ---------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    index: int
    flow: str
    request_id: str
    body: dict[str, Any]
    sent_at: float = 0.0  # time.time() of the first send
    sent: bool = False
    answered_at: float | None = None
    result: dict[str, Any] | None = None
    result_msg_ids: set[int] = field(default_factory=set)
    expected: Any = None  # what the human decided (approvals, questions)


@dataclass
class Counters:
    send_retries: int = 0  # sends whose outcome was unknown, sent again with the same id
    reader_reconnects: int = 0
    human_errors: int = 0  # HTTP calls that failed (Nexus down, or restarting)
    human_conflicts: int = 0  # a decision already taken (our earlier call got through)
    stray_results: int = 0  # results for no request of ours


class Soak:
    """One run: the requests, the agent's loops, the human, the chaos."""

    def __init__(
        self,
        args: argparse.Namespace,
        platform: Platform,
        supervisor: Supervisor,
        queues: dict[str, str],
        nexus_url: str,
        token: str,
        task_type: str,
    ) -> None:
        self.args = args
        self.platform = platform
        self.supervisor = supervisor
        self.queues = queues
        self.nexus_url = nexus_url
        self.token = token
        self.task_type = task_type
        self.rng = random.Random(args.seed)
        self.flows = [f for f in FLOWS if args.mix[f]]
        self.weights = [args.mix[f] for f in self.flows]
        self.requests: list[Request] = []
        self.by_id: dict[str, Request] = {}
        self.by_hitl_id: dict[str, Request] = {}
        self.slots = asyncio.Semaphore(args.outstanding)
        self.counter = itertools.count()
        self.sent = 0
        self.answered = 0
        self.counters = Counters()
        self.restarts: list[Restart] = []
        self.started = 0.0
        self.chaos_start: float | None = None
        self.chaos_end: float | None = None
        self.last_sent_at: float | None = None
        self.all_answered = asyncio.Event()
        self.calm_done = asyncio.Event()  # the calm first part is sent: the chaos begins
        self.stop = asyncio.Event()
        self.calm_n = int(args.requests * args.calm_fraction)
        self.chaos_until_n = args.requests - self.calm_n
        self.phase = "calm (before)"
        self.cpu = CpuSampler(lambda: [os.getpid(), postmaster_pid(platform)])

    # -- requests ------------------------------------------------------------------------

    def _next_request(self, index: int) -> Request:
        flow = self.rng.choices(self.flows, self.weights)[0]
        request_id = str(uuid.uuid4())
        reply_to = self.queues[flow]
        base = {"request_id": request_id, "reply_to": reply_to, "agent_id": "soak-agent"}
        if flow == "llm":
            body = llm_request(reply_to, self.task_type)
            body.update(base)
        elif flow == "approval":
            body = {**base, "id": str(uuid.uuid4()), "file_path": "app.py", "diff": DIFF,
                    "description": f"soak change {index}"}  # fmt: skip
        elif flow == "question":
            body = {**base, "id": str(uuid.uuid4()), "question": f"Which database for {index}?",
                    "context": {"options": ["pg", "sqlite"]}}  # fmt: skip
        else:
            body = {**base, "id": f"soak-{index}", "code": f"print({index})", "language": "python"}
        request = Request(index, flow, request_id, body)
        self.requests.append(request)
        self.by_id[request_id] = request
        if flow in ("approval", "question"):
            self.by_hitl_id[body["id"]] = request
        return request

    async def sender(self, pool: Any) -> None:
        while True:
            await self.slots.acquire()
            index = next(self.counter)
            if index >= self.args.requests:
                self.slots.release()
                return
            request = self._next_request(index)
            queue = REQUEST_QUEUE[request.flow]
            delay = 0.05
            while True:
                try:
                    async with pool.connection() as conn:
                        if not request.sent_at:
                            request.sent_at = time.time()
                        await send_message(conn, queue, request.body)
                    break
                except psycopg.OperationalError:
                    # The send may or may not have committed: sending it again is safe, the
                    # consumer has one effect per request_id. Never dropped.
                    self.counters.send_retries += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            request.sent = True
            self.sent += 1
            if self.sent >= self.calm_n:
                self.calm_done.set()
            if self.sent == self.args.requests:
                self.last_sent_at = time.time()

    # -- results -------------------------------------------------------------------------

    async def reader(self) -> None:
        """Reads every reply queue and archives what it read, in one transaction: the archive
        keeps every result for the check at the end. A result is noted before the commit; one
        read again after a lost commit has the same msg_id and is not counted twice."""
        listener = Listener(self.platform.bus)
        wakes = [listener.subscribe(q) for q in self.queues.values()]
        listening = asyncio.create_task(listener.run(self.stop))
        read = "SELECT msg_id, message::text FROM pgmq.read(%s, %s, %s)"
        archive = "SELECT pgmq.archive(%s, %s::bigint[])"
        conn: psycopg.AsyncConnection | None = None
        try:
            while not self.stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            self.platform.bus.conninfo(connect_timeout=5), autocommit=True
                        )
                    got = 0
                    for wake in wakes:
                        wake.clear()
                    for flow, queue in self.queues.items():
                        async with conn.transaction():
                            cursor = await conn.execute(read, (queue, READ_VT_S, READ_BATCH))
                            rows = await cursor.fetchall()
                            for msg_id, text in rows:
                                self._note(flow, int(msg_id), json.loads(text))
                            if rows:
                                await conn.execute(archive, (queue, [r[0] for r in rows]))
                        got += len(rows)
                    if not got:
                        await race(*(w.wait() for w in wakes), self.stop.wait(), seconds=0.1)
                except psycopg.OperationalError:
                    self.counters.reader_reconnects += 1
                    if conn is not None:
                        with contextlib.suppress(psycopg.Error):
                            await conn.close()
                    conn = None
                    await race(self.stop.wait(), seconds=0.2)
        finally:
            if conn is not None:
                await conn.close()
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    def _note(self, flow: str, msg_id: int, result: dict[str, Any]) -> None:
        request = self.by_id.get(str(result.get("request_id")))
        if request is None or request.flow != flow:
            self.counters.stray_results += 1
            return
        request.result_msg_ids.add(msg_id)
        if request.answered_at is None:
            request.answered_at = time.time()
            request.result = result
            self.answered += 1
            self.slots.release()
            if self.answered == self.args.requests:
                self.all_answered.set()

    # -- the human -----------------------------------------------------------------------

    async def human(self) -> None:
        """Looks at the pending approvals and questions in Nexus and decides each: approve or
        reject at random, answer every question. A decision is chosen once and sent again
        until Nexus confirms it (a 409 means an earlier try got through)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        gate = asyncio.Semaphore(REVIEWERS)
        async with httpx.AsyncClient(base_url=self.nexus_url, headers=headers, timeout=10) as web:

            async def decide(kind: str, item: dict[str, Any]) -> None:
                request = self.by_hitl_id.get(item["id"])
                if request is None:
                    return
                if request.expected is None:
                    if kind == "questions":
                        request.expected = f"answer to {request.index}"
                    else:
                        request.expected = self.rng.random() < 0.5
                if kind == "questions":
                    path = f"/api/questions/{item['id']}/answer"
                    payload: dict[str, Any] = {"user": "soak", "response": request.expected}
                elif request.expected:
                    path = f"/api/approvals/{item['id']}/approve"
                    payload = {"user": "soak"}
                else:
                    path = f"/api/approvals/{item['id']}/reject"
                    payload = {"user": "soak", "reason": "rejected at random"}
                async with gate:
                    try:
                        response = await web.post(path, json=payload)
                    except httpx.HTTPError:
                        self.counters.human_errors += 1
                        return
                if response.status_code == 409:
                    self.counters.human_conflicts += 1
                elif response.status_code != 200:
                    self.counters.human_errors += 1

            while not self.stop.is_set():
                work = []
                try:
                    for kind in ("approvals", "questions"):
                        response = await web.get(f"/api/{kind}")
                        response.raise_for_status()
                        work += [(kind, item) for item in response.json()["items"]]
                except (httpx.HTTPError, ValueError, KeyError):
                    self.counters.human_errors += 1
                    await race(self.stop.wait(), seconds=0.5)
                    continue
                await asyncio.gather(*(decide(kind, item) for kind, item in work))
                if not work:
                    await race(self.stop.wait(), seconds=self.args.human_poll_ms / 1000)

    # -- the chaos -----------------------------------------------------------------------

    async def chaos(self) -> None:
        args = self.args
        while not (self.calm_done.is_set() or self.stop.is_set()):
            await race(self.calm_done.wait(), self.stop.wait(), seconds=1.0)
        self.chaos_start = time.time()
        self.phase = "chaos"
        begun = time.monotonic()
        next_kill = begun + self.rng.expovariate(1 / args.kill_every_s)
        done_restarts = 0

        def progress() -> float:
            elapsed = time.monotonic() - begun
            by_time = elapsed / args.chaos_seconds if args.chaos_seconds else 0.0
            span = max(1, self.chaos_until_n - self.calm_n)
            return max(by_time, (self.sent - self.calm_n) / span)

        while progress() < 1.0 and not self.stop.is_set():
            if done_restarts < args.pg_restarts and progress() >= (done_restarts + 1) / (
                args.pg_restarts + 1
            ):
                await self._restart_postgres()
                done_restarts += 1
            if time.monotonic() >= next_kill:
                candidates = self.supervisor.ready()
                if candidates:
                    self.supervisor.kill(self.rng.choice(candidates))
                next_kill = time.monotonic() + self.rng.expovariate(1 / args.kill_every_s)
            await asyncio.sleep(0.05)
        while done_restarts < args.pg_restarts and not self.stop.is_set():
            await self._restart_postgres()
            done_restarts += 1
        self.chaos_end = time.time()
        self.phase = "calm (after)"

    async def _restart_postgres(self) -> None:
        restart = await asyncio.to_thread(
            restart_postgres, self.platform, self.args.pg_restart_mode, self.args.pg_restart_command
        )
        self.restarts.append(restart)

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> bool:
        """Everything until each request has its result (True) or the drain timed out."""
        pool = await open_pool(self.platform.bus, name="soak-agent", min_size=2, max_size=SENDERS)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        background = [
            asyncio.create_task(self.reader(), name="reader"),
            asyncio.create_task(self.human(), name="human"),
            asyncio.create_task(self.supervisor.watch(self.stop), name="supervisor"),
            asyncio.create_task(self.cpu.run(self.stop, 2.0), name="cpu"),
        ]
        try:
            self.started = time.time()
            with Progress(*columns, console=progress_console) as bar:
                task = bar.add_task("answered", total=self.args.requests)

                async def show() -> None:
                    while not self.stop.is_set():
                        kills = len(self.supervisor.kills)
                        bar.update(
                            task,
                            completed=self.answered,
                            description=f"{self.phase}: sent {self.sent:,}, kills {kills}, "
                            f"pg restarts {len(self.restarts)}, answered",
                        )
                        await asyncio.sleep(0.5)

                background.append(asyncio.create_task(show(), name="progress"))
                chaos = asyncio.create_task(self.chaos(), name="chaos")
                await asyncio.gather(*(self.sender(pool) for _ in range(SENDERS)))
                await chaos
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.all_answered.wait(), self.args.drain_timeout_s)
                drained = self.all_answered.is_set()
                self.phase = "settling"
                # Late duplicates (a redelivery, a republished decision) have time to show up.
                await asyncio.sleep(self.args.settle_s if drained else 0)
                bar.update(task, completed=self.answered)
            return drained
        finally:
            self.stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await pool.close()


# -- the checks ------------------------------------------------------------------------------


async def verify(platform: Platform, soak: Soak) -> dict[str, Any]:
    """What the databases hold: results per request_id (reply queues and their archives),
    dead letters of our requests, and what is left in the request queues."""
    ours = set(soak.by_id)
    per_flow: dict[str, dict[str, Any]] = {}
    dead: list[dict[str, Any]] = []
    async with await psycopg.AsyncConnection.connect(
        platform.bus.conninfo(), autocommit=True
    ) as conn:
        for flow, queue in soak.queues.items():
            query = sql.SQL(
                "SELECT message->>'request_id', count(*) FROM "
                "(SELECT message FROM pgmq.{q} UNION ALL SELECT message FROM pgmq.{a}) t "
                "GROUP BY 1"
            ).format(q=sql.Identifier(f"q_{queue}"), a=sql.Identifier(f"a_{queue}"))
            counts = {k: int(n) for k, n in await (await conn.execute(query)).fetchall()}
            sent = {r.request_id for r in soak.requests if r.flow == flow}
            per_flow[flow] = {
                "missing": sorted(sent - counts.keys()),
                "duplicates": {k: n for k, n in counts.items() if n > 1},
                "strays": sorted(counts.keys() - ours),
            }
        left: dict[str, int] = {}
        for flow, queue in REQUEST_QUEUE.items():
            table = sql.Identifier(f"q_{queue}")
            row = await (
                await conn.execute(sql.SQL("SELECT count(*) FROM pgmq.{}").format(table))
            ).fetchone()
            left[queue] = int(row[0]) if row else 0
            dlq = f"{queue}_dlq"
            exists = await (
                await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"pgmq.q_{dlq}",))
            ).fetchone()
            if not (exists and exists[0]):
                continue
            query = sql.SQL(
                "SELECT message FROM pgmq.{q} UNION ALL SELECT message FROM pgmq.{a}"
            ).format(q=sql.Identifier(f"q_{dlq}"), a=sql.Identifier(f"a_{dlq}"))
            for (letter,) in await (await conn.execute(query)).fetchall():
                original = letter.get("original") if isinstance(letter, dict) else None
                key = original.get("request_id") if isinstance(original, dict) else None
                if key in ours:
                    dead.append({"flow": flow, "request_id": key, "reason": letter.get("reason")})
    return {"per_flow": per_flow, "dead_letters": dead, "left_in_request_queues": left}


async def presence(platform: Platform) -> Counter[str]:
    """The services `singularity status` sees: each holds a named connection to the bus."""
    async with await psycopg.AsyncConnection.connect(
        platform.bus.conninfo(), autocommit=True
    ) as conn:
        return Counter(p.service for p in await running_services(conn))


def wrong_answer(request: Request) -> str | None:
    """Why the result is not the one this request should get, or None."""
    result = request.result or {}
    if request.flow == "llm":
        if "error" in result or not result.get("result"):
            return f"llm error {result.get('error')}"
    elif request.flow == "approval":
        if result.get("approved") is not request.expected:
            return f"approved={result.get('approved')} but the human chose {request.expected}"
    elif request.flow == "question":
        if result.get("response") != request.expected:
            return f"response {result.get('response')!r}, expected {request.expected!r}"
    elif result.get("status") != "OK" or result.get("output", "").strip() != str(request.index):
        return f"job status {result.get('status')}, output {result.get('output', '')[:40]!r}"
    return None


# -- the figures -----------------------------------------------------------------------------


def windows(soak: Soak, width: float) -> list[dict[str, Any]]:
    """Requests answered per window from the first send, each labelled with its part."""
    end = max((r.answered_at or 0.0) for r in soak.requests)
    count = max(1, math.ceil((end - soak.started) / width))
    answered = Counter(
        int((r.answered_at - soak.started) // width) for r in soak.requests if r.answered_at
    )
    chaos_start = soak.chaos_start or math.inf
    chaos_end = soak.chaos_end or math.inf
    last_sent = soak.last_sent_at or end
    out = []
    for k in range(count):
        start, stop = soak.started + k * width, soak.started + (k + 1) * width
        if stop <= chaos_start:
            part = "before"
        elif start >= chaos_start and stop <= chaos_end:
            part = "during"
        elif start >= chaos_end and stop <= last_sent:
            part = "after"
        else:
            part = "edge"  # straddles a boundary, or the drain after the last send
        out.append({"t_s": round(k * width, 1), "answered": answered[k], "part": part})
    return out


def throughput(soak: Soak, width: float) -> dict[str, Any]:
    table = windows(soak, width)

    def rate(part: str) -> float | None:
        values = [w["answered"] / width for w in table if w["part"] == part]
        return round(statistics.median(values), 1) if values else None

    before, during, after = rate("before"), rate("during"), rate("after")
    ratio = round(after / before, 3) if before and after is not None else None
    ends = [soak.started, soak.chaos_start, soak.chaos_end, soak.last_sent_at]
    cpu = {}
    for part, (start, end) in zip(
        ("before", "during", "after"), itertools.pairwise(ends), strict=True
    ):
        cpu[part] = soak.cpu.between(start, end) if start and end else None
    return {
        "window_s": width,
        "before_per_s": before,
        "during_per_s": during,
        "after_per_s": after,
        "after_over_before": ratio,
        "windows": {
            part: sum(w["part"] == part for w in table) for part in ("before", "during", "after")
        },
        "cpu": cpu,
        "series": table,
    }


def recoveries(soak: Soak, anchor_per_s: float | None) -> list[dict[str, Any]]:
    """Per kill and restart: seconds until a 5 s stretch again answers >= 90% of the anchor
    rate (None when the next event came first, or there is no anchor)."""
    events = [{"event": f"kill {k['service']}", "at": k["at"], **k} for k in soak.supervisor.kills]
    events += [
        {"event": f"postgres restart ({r.mode})", "at": r.started, "seconds": r.seconds}
        for r in soak.restarts
    ]
    events.sort(key=lambda e: e["at"])
    answered = sorted(r.answered_at for r in soak.requests if r.answered_at)
    buckets = Counter(int(t) for t in answered)
    end = answered[-1] if answered else 0.0
    out = []
    for i, event in enumerate(events):
        limit = events[i + 1]["at"] if i + 1 < len(events) else end
        recovered = None
        if anchor_per_s:
            t = int(event["at"]) + 5
            while t <= limit + 5 and t <= end:
                if sum(buckets[s] for s in range(t - 5, t)) / 5 >= TARGET_RATIO * anchor_per_s:
                    recovered = round(t - event["at"], 1)
                    break
                t += 1
        row = {k: v for k, v in event.items() if k not in ("service",)}
        row["at_s"] = round(event["at"] - soak.started, 1)
        row["recovered_after_s"] = recovered
        del row["at"]
        out.append(row)
    return out


def latency(requests: Sequence[Request]) -> dict[str, float]:
    values = [r.answered_at - r.sent_at for r in requests if r.answered_at]
    return {
        "p50_ms": round(percentile(values, 0.5) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1) if values else math.nan,
    }


def report(soak: Soak, checked: dict[str, Any], seen: Counter[str], drained: bool) -> dict:
    args = soak.args
    flows: dict[str, Any] = {}
    wrong: list[dict[str, Any]] = []
    for flow in FLOWS:
        mine = [r for r in soak.requests if r.flow == flow]
        if not mine:
            continue
        db = checked["per_flow"][flow]
        for r in mine:
            why = wrong_answer(r) if r.answered_at else None
            if why:
                wrong.append({"flow": flow, "request_id": r.request_id, "why": why})
        flows[flow] = {
            "sent": len(mine),
            "answered": sum(r.answered_at is not None for r in mine),
            **latency(mine),
            "duplicates": len(db["duplicates"]),
            "missing": len(db["missing"]),
            "dead_letters": sum(d["flow"] == flow for d in checked["dead_letters"]),
            "wrong": sum(w["flow"] == flow for w in wrong),
            "client_duplicates": sum(len(r.result_msg_ids) > 1 for r in mine),
        }
    restarts = [{"mode": r.mode, "at_s": round(r.started - soak.started, 1), "seconds": r.seconds}
                for r in soak.restarts]  # fmt: skip
    forced = [
        e
        for e in soak.supervisor.exits
        if any(r.started <= e.at <= r.started + r.seconds + FORCED_WINDOW_S for r in soak.restarts)
    ]
    expected_presence = Counter(s.service for s in soak.supervisor.services)
    tp = throughput(soak, args.window_s)
    duplicates = {
        flow: checked["per_flow"][flow]["duplicates"] for flow in flows if flows[flow]["duplicates"]
    }
    missing = {flow: checked["per_flow"][flow]["missing"][:20] for flow in flows}
    strays = sum(len(checked["per_flow"][f]["strays"]) for f in flows)
    checks = [
        ("every request answered before the drain timeout", drained),
        ("no request without a result", not any(f["missing"] for f in flows.values())),
        ("no request with two results", not duplicates),
        ("no result for a request never sent", strays == 0),
        ("no dead letter of a request sent", not checked["dead_letters"]),
        ("every result the right one", not wrong),
        ("request queues empty at the end", not any(checked["left_in_request_queues"].values())),
        ("no service exited on its own", not soak.supervisor.exits),
        ("every service visible to `singularity status`", seen == expected_presence),
        (
            f"throughput after / before >= {TARGET_RATIO}",
            tp["after_over_before"] is not None and tp["after_over_before"] >= TARGET_RATIO,
        ),
    ]
    kills = Counter(k["service"] for k in soak.supervisor.kills)
    ready_after = [k["ready_after_s"] for k in soak.supervisor.kills if k["ready_after_s"]]
    return {
        "flows": flows,
        "duplicates": {f: dict(list(d.items())[:20]) for f, d in duplicates.items()},
        "missing": {f: m for f, m in missing.items() if m},
        "dead_letters": checked["dead_letters"][:50],
        "wrong": wrong[:50],
        "left_in_request_queues": checked["left_in_request_queues"],
        "chaos": {
            "kills": dict(sorted(kills.items())),
            "kills_total": sum(kills.values()),
            "service_ready_after_kill_s": {
                "median": round(statistics.median(ready_after), 2) if ready_after else None,
                "max": max(ready_after) if ready_after else None,
            },
            "postgres_restarts": restarts,
            "service_exits": [
                {
                    "service": e.service,
                    "at_s": round(e.at - soak.started, 1),
                    "code": e.code,
                    "log_tail": e.log_tail[-1500:],
                }
                for e in soak.supervisor.exits
            ],
            "restarts_forced_by_postgres": len(forced),
            "start_failures": soak.supervisor.start_failures[:20],
            "presence": dict(seen),
            "chaos_s": round((soak.chaos_end or 0) - (soak.chaos_start or 0), 1),
        },
        "client": soak.counters.__dict__,
        "throughput": tp,
        "recoveries": recoveries(soak, tp["before_per_s"]),
        "checks": [{"check": name, "met": bool(met)} for name, met in checks],
        "passed": all(met for _, met in checks),
        "wall_s": round(time.time() - soak.started, 1),
    }


def print_tables(result: dict[str, Any]) -> None:
    table = Table(title="Per flow (latency: request sent to result read; approvals and "
                  "questions include the human's decision)")  # fmt: skip
    columns = ("flow", "sent", "answered", "p50 ms", "p99 ms", "max ms", "duplicates",
               "missing", "dead letters", "wrong")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "flow" else "right")
    for flow, f in result["flows"].items():
        table.add_row(
            flow, f"{f['sent']:,}", f"{f['answered']:,}", f"{f['p50_ms']:,.1f}",
            f"{f['p99_ms']:,.1f}", f"{f['max_ms']:,.1f}", str(f["duplicates"]),
            str(f["missing"]), str(f["dead_letters"]), str(f["wrong"]),
        )  # fmt: skip
    console.print(table)

    chaos = result["chaos"]
    table = Table(title="Chaos")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for service, n in chaos["kills"].items():
        table.add_row(f"SIGKILL {service}", str(n))
    ready = chaos["service_ready_after_kill_s"]
    if ready["median"] is not None:
        table.add_row("killed service ready again (median / max s)",
                      f"{ready['median']:.1f} / {ready['max']:.1f}")  # fmt: skip
    for r in chaos["postgres_restarts"]:
        table.add_row(
            f"PostgreSQL restart -m {r['mode']} at {r['at_s']:.0f} s", f"{r['seconds']} s"
        )
    table.add_row("service restarts forced by PostgreSQL restarts",
                  str(chaos["restarts_forced_by_postgres"]))  # fmt: skip
    table.add_row("services that exited on their own", str(len(chaos["service_exits"])))
    client = result["client"]
    table.add_row("agent: sends repeated (outcome unknown)", str(client["send_retries"]))
    table.add_row("agent: reader reconnects", str(client["reader_reconnects"]))
    table.add_row("human: failed HTTP calls / decisions already taken",
                  f"{client['human_errors']} / {client['human_conflicts']}")  # fmt: skip
    console.print(table)

    tp = result["throughput"]
    table = Table(
        title=f"Throughput (requests answered per s, median of {tp['window_s']:g} s windows)"
    )
    for column in ("before chaos", "during", "after", "after / before"):
        table.add_column(column, justify="right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    ratio = tp["after_over_before"]
    table.add_row(
        f"{fmt(tp['before_per_s'])} ({tp['windows']['before']} windows)",
        f"{fmt(tp['during_per_s'])} ({tp['windows']['during']})",
        f"{fmt(tp['after_per_s'])} ({tp['windows']['after']})",
        "-" if ratio is None else f"{ratio:.3f} (target >= {TARGET_RATIO})",
    )
    cpu = tp["cpu"]
    if any(cpu.values()):

        def share(part: str) -> str:
            c = cpu[part]
            if not c:
                return "-"
            return f"{c['machine_busy_pct']:.0f} / {c['run_pct']:.0f} / {c['others_pct']:.0f}"

        table.add_row(share("before"), share("during"), share("after"),
                      "CPU % of one core: machine / run / other work")  # fmt: skip
    console.print(table)

    recovered = [e["recovered_after_s"] for e in result["recoveries"] if e["recovered_after_s"]]
    if result["recoveries"]:
        console.print(
            f"Back to >= {TARGET_RATIO:.0%} of the anchor rate after an event: "
            f"{len(recovered)} of {len(result['recoveries'])} events before the next one"
            + (
                f", median {statistics.median(recovered):.1f} s, max {max(recovered):.1f} s"
                if recovered
                else ""
            )
        )
    for name in ("duplicates", "missing", "dead_letters", "wrong"):
        if result[name]:
            console.print(f"[red]{name}[/]: {json.dumps(result[name])[:2000]}")
    for e in chaos["service_exits"]:
        console.print(
            f"[red]{e['service']} exited ({e['code']}) at {e['at_s']} s[/]:\n{e['log_tail']}"
        )

    table = Table(title="Checks")
    table.add_column("check")
    table.add_column("met", justify="right")
    for c in result["checks"]:
        table.add_row(c["check"], "[green]yes[/]" if c["met"] else "[red]no[/]")
    console.print(table)


# -- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with open_platform(args) as platform:
        info = machine(platform.server)
        with mock_providers(platform, [args.provider_delay_ms]) as providers:
            provider = providers[args.provider_delay_ms]
            registry = write_registry(platform.home / "models.toml", [provider])
            token = secrets.token_urlsafe(24)
            port = free_port()
            # Each process on this one machine as if alone on its own: no shared metrics port.
            common = {
                "SINGULARITY_METRICS_PORT": "-1",
                "SINGULARITY_LOG_LEVEL": args.nexus_log_level,
            }
            nexus = nexus_process(
                platform,
                port,
                {**common, "NEXUS_MODELS_FILE": str(registry), "NEXUS_UI_TOKEN": token,
                 KEY_VARIABLE: KEY_VALUE},
            )  # fmt: skip
            workers = [
                genesis_process(platform, n + 1, common) for n in range(args.genesis_workers)
            ]
            supervisor = Supervisor([nexus, *workers], restart_delay_s=args.restart_delay_s)
            async with contextlib.AsyncExitStack() as stack:
                queues = {
                    flow: await stack.enter_async_context(
                        reply_queue(platform, f"soak_{flow}", ANSWERED_BY[flow])
                    )
                    for flow in FLOWS
                }
                progress_console.print(
                    f"starting nexus and {args.genesis_workers} genesis workers in {platform.home}"
                )
                soak = Soak(args, platform, supervisor, queues, f"http://127.0.0.1:{port}",
                            token, provider.task_type)  # fmt: skip
                try:
                    await supervisor.start_all()
                    drained = await soak.run()
                    await supervisor.settle()
                    seen = await presence(platform)
                finally:
                    await supervisor.stop_all()
                checked = await verify(platform, soak)
                result = report(soak, checked, seen, drained)
    result["machine"] = info
    result["load_average"] = load_average()
    return result


async def main() -> None:
    args = parse_args()
    result = await run(args)
    print_tables(result)
    params = {k: v for k, v in vars(args).items() if k not in ("home", "database_url")}
    params["database"] = "external" if args.database_url else "embedded"
    emit_json({"benchmark": "soak_chaos", "params": params, **result})
    if not result["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
