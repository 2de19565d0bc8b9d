"""The analytics report and the patterns as Rich tables, with small unicode charts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from singularity.centralcloud.report import AnalyticsReport, LlmSection, Patterns

__all__ = ["bar", "render_patterns", "render_report", "sparkline"]

_TICKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, its height relative to the largest; a zero is a dot."""
    top = max(values, default=0)
    if top <= 0:
        return "·" * len(values)
    return "".join(
        "·" if v <= 0 else _TICKS[min(len(_TICKS) - 1, int(v / top * len(_TICKS)))] for v in values
    )


def bar(rate: float | None, width: int = 10) -> str:
    """A share from 0 to 1 as a bar of `width` cells; nothing for no share."""
    if rate is None:
        return ""
    full = round(max(0.0, min(1.0, rate)) * width)
    return "█" * full + "░" * (width - full)


def render_report(report: AnalyticsReport) -> RenderableType:
    """Every section of the report, with a heading naming its window."""
    since = report.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    until = report.until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = Text(f"Analytics of the last {report.since_days} days ({since} to {until})")
    heading.stylize("bold")
    return Group(
        heading,
        _llm_table(report.llm),
        _llm_days(report.llm),
        _approvals(report),
        _jobs(report),
    )


def _llm_table(llm: LlmSection) -> RenderableType:
    if not llm.rows:
        return Text("No LLM requests in this window.", style="dim")
    table = Table(title="LLM requests by task type, tier and model", title_justify="left")
    for column in ("task type", "tier", "model"):
        table.add_column(column, overflow="fold")
    for column in ("requests", "errors", "error rate", "prompt tok", "completion tok", "cost"):
        table.add_column(column, justify="right")
    for row in llm.rows:
        unknown = f" (+{row.cost_unknown} unknown)" if row.cost_unknown else ""
        table.add_row(
            escape(row.task_type),
            escape(row.tier),
            escape(row.model),
            str(row.requests),
            str(row.errors),
            _percent(row.error_rate),
            f"{row.prompt_tokens:,}",
            f"{row.completion_tokens:,}",
            f"${row.cost_usd:.4f}{unknown}",
        )
    return table


def _llm_days(llm: LlmSection) -> RenderableType:
    if not llm.rows:
        return Text("")
    days = [d.day for d in llm.days]
    first, last = days[0].isoformat(), days[-1].isoformat()
    table = Table(title=f"LLM requests per day ({first} to {last})", title_justify="left")
    table.add_column("task type", overflow="fold")
    table.add_column("per day")
    for column in ("requests", "errors", "tokens", "cost"):
        table.add_column(column, justify="right")
    series: dict[str, dict] = defaultdict(dict)
    for day in llm.daily:
        series[day.task_type or "-"][day.day] = day
    for task_type, by_day in sorted(series.items()):
        counts = [by_day[d].requests if d in by_day else 0 for d in days]
        picked = list(by_day.values())
        table.add_row(
            escape(task_type),
            sparkline(counts),
            str(sum(counts)),
            str(sum(d.errors for d in picked)),
            f"{sum(d.prompt_tokens + d.completion_tokens for d in picked):,}",
            f"${sum(d.cost_usd for d in picked):.4f}",
        )
    totals = llm.days
    table.add_row(
        Text("all", style="bold"),
        sparkline([d.requests for d in totals]),
        str(sum(d.requests for d in totals)),
        str(sum(d.errors for d in totals)),
        f"{sum(d.prompt_tokens + d.completion_tokens for d in totals):,}",
        f"${sum(d.cost_usd for d in totals):.4f}",
        style="bold",
    )
    return table


def _approvals(report: AnalyticsReport) -> RenderableType:
    if not report.approvals:
        return Text("No approval requests in this window.", style="dim")
    table = Table(title="Approvals by agent", title_justify="left")
    table.add_column("agent", overflow="fold")
    for column in ("requests", "decided", "approved", "approval rate", "p50", "p90"):
        table.add_column(column, justify="right")
    table.add_column("")
    for row in report.approvals:
        table.add_row(
            escape(row.agent_id),
            str(row.requests),
            str(row.decided),
            str(row.approved),
            _percent(row.approval_rate),
            _duration(row.p50_s),
            _duration(row.p90_s),
            bar(row.approval_rate),
        )
    return table


def _jobs(report: AnalyticsReport) -> RenderableType:
    if not report.jobs:
        return Text("No code runs in this window.", style="dim")
    table = Table(title="Code runs by language", title_justify="left")
    table.add_column("language")
    for column in ("runs", "completed", "succeeded", "success rate", "p50 wall", "p90 wall"):
        table.add_column(column, justify="right")
    table.add_column("")
    for row in report.jobs:
        table.add_row(
            escape(row.language),
            str(row.runs),
            str(row.completed),
            str(row.succeeded),
            _percent(row.success_rate),
            _ms(row.p50_wall_ms),
            _ms(row.p90_wall_ms),
            bar(row.success_rate),
        )
    return table


def render_patterns(patterns: Patterns) -> RenderableType:
    """What learning has gathered: models per task type, libraries per language."""
    return Group(_models(patterns), _libraries(patterns))


def _models(patterns: Patterns) -> RenderableType:
    if not patterns.models:
        return Text("No proposed changes learned yet.", style="dim")
    table = Table(
        title="Models by task type: changes approved with passing tests", title_justify="left"
    )
    table.add_column("task type", overflow="fold")
    table.add_column("model", overflow="fold")
    for column in ("proposals", "decided", "approved", "tests passed", "both", "rate"):
        table.add_column(column, justify="right")
    table.add_column("")
    for row in patterns.models:
        table.add_row(
            escape(row.task_type),
            escape(row.model),
            str(row.proposals),
            str(row.decided),
            str(row.approved),
            str(row.tests_passed),
            str(row.approved_and_passing),
            _percent(row.rate),
            bar(row.rate),
        )
    return table


def _libraries(patterns: Patterns) -> RenderableType:
    if not patterns.libraries:
        return Text("No libraries learned yet.", style="dim")
    table = Table(title="Libraries seen in executed code", title_justify="left")
    table.add_column("language")
    table.add_column("library", overflow="fold")
    table.add_column("jobs", justify="right")
    table.add_column("last seen (UTC)")
    for lib in patterns.libraries:
        table.add_row(
            escape(lib.language),
            escape(lib.library),
            str(lib.jobs),
            lib.last_seen_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        )
    return table


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"
