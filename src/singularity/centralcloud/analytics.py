"""Analytics over the bus's archives: LLM requests, approvals and code runs of the last days.

Every figure is computed in SQL over the archives (the audit trail: a consumer archives what it
has handled), read as the read-only centralcloud_analytics role. Each flow pairs its requests
archive with the results archives of every Singularity instance (`<queue>` for the first,
`<queue>_<instance>` for the others), found afresh for each report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from singularity.centralcloud.archives import ArchiveReader
from singularity.centralcloud.libraries import LANGUAGE_ALIASES
from singularity.centralcloud.report import (
    AnalyticsReport,
    ApprovalRow,
    JobRow,
    LlmDay,
    LlmRow,
    LlmSection,
)
from singularity.errors import UsageError

__all__ = ["FLOWS", "MAX_DAYS", "check_days", "compute_report", "results_of"]

# (requests queue, results queue) of each section.
FLOWS = {
    "llm": ("llm_requests", "llm_results"),
    "approvals": ("approval_requests", "approval_responses"),
    "jobs": ("job_requests", "job_results"),
}
MAX_DAYS = 3650

# The grouping sets of llm_report.
_BY_MODEL, _BY_DAY_AND_TASK, _BY_DAY = 4, 1, 3


def results_of(queue: str, archives: Iterable[str]) -> list[str]:
    """The archives among `archives` that hold `queue`'s results: its own and each instance's."""
    pattern = re.compile(rf"^a_{re.escape(queue)}(_[0-9]+)?$")
    return sorted(archive for archive in archives if pattern.match(archive))


def check_days(days: int) -> int:
    """`days` if it is a window a report can cover, else a UsageError."""
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--since must be a number of days from 1 to {MAX_DAYS}, not {days}")
    return days


async def compute_report(reader: ArchiveReader, days: int) -> AnalyticsReport:
    """The report of the last `days` days."""
    check_days(days)
    since, until = await reader.window(days)
    readable = await reader.readable_archives(results for _, results in FLOWS.values())
    params: dict[str, Any] = {"since": since, "until": until}

    async def section(name: str, query: str, **extra: Any) -> list[dict[str, Any]]:
        requests, results = FLOWS[name]
        return await reader.report(
            query, requests, results_of(results, readable), {**params, **extra}
        )

    llm = await section("llm", "llm_report")
    approvals = await section("approvals", "approvals_report")
    aliases = list(LANGUAGE_ALIASES)
    jobs = await section(
        "jobs", "jobs_report", aliases=aliases, canonical=[LANGUAGE_ALIASES[a] for a in aliases]
    )
    return AnalyticsReport(
        since_days=days,
        since=since,
        until=until,
        archives=readable,
        llm=_llm_section(llm, since, until),
        approvals=[ApprovalRow(**row) for row in approvals],
        jobs=[JobRow(**row) for row in jobs],
    )


def _llm_section(rows: list[dict[str, Any]], since: datetime, until: datetime) -> LlmSection:
    by_model, daily, totals = [], [], {}
    for row in rows:
        kind = row.pop("grouping_set")
        if kind == _BY_MODEL:
            by_model.append(LlmRow(**row))
        elif kind == _BY_DAY_AND_TASK:
            daily.append(_day(row, row["task_type"]))
        elif kind == _BY_DAY:
            totals[row["day"]] = _day(row, None)
    days = [totals.get(day, LlmDay(day=day)) for day in _days(since, until)]
    return LlmSection(rows=by_model, days=days, daily=daily)


def _day(row: dict[str, Any], task_type: str | None) -> LlmDay:
    return LlmDay(
        day=row["day"],
        task_type=task_type,
        requests=row["requests"],
        errors=row["errors"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=row["cost_usd"],
    )


def _days(since: datetime, until: datetime) -> list[date]:
    """Every UTC day the window touches, oldest first."""
    first = since.astimezone(UTC).date()
    last = until.astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
