"""`singularity status` and `singularity doctor`: what runs, what waits, what is wrong.

Status reads what the databases say now: the services holding a presence connection
(`presence.py`), queue depths and dead letters, pending human decisions. Doctor runs every
check a working platform needs and says, for each one that fails, how to fix it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import psycopg

from singularity.config import Settings
from singularity.errors import DatabaseUnavailable
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, describe_error
from singularity.postgres.status import database_status
from singularity.postgres.topology import Database
from singularity.presence import running_services
from singularity.shared_queue.catalog import DLQ_SUFFIX, instance_queues
from singularity.shared_queue.install import missing_queues
from singularity.shared_queue.metrics import queue_depths

__all__ = [
    "Check",
    "PlatformStatus",
    "platform_status",
    "provider_check",
    "run_checks",
    "sandbox_check",
]

Verdict = Literal["ok", "warn", "fail"]


@dataclass
class PlatformStatus:
    database: str
    reachable: bool
    error: str | None = None
    services: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    pending_approvals: int | None = None
    pending_questions: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def platform_status(cluster: Cluster) -> PlatformStatus:
    """What runs and what waits, as the databases say now."""
    from singularity.nexus.sql import QUERIES as NEXUS_QUERIES  # Nexus's own query, as admin

    bus = cluster.admin(Database.SHARED_QUEUE)
    status = PlatformStatus(
        database=str(cluster.maintenance(Database.SHARED_QUEUE)), reachable=False
    )
    try:
        async with async_connection(bus) as conn:
            status.reachable = True
            status.services = [
                {"service": p.service, "host": p.host, "pid": p.pid, "since": p.since}
                for p in await running_services(conn)
            ]
            status.queues = [
                {"queue": d.queue, "length": d.length, "oldest_age_s": d.oldest_age_s}
                for d in await queue_depths(conn)
            ]
        async with async_connection(cluster.admin(Database.NEXUS)) as conn:
            row = await (await conn.execute(NEXUS_QUERIES["pending_counts"])).fetchone()
            if row is not None:
                status.pending_approvals, status.pending_questions = int(row[0]), int(row[1])
    except DatabaseUnavailable as exc:
        status.error = str(exc)
    except psycopg.Error as exc:
        status.error = describe_error(exc)
    return status


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


async def run_checks(settings: Settings, cluster: Cluster) -> list[Check]:
    """Every check, in the order a newcomer would fix them."""
    checks = await _database_checks(settings, cluster)
    checks.append(await sandbox_check(settings))
    checks.extend(_language_checks())
    checks.append(provider_check(settings))
    return checks


async def _database_checks(settings: Settings, cluster: Cluster) -> list[Check]:
    server = cluster.maintenance(Database.SHARED_QUEUE)
    where = (
        f"embedded, in {settings.pgdata}" if cluster.embedded else f"{server.host}:{server.port}"
    )
    statuses = await database_status(cluster)
    unreachable = [s for s in statuses if not s.reachable]
    if unreachable:
        server_fix = (
            "the embedded server starts with any command; see `singularity db status`"
            if settings.embedded
            else "check DB_HOST, DB_PORT and the credentials in .env (`singularity config show`)"
        )
        first = unreachable[0]
        if all("does not exist" in (s.error or "") for s in unreachable):
            return [
                Check("database", "fail", f"{first.name}: {first.error}", "singularity db init")
            ]
        return [Check("database", "fail", f"{where}: {first.error}", server_fix)]
    checks = [Check("database", "ok", f"{where}: {len(statuses)} databases reachable")]
    behind = [s for s in statuses if not s.up_to_date]
    if behind:
        names = ", ".join(f"{s.name} at {s.migration or 'none'} (head {s.head})" for s in behind)
        checks.append(Check("migrations", "fail", names, "singularity db migrate"))
    else:
        checks.append(Check("migrations", "ok", "every database at its head revision"))
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        missing = await missing_queues(conn)
        if not missing and cluster.instance > 1:
            missing = await missing_queues(conn, instance_queues(cluster.instance))
        services = await running_services(conn)
    if missing:
        fix = "singularity db init" + (
            f" --instance {cluster.instance}" if cluster.instance > 1 else ""
        )
        checks.append(Check("bus", "fail", f"missing queue {missing[0]!r}", fix))
    else:
        checks.append(Check("bus", "ok", "every queue and dead-letter queue exists"))
    async with async_connection(cluster.admin(Database.SINGULARITY)) as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
        ).fetchone()
    if row and row[0]:
        checks.append(Check("pgvector", "ok", "installed: knowledge search uses embeddings"))
    else:
        checks.append(
            Check(
                "pgvector",
                "warn",
                "not installed: knowledge search is full text only",
                "install pgvector (apt-get install postgresql-16-pgvector), then "
                "singularity db init",
            )
        )
    names = sorted({p.service for p in services})
    if names:
        where_running = ", ".join(f"{n} ({sum(p.service == n for p in services)})" for n in names)
        checks.append(Check("services", "ok", f"running: {where_running}"))
    else:
        checks.append(Check("services", "warn", "no service is running", "singularity up"))
    return checks


async def sandbox_check(settings: Settings) -> Check:
    from singularity.genesis.sandbox import Sandbox, SandboxUnavailable

    if settings.genesis_unsafe_sandbox:
        return Check(
            "sandbox",
            "warn",
            "GENESIS_UNSAFE_SANDBOX=true: code runs without isolation",
            "unset GENESIS_UNSAFE_SANDBOX (development only)",
        )
    try:
        await Sandbox().check()
    except SandboxUnavailable as exc:
        return Check("sandbox", "fail", str(exc), "apt-get install bubblewrap")
    return Check("sandbox", "ok", "bubblewrap isolates code (namespaces, rlimits)")


def _language_checks() -> list[Check]:
    from singularity.genesis.jobs.languages import LANGUAGES

    checks = []
    for lang in LANGUAGES.values():
        missing = lang.missing()
        if missing is None:
            checks.append(Check(f"language {lang.name}", "ok", "toolchain found"))
        else:
            detail = missing.partition(":")[0]  # the hint is the fix
            checks.append(Check(f"language {lang.name}", "warn", detail, lang.install_hint))
    return checks


def provider_check(settings: Settings) -> Check:
    from singularity.errors import SingularityError
    from singularity.nexus.models_view import describe_models
    from singularity.nexus.providers import CONFIGURE_A_PROVIDER, Providers
    from singularity.nexus.registry import load_registry

    try:
        rows = describe_models(load_registry(settings), Providers(settings))
    except SingularityError as exc:
        return Check("models", "fail", str(exc), "fix the models file (NEXUS_MODELS_FILE)")
    callable_models = [row["name"] for row in rows if row["credentials"]]
    if callable_models:
        shown = ", ".join(callable_models[:6]) + ("..." if len(callable_models) > 6 else "")
        return Check("models", "ok", f"{len(callable_models)} callable: {shown}")
    return Check(
        "models",
        "fail",
        "no model has credentials: model calls will fail",
        CONFIGURE_A_PROVIDER,
    )


def dead_letter_total(queues: list[dict[str, Any]]) -> int:
    return sum(q["length"] for q in queues if str(q["queue"]).endswith(DLQ_SUFFIX))
