"""`singularity demo`: the three data flows of the design, end to end, narrated.

The demo plays the agent: it asks through the same client a task uses (`PlatformClient`),
so each request is recorded, sent on its queue, answered by a real service and read back
from the instance's reply queue. Services that are not running already (`singularity up`
in another terminal) are started in this process for the length of the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import time
import webbrowser
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from singularity.bootstrap import bootstrap
from singularity.cli.common import console, load, run
from singularity.config import Settings
from singularity.database import open_cluster
from singularity.diagnostics import platform_status, sandbox_check
from singularity.errors import SingularityError, UsageError
from singularity.logs import configure_logging
from singularity.nexus.providers import CONFIGURE_A_PROVIDER
from singularity.nexus.service import Nexus, ui_address
from singularity.nexus.token import ui_token
from singularity.orchestrator.client import LlmFailed, PlatformClient
from singularity.orchestrator.platform import connect
from singularity.postgres.cluster import Cluster
from singularity.private import open_private, private_dir
from singularity.service_context import ServiceContext, run_services
from singularity.services import resolve_services

__all__ = ["demo"]

FLOWS = ("llm", "approval", "code")

PROMPT = "In one sentence: why do durable queues make AI agents easier to run safely?"

DIFF = """\
--- a/demo/greeting.py
+++ b/demo/greeting.py
@@ -1,2 +1,5 @@
-def greet():
-    return "hello"
+def greet(name: str = "world") -> str:
+    \"\"\"Greet someone by name.\"\"\"
+    return f"hello, {name}"
"""

CODE = """\
import sys
squares = sum(i * i for i in range(1, 11))
print(f"sum of the first ten squares: {squares}")
print(f"python {sys.version.split()[0]}, in the sandbox")
"""


@dataclass
class FlowOutcome:
    flow: str
    ok: bool
    summary: str
    seconds: float = 0.0


class Narrator:
    """Steps printed as they happen, each with the time since its flow began."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def flow(self, number: int, title: str, path: str) -> None:
        console.print()
        console.rule(f"[bold]{number}. {title}[/]", align="left")
        console.print(f"[dim]{path}[/]")
        self.started = time.monotonic()

    def step(self, who: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        console.print(f"  [dim]{elapsed:6.2f}s[/]  [bold]{who:<8}[/] {text}")

    def detail(self, text: str) -> None:
        console.print(Padding(text, (0, 0, 0, 20)))

    def address(self, url: str) -> None:
        """On one line whatever the width, so that it can be copied whole."""
        console.print(f"{'':20}[cyan]{url}[/]", soft_wrap=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def demo(
    only: str | None = typer.Option(
        None, "--only", help="Some of the flows, comma-separated: llm, approval, code."
    ),
    timeout: float = typer.Option(
        600.0, "--timeout", min=1, help="Seconds to wait for each answer (yours included)."
    ),
    open_browser: bool = typer.Option(
        False, "--open", help="Open the approval page in this machine's web browser."
    ),
) -> None:
    """Walk through the three data flows end to end: an LLM request, a code approval decided
    in the browser, a code execution in the sandbox (exit 1 if one could not be shown)."""
    flows = _chosen(only)
    settings = load()
    if "SINGULARITY_LOG_LEVEL" not in os.environ:
        # The narration says what happens; the services started here log only errors.
        configure_logging("error", settings.singularity_log_format)
    with open_cluster(settings) as cluster:
        outcomes = run(_demo(settings, cluster, flows, timeout, open_browser))
    console.print()
    table = Table("flow", "outcome", "time", title="Demo")
    for outcome in outcomes:
        mark = "[green]ok[/]" if outcome.ok else "[red]not shown[/]"
        table.add_row(
            outcome.flow, f"{mark}  {escape(outcome.summary)}", f"{outcome.seconds:.1f} s"
        )
    console.print(table)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(1)


def _chosen(only: str | None) -> list[str]:
    if only is None:
        return list(FLOWS)
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in FLOWS]
    if unknown or not chosen:
        raise UsageError(f"--only takes {', '.join(FLOWS)} (comma-separated); got {only!r}")
    return [name for name in FLOWS if name in chosen]


async def _demo(
    settings: Settings, cluster: Cluster, flows: list[str], wait_s: float, open_browser: bool
) -> list[FlowOutcome]:
    console.print("[bold]Singularity demo[/]: the three data flows, end to end")
    async with _platform(settings, cluster, flows) as started:
        if started:
            console.print(f"started in this process: {', '.join(started)}")
        async with connect(cluster, settings, name="demo") as platform:
            client = platform.client
            outcomes = []
            narrator = Narrator()
            for number, flow in enumerate(flows, start=1):
                if flow == "llm":
                    outcome = await _llm(client, narrator, number, wait_s, "nexus" not in started)
                elif flow == "approval":
                    outcome = await _approval(
                        client, settings, narrator, number, wait_s, open_browser
                    )
                else:
                    outcome = await _code(client, settings, narrator, number, wait_s)
                outcome.seconds = narrator.elapsed
                outcomes.append(outcome)
    return outcomes


@contextlib.asynccontextmanager
async def _platform(
    settings: Settings, cluster: Cluster, flows: list[str]
) -> AsyncIterator[list[str]]:
    """Start the services the flows need that no process runs yet; yield their names."""
    needed = {"nexus"} if {"llm", "approval"} & set(flows) else set()
    if "code" in flows and (await sandbox_check(settings)).verdict != "fail":
        needed.add("genesis")  # without a sandbox, the code flow says how to get one
    found = await platform_status(cluster)
    running = {item["service"] for item in found.services}
    missing = sorted(needed - running)
    if running:
        console.print(f"using the running platform: {', '.join(sorted(running))}")
    if not missing:
        yield []
        return
    with console.status("setting up the databases"):
        await bootstrap(cluster, require_vector=False)
    services = resolve_services(missing)
    # The demo's own services need no metrics server (it could clash with a running one).
    quiet = settings.model_copy(update={"singularity_metrics_port": -1})
    stop = asyncio.Event()
    task = asyncio.create_task(run_services(services, ServiceContext(quiet, cluster), stop))
    try:
        for service in services:
            if isinstance(service, Nexus):
                ready = asyncio.create_task(service.ready.wait())
                await asyncio.wait({task, ready}, timeout=60, return_when="FIRST_COMPLETED")
                ready.cancel()
                if task.done():
                    task.result()  # raise what stopped it
        yield missing
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)


async def _llm(
    client: PlatformClient, say: Narrator, number: int, wait_s: float, running_nexus: bool
) -> FlowOutcome:
    say.flow(
        number,
        "An LLM request",
        "agent -> llm_requests -> Nexus (picks a model by task type and complexity, calls "
        "the provider) -> llm_results -> agent",
    )
    say.step("agent", f"asks: {PROMPT!r}")
    say.step("agent", "records the request and sends it on llm_requests")
    try:
        result = await client.llm(
            [{"role": "user", "content": PROMPT}],
            agent_id="demo",
            task_type="chat",
            timeout_s=wait_s,
        )
    except LlmFailed as exc:
        if exc.code == "NO_PROVIDER":
            say.step("Nexus", "[red]found no model it may call[/] (NO_PROVIDER)")
        else:
            say.step("Nexus", f"[red]answered with an error[/]: {escape(str(exc))}")
        say.detail(f"[bold]To call a model[/], {escape(CONFIGURE_A_PROVIDER)}.")
        again = "restart the running Nexus (`singularity up`) so that it reads them, then run"
        say.detail(f"Then {again if running_nexus else 'run'} `singularity demo` again.")
        return FlowOutcome("llm", False, f"no model answered ({exc.code})")
    except SingularityError as exc:
        say.step("agent", f"[red]no answer[/]: {escape(str(exc))}")
        return FlowOutcome("llm", False, "no answer in time")
    extra = result.model_extra or {}
    tier = extra.get("tier", "?")
    say.step("Nexus", f"routed task type 'chat' ({tier} tier) to model {result.model}")
    usage = result.usage
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens" if usage else "no usage"
    cost = "cost unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}"
    say.step("Nexus", f"answered on llm_results: {tokens}, {cost}")
    say.detail(f"[italic]{escape((result.result or '').strip())}[/]")
    return FlowOutcome("llm", True, f"{result.model}, {tokens}")


async def _approval(
    client: PlatformClient,
    settings: Settings,
    say: Narrator,
    number: int,
    wait_s: float,
    open_browser: bool,
) -> FlowOutcome:
    say.flow(
        number,
        "A code approval",
        "agent -> approval_requests -> Nexus -> your browser -> approval_responses -> agent",
    )
    say.step("agent", "asks a human to approve a change to demo/greeting.py:")
    say.detail(f"[dim]{escape(DIFF.rstrip())}[/]")
    page = f"{ui_address(settings)}/approvals?token={ui_token(settings)}"
    say.step("Nexus", "shows it as a card in the web UI; decide there (waiting for you):")
    say.address(page)
    say.detail("[dim](or in a terminal: `singularity hitl list`, `singularity hitl approve ID`)[/]")
    if open_browser:
        open_privately(settings, page)
    try:
        response = await client.approval(
            file_path="demo/greeting.py",
            diff=DIFF,
            description="Demo: greet someone by name",
            agent_id="demo",
            timeout_s=wait_s,
        )
    except SingularityError as exc:
        say.step("agent", f"[red]no decision[/]: {escape(str(exc))}")
        return FlowOutcome("approval", False, "no decision in time")
    verdict = "approved" if response.approved else "rejected"
    reason = f" ({response.reason})" if response.reason else ""
    say.step("human", f"{verdict} it{escape(reason)}; the answer came back on approval_responses")
    say.step("agent", "would now apply the change" if response.approved else "drops the change")
    return FlowOutcome("approval", True, f"{verdict} by a reviewer")


async def _code(
    client: PlatformClient, settings: Settings, say: Narrator, number: int, wait_s: float
) -> FlowOutcome:
    say.flow(
        number,
        "A code execution",
        "agent -> job_requests -> Genesis (bubblewrap sandbox: no network, limits) -> "
        "job_results -> agent",
    )
    check = await sandbox_check(settings)
    if check.verdict == "fail":
        say.step("Genesis", f"[red]cannot run code here[/]: {escape(check.detail)}")
        say.detail(f"fix: [cyan]{escape(check.fix)}[/], then run `singularity demo` again")
        return FlowOutcome("code", False, "no sandbox")
    say.step("agent", "sends a Python program on job_requests:")
    say.detail(f"[dim]{escape(CODE.rstrip())}[/]")
    try:
        result = await client.run_code(CODE, "python", agent_id="demo", timeout_s=wait_s)
    except SingularityError as exc:
        say.step("agent", f"[red]no result[/]: {escape(str(exc))}")
        return FlowOutcome("code", False, "no result in time")
    ran = f"exit {result.exit_code}" if result.exit_code is not None else result.status or "?"
    timing = f"{result.wall_ms:.0f} ms wall" if result.wall_ms is not None else ""
    say.step("Genesis", f"ran it in the sandbox: {ran}, {timing}; result on job_results")
    say.detail(escape(result.output.rstrip()) or "[dim](no output)[/]")
    if result.error:
        say.detail(f"[red]{escape(result.error.rstrip())}[/]")
    ok = result.exit_code == 0
    return FlowOutcome("code", ok, f"{ran}, {timing}" if ok else f"failed: {ran}")


def open_privately(
    settings: Settings, page: str, opener: Callable[[str], object] = webbrowser.open
) -> Path:
    """Open `page` in a browser without its token on the browser's command line.

    Every local user can read a process's command line, so the browser is given a private
    file (0600, in Nexus's private directory) that sends it on to the page.
    """
    path = private_dir(settings.nexus_dir) / "open-ui.html"
    target = html.escape(page, quote=True)
    with os.fdopen(open_private(path), "w", encoding="utf-8") as out:
        out.write(f'<!doctype html><meta http-equiv="refresh" content="0; url={target}">\n')
    opener(path.as_uri())
    return path
