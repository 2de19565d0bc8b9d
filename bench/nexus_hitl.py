"""Human in the loop, in Chromium: from a published approval to its card, and from the click
on Approve to the answer on `approval_responses`.

Nexus runs in its own process (`singularity run nexus`); a headless Chromium, signed in with
the platform's token, shows /approvals. Per sample, one at a time:

- publish-to-card: a plain `SELECT pgmq.send('approval_requests', ...)`, time.time() noted just
  before it; a MutationObserver in the page notes `performance.timeOrigin + performance.now()`
  when the card `[data-testid="approval-card"][data-id=ID]` is added (and at the next frame);
- click-to-queue: a capturing click listener notes the click's time in the page; the answer's
  `enqueued_at` on `approval_responses` (request_id = the approval id) is when it was sent.

Anchors, in the same run and interleaved with the samples: the bus alone (our `Consumer`,
woken by the `Listener`, on a scratch queue fed by the same plain pgmq.send), and a bare
`fetch('/healthz')` round trip from the page.

    python bench/nexus_hitl.py [-n 50] [--warmup 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from playwright.async_api import Page, async_playwright
from pydantic import BaseModel, ConfigDict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from _common import console, emit_json, machine, progress_console
from _nexus import (
    NexusProcess,
    Platform,
    add_log_level_argument,
    add_platform_arguments,
    load_average,
    open_platform,
    print_targets,
    spread,
    versions,
)
from singularity.nexus.token import ui_token
from singularity.postgres.connect import async_connection, open_pool
from singularity.shared_queue import Consumer, ConsumerOptions, Delivery, Listener, ensure_queue
from singularity.testing.browser import LAUNCH_ARGS, MISSING, find_chromium

TARGET_CARD_MS = 200.0
TARGET_CLICK_MS = 100.0

# Installed in every document before the page's own script: it notes when each approval card
# is added (and the next frame after), when a click inside a card happens, and when the card
# is removed (the page removes it once the API has answered the decision).
PAGE_PROBES = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__seen = {};
  window.__painted = {};
  window.__clicks = {};
  window.__gone = {};
  const CARD = '[data-testid="approval-card"]';
  new MutationObserver((records) => {
    const t = now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        const cards = node.matches(CARD) ? [node] : node.querySelectorAll(CARD);
        for (const card of cards) {
          const id = card.dataset.id;
          if (!id || id in window.__seen) continue;
          window.__seen[id] = t;
          requestAnimationFrame(() => { window.__painted[id] = now(); });
        }
      }
      for (const node of record.removedNodes) {
        if (node.nodeType === Node.ELEMENT_NODE && node.matches(CARD) && node.dataset.id) {
          window.__gone[node.dataset.id] = t;
        }
      }
    }
  }).observe(document, { childList: true, subtree: true });
  document.addEventListener("click", (event) => {
    const t = now();
    const card = event.target instanceof Element ? event.target.closest(CARD) : null;
    if (card && card.dataset.id) window.__clicks[card.dataset.id] = t;
  }, true);
})();
"""

HEALTHZ_FETCH = """
async () => {
  const t0 = performance.now();
  const response = await fetch("/healthz", { cache: "no-store" });
  await response.json();
  return performance.now() - t0;
}
"""

PAGE_CLOCK = "() => performance.timeOrigin + performance.now()"

DIFF = "".join(
    [
        "--- a/src/billing/invoice.py\n",
        "+++ b/src/billing/invoice.py\n",
        "@@ -40,14 +40,18 @@ class Invoice:\n",
        "     def total(self) -> Decimal:\n",
        '         """The amount due, taxes included."""\n',
        "-        subtotal = sum(line.amount for line in self.lines)\n",
        "-        return subtotal * (1 + self.tax_rate)\n",
        "+        subtotal = sum((line.amount for line in self.lines), Decimal(0))\n",
        "+        tax = (subtotal * self.tax_rate).quantize(Decimal('0.01'))\n",
        "+        return subtotal + tax\n",
        " \n",
        "     def is_overdue(self, today: date) -> bool:\n",
        "-        return today > self.due_date\n",
        "+        return self.status != 'paid' and today > self.due_date\n",
        " \n",
        "     def as_dict(self) -> dict[str, object]:\n",
        "         return {\n",
        '             "id": self.id,\n',
        '             "total": str(self.total()),\n',
        '+            "overdue": self.is_overdue(date.today()),\n',
        "         }\n",
    ]
)


def chromium() -> str:
    found = find_chromium()
    if found is None:
        raise SystemExit(MISSING)
    return found


def chromium_version(path: str) -> str:
    import subprocess

    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


# -- the anchor: the bus alone -------------------------------------------------------------


class AnyMessage(BaseModel):
    model_config = ConfigDict(extra="allow")


class BusAnchor:
    """Our consumer runtime on a scratch queue: the first leg of publish-to-card, alone."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.queue = f"bench_hitl_{uuid.uuid4().hex[:8]}"
        self._arrived: dict[str, asyncio.Future[float]] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BusAnchor]:
        endpoint = self.platform.bus
        async with async_connection(endpoint) as conn:
            await ensure_queue(conn, self.queue)
            await ensure_queue(conn, self.queue + "_dlq", wake=False)
        pool = await open_pool(endpoint, name="bench-anchor", min_size=2, max_size=4)
        listener = Listener(endpoint)
        consumer = Consumer(
            pool, self.queue, AnyMessage, self._handle, options=ConsumerOptions(), listener=listener
        )
        stop = asyncio.Event()
        tasks = [asyncio.create_task(listener.run(stop)), asyncio.create_task(consumer.run(stop))]
        try:
            await asyncio.wait_for(listener.connected.wait(), 10)
            await asyncio.sleep(0.3)
            yield self
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()
            async with async_connection(endpoint) as conn:
                for name in (self.queue, self.queue + "_dlq"):
                    await conn.execute("SELECT pgmq.drop_queue(%s)", (name,))

    async def _handle(self, delivery: Delivery[AnyMessage]) -> None:
        arrived = time.time()
        future = self._arrived.get(str((delivery.message.model_extra or {}).get("id")))
        if future is not None and not future.done():
            future.set_result(arrived)

    async def sample(self, conn: psycopg.AsyncConnection) -> float:
        """ms from just before a plain pgmq.send to our handler."""
        ident = str(uuid.uuid4())
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._arrived[ident] = future
        body = json.dumps(approval(ident))
        sent = time.time()
        await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (self.queue, body))
        try:
            arrived = await asyncio.wait_for(future, 10)
        finally:
            del self._arrived[ident]
        return (arrived - sent) * 1000


# -- the samples ---------------------------------------------------------------------------


def approval(ident: str) -> dict[str, Any]:
    return {
        "id": ident,
        "file_path": "src/billing/invoice.py",
        "diff": DIFF,
        "description": "Round the tax to cents and flag overdue invoices in the export.",
        "agent_id": "bench-agent",
    }


async def clock_offset(page: Page, rounds: int = 20) -> dict[str, float]:
    """The page's clock minus this process's, from the round trip that was shortest."""
    best: tuple[float, float] | None = None
    for _ in range(rounds):
        before = time.time()
        page_time = float(await page.evaluate(PAGE_CLOCK))
        after = time.time()
        rtt = (after - before) * 1000
        offset = page_time - (before + after) / 2 * 1000
        if best is None or rtt < best[1]:
            best = (offset, rtt)
    assert best is not None
    return {"offset_ms": round(best[0], 3), "rtt_ms": round(best[1], 3)}


async def wait_response(conn: psycopg.AsyncConnection, ident: str) -> float:
    """The epoch of the answer's enqueue on approval_responses; the message is then deleted."""
    deadline = time.monotonic() + 10
    while True:
        row = await (
            await conn.execute(
                "SELECT msg_id, extract(epoch FROM enqueued_at)::float8 "
                "FROM pgmq.q_approval_responses WHERE message->>'request_id' = %s",
                (ident,),
            )
        ).fetchone()
        if row is not None:
            await conn.execute("SELECT pgmq.delete('approval_responses', %s::bigint)", (row[0],))
            return float(row[1])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer for {ident} on approval_responses")
        await asyncio.sleep(0.005)


async def one_approval(page: Page, conn: psycopg.AsyncConnection) -> dict[str, float]:
    ident = str(uuid.uuid4())
    body = json.dumps(approval(ident))
    sent = time.time() * 1000
    await conn.execute("SELECT pgmq.send('approval_requests', %s::jsonb)", (body,))
    await page.wait_for_function("id => id in window.__seen", arg=ident, timeout=10_000)
    card = page.locator(f'[data-testid="approval-card"][data-id="{ident}"]')
    await card.locator('[data-testid="approve"]').click()
    enqueued = await wait_response(conn, ident) * 1000
    await card.wait_for(state="detached", timeout=10_000)
    marks = await page.evaluate(
        "id => [window.__seen[id], window.__painted[id], window.__clicks[id], window.__gone[id]]",
        ident,
    )
    seen, painted, clicked, gone = (float(m) if m is not None else float("nan") for m in marks)
    return {
        "card_ms": seen - sent,
        "card_frame_ms": painted - sent,
        "click_ms": enqueued - clicked,
        "click_gone_ms": gone - clicked,
    }


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/approvals?token={token}")
    if not page.url.endswith("/approvals"):
        raise RuntimeError(f"signing in failed: the page is {page.url}")
    await page.wait_for_selector('#conn-status[data-state="open"]', timeout=15_000)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    total = args.warmup + args.samples
    samples: list[dict[str, float]] = []
    healthz: list[float] = []
    bus: list[float] = []
    browser_path = chromium()
    async with open_platform(args) as platform:
        info = machine(platform.server)  # the commit that runs, taken now
        info["libraries"] = versions(
            "fastapi", "starlette", "uvicorn", "websockets", "playwright", "psycopg"
        )
        token = ui_token(platform.settings)  # made here; Nexus reads the same file
        async with (
            NexusProcess(platform, log_level=args.nexus_log_level) as nexus,
            BusAnchor(platform).running() as anchor,
            async_connection(platform.bus) as conn,
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(
                executable_path=browser_path, headless=True, args=LAUNCH_ARGS
            )
            try:
                context = await browser.new_context(base_url=nexus.url)
                await context.add_init_script(PAGE_PROBES)
                page = await context.new_page()
                await sign_in(page, nexus.url, token)
                clock_before = await clock_offset(page)
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                )
                with Progress(*columns, console=progress_console) as progress:
                    task = progress.add_task("approvals, one at a time", total=total)
                    for i in range(total):
                        sample = await one_approval(page, conn)
                        fetch_ms = float(await page.evaluate(HEALTHZ_FETCH))
                        bus_ms = await anchor.sample(conn)
                        if i >= args.warmup:
                            samples.append(sample)
                            healthz.append(fetch_ms)
                            bus.append(bus_ms)
                        progress.advance(task)
                clock_after = await clock_offset(page)
            finally:
                await browser.close()
            if not nexus.alive():
                raise RuntimeError(f"nexus stopped:\n{nexus.log_tail()}")
    info["chromium"] = chromium_version(browser_path)
    card = [s["card_ms"] for s in samples]
    frame = [s["card_frame_ms"] for s in samples]
    click = [s["click_ms"] for s in samples]
    gone = [s["click_gone_ms"] for s in samples]
    results = {
        "publish_to_card_ms": spread(card),
        "publish_to_card_frame_ms": spread(frame),
        "bus_alone_ms": spread(bus),
        "click_to_queue_ms": spread(click),
        "click_to_card_gone_ms": spread(gone),
        "healthz_fetch_ms": spread(healthz),
    }
    results["card_over_bus_p50"] = round(
        results["publish_to_card_ms"]["p50"] / results["bus_alone_ms"]["p50"], 2
    )
    results["click_over_fetch_p50"] = round(
        results["click_to_queue_ms"]["p50"] / results["healthz_fetch_ms"]["p50"], 2
    )
    return {
        "machine": info,
        "results": results,
        "clock": {"before": clock_before, "after": clock_after},
        "samples": samples,
        "load_average": load_average(),
    }


# -- reporting -----------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for name, key, limit in (
        ("publish-to-card", "publish_to_card_ms", TARGET_CARD_MS),
        ("click-to-queue", "click_to_queue_ms", TARGET_CLICK_MS),
    ):
        for stat in ("p50", "p90", "max"):
            value = results[key][stat]
            checks.append(
                {
                    "figure": f"{name} {stat}",
                    "value": value,
                    "target": limit,
                    "met": value <= limit,
                }
            )
    return checks


def print_tables(report: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    r = report["results"]
    table = Table(title=f"Human in the loop in Chromium (ms, {len(report['samples'])} samples)")
    for column in ("path", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="left" if column == "path" else "right")
    rows = (
        ("publish to card added (MutationObserver)", "publish_to_card_ms"),
        ("publish to the next frame after it", "publish_to_card_frame_ms"),
        ("anchor: publish to our consumer (bus alone)", "bus_alone_ms"),
        ("click to answer enqueued on approval_responses", "click_to_queue_ms"),
        ("click to card removed (the page has the API's answer)", "click_to_card_gone_ms"),
        ("anchor: fetch('/healthz') round trip", "healthz_fetch_ms"),
    )
    for label, key in rows:
        s = r[key]
        table.add_row(label, *(f"{s[k]:.2f}" for k in ("p50", "p90", "p99", "max")))
    console.print(table)
    clock = report["clock"]
    console.print(
        f"card / bus p50: {r['card_over_bus_p50']:.2f}   "
        f"click / fetch p50: {r['click_over_fetch_p50']:.2f}   "
        f"page clock - ours: {clock['before']['offset_ms']:+.2f} ms before, "
        f"{clock['after']['offset_ms']:+.2f} ms after"
    )
    print_targets(checks)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--samples", type=int, default=50, help="counted approvals")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted approvals first")
    add_log_level_argument(parser)
    add_platform_arguments(parser)
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    report = await run(args)
    checks = targets(report["results"])
    print_tables(report, checks)
    emit_json(
        {
            "benchmark": "nexus_hitl",
            "machine": report["machine"],
            "params": {
                "samples": args.samples,
                "warmup": args.warmup,
                "nexus": "separate process (singularity run nexus)",
                "nexus_log_level": args.nexus_log_level,
                "browser": "headless Chromium via Playwright",
            },
            "results": report["results"],
            "clock": report["clock"],
            "load_average": report["load_average"],
            "targets": checks,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
