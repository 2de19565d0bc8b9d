"""How the platform's status looks in a terminal: `singularity status` prints it once, the
live view of `singularity up` redraws it every few seconds."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from singularity.diagnostics import PlatformStatus, dead_letter_total, platform_status
from singularity.orchestrator.flows import FLOWS
from singularity.postgres.cluster import Cluster
from singularity.shared_queue.catalog import DLQ_SUFFIX
from singularity.shared_queue.waiting import race

__all__ = ["LiveStatus", "status_renderables"]


def status_renderables(found: PlatformStatus, ui: str) -> list[RenderableType]:
    """Services, queues, dead letters and pending decisions, as `singularity status` shows them."""
    shown: list[RenderableType] = []
    if found.services:
        services = Table("service", "host", "pid", "since", title="Running services")
        here = os.getpid()
        for item in found.services:
            since = item["since"].strftime("%Y-%m-%d %H:%M:%S") if item["since"] else "-"
            pid = f"{item['pid']} (this process)" if item["pid"] == here else str(item["pid"])
            services.add_row(item["service"], item["host"], pid, since)
        shown.append(services)
    else:
        shown.append("[yellow]no service is running[/]: start them with `singularity up`")
    queues = Table("queue", "depth", "oldest", title="Queues")
    for item in found.queues:
        dead = item["queue"].endswith(DLQ_SUFFIX)
        if dead and not item["length"]:
            continue  # empty dead-letter queues say nothing
        age = "-" if item["oldest_age_s"] is None else f"{item['oldest_age_s']} s"
        name = f"[red]{item['queue']}[/]" if dead else item["queue"]
        queues.add_row(name, str(item["length"]), age)
    shown.append(queues)
    dead_letters = dead_letter_total(found.queues)
    if dead_letters:
        shown.append(f"[red]{dead_letters} dead letters[/]: `singularity queue dlq list`")
    shown.append(
        f"pending: [bold]{found.pending_approvals or 0}[/] approvals, "
        f"[bold]{found.pending_questions or 0}[/] questions; web UI [cyan]{ui}[/]"
    )
    return shown


class LiveStatus:
    """The status of `singularity up`, read again every `every_s` seconds while it runs;
    Rich's Live redraws whatever `__rich__` returns."""

    def __init__(
        self, cluster: Cluster, ui: str, header: Callable[[], list[str]], every_s: float = 2.0
    ) -> None:
        self.cluster = cluster
        self.ui = ui
        self.header = header
        self.every_s = every_s
        self.found: PlatformStatus | None = None
        self.read_at = 0.0

    async def follow(self, stop: asyncio.Event) -> None:
        """Refresh until `stop`; a failed read shows as unreachable, the next one may succeed."""
        while not stop.is_set():
            self.found = await platform_status(self.cluster)
            self.read_at = time.time()
            await race(stop.wait(), seconds=self.every_s)

    def __rich__(self) -> RenderableType:
        # Compact enough for a 24-line terminal: Live crops what does not fit.
        parts: list[RenderableType] = [*self.header()]
        found = self.found
        if found is None:
            parts.append("[dim]reading the status...[/]")
        elif not found.reachable:
            parts.append(f"database [red]unreachable[/]: {escape(found.error or '')}")
        else:
            parts.append(_services_line(found))
            parts.append(
                f"[bold]pending[/]    {found.pending_approvals or 0} approvals, "
                f"{found.pending_questions or 0} questions"
            )
            parts.append(_flows_table(found))
        stamp = time.strftime("%H:%M:%S", time.localtime(self.read_at)) if self.read_at else "-"
        parts.append(f"[dim]updated {stamp}; logs scroll above; Ctrl-C stops everything[/]")
        return Panel(Group(*parts), title="Singularity is running", expand=False)


def _services_line(found: PlatformStatus) -> str:
    here = os.getpid()
    local = sorted(p["service"] for p in found.services if p["pid"] == here)
    elsewhere = [
        f"{p['service']}@{p['host']}:{p['pid']}" for p in found.services if p["pid"] != here
    ]
    line = f"[bold]services[/]   {', '.join(local) or '[red]none[/]'} (this process, pid {here})"
    if elsewhere:
        line += f"\n            also: {', '.join(sorted(elsewhere))}"
    return line


def _flows_table(found: PlatformStatus) -> Table:
    """One row per flow: requests and results waiting, the oldest, and dead letters."""
    table = Table("flow", "requests", "results", "oldest", "dead letters", box=box.SIMPLE_HEAD)
    depth = {q["queue"]: q for q in found.queues}
    live = [name for name in depth if not name.endswith(DLQ_SUFFIX)]
    unclaimed = set(live)
    for flow in FLOWS.values():
        results = [
            name
            for name in live
            if name == flow.results
            or name.startswith(flow.results + "_")  # another instance's reply queue
            or name.endswith("_" + flow.results)  # genesis_llm_results
        ]
        unclaimed -= {flow.requests, *results}
        table.add_row(flow.kind, *_depths(depth, flow.requests, results))
    for name in sorted(unclaimed):
        table.add_row(name, *_depths(depth, name, []))
    return table


def _depths(depth: dict[str, dict[str, Any]], requests: str, results: list[str]) -> list[str]:
    """Requests waiting, results waiting, the oldest's age and dead letters of these queues
    (none of them a dead-letter queue)."""
    names = [name for name in (requests, *results) if name in depth]
    ages = [depth[n]["oldest_age_s"] for n in names if depth[n]["oldest_age_s"] is not None]
    dead = sum(depth[n + DLQ_SUFFIX]["length"] for n in names if n + DLQ_SUFFIX in depth)
    return [
        str(depth[requests]["length"]) if requests in depth else "-",
        str(sum(depth[n]["length"] for n in results)),
        f"{max(ages)} s" if ages else "-",
        f"[red]{dead}[/]" if dead else "0",
    ]
