"""Router overhead: what Nexus adds to an LLM call, end to end through the bus.

Nexus runs in its own process (`singularity run nexus`), the stand-in provider
(`singularity.testing.openai_server`) in another, one per provider delay. This script keeps C
requests outstanding on `llm_requests` and reads the results from its own reply queue; per
request, e2e = result read - request sent, and the overhead = e2e - provider_ms (the time
Nexus spent inside the provider call, which the result carries). The anchor, at each level,
is the same provider called directly with `litellm.acompletion` at the same concurrency, from
a process of its own (this one does not load LiteLLM: its garbage collections would stall the
reads it times). Also timed: the complexity heuristic that picks a tier for an unknown task type.

    python bench/nexus_router.py [--concurrency 1,64] [--provider-delay-ms 0,1000]
                                 [--requests 2000] [--warmup 200] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import sys
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from _common import console, emit_json, machine, progress_console
from _nexus import (
    KEY_VALUE,
    KEY_VARIABLE,
    Answer,
    CpuMeter,
    LlmClient,
    MockProvider,
    NexusProcess,
    Platform,
    add_log_level_argument,
    add_platform_arguments,
    closed_loop,
    int_list,
    llm_request,
    load_average,
    mock_providers,
    open_platform,
    percentile,
    postgres_pids,
    print_targets,
    reply_queue,
    this_process,
    versions,
    write_registry,
)
from singularity.nexus.complexity import choose_tier
from singularity.postgres.connect import async_connection
from singularity.shared_queue.messages import ChatMessage

TARGET_OVERHEAD_P50_MS = 2.0
TARGET_OVERHEAD_P99_MS = 10.0
TARGET_CONCURRENCY = 64
TARGET_HEURISTIC_US = 1000.0
# Typical sizes, and 11,000: just under the length (12,000) past which a conversation is
# complex without a keyword scan, so about the longest one scanned.
HEURISTIC_SIZES = (200, 5_000, 11_000, 50_000)
HEURISTIC_TASK_TYPE = "triage"  # not a known task type: the heuristic scores the messages


# -- the complexity heuristic --------------------------------------------------------------

_PROSE = (
    "The nightly export job failed again after the upgrade; the logs show a timeout while "
    "reading the orders table. ",
    "Can you look at the handler below and tell me why it returns an empty list when the "
    "cache is cold? ",
    "def load_orders(session, since):\n    rows = session.query(Order).filter(Order.created "
    ">= since).all()\n    return [row.to_dict() for row in rows]\n",
    "We would like the report to include the customer's region and the total per month. ",
    "Keep the answer short and show only the lines that change. ",
)


def conversation_text(chars: int) -> str:
    """`chars` characters of a plausible request: prose with some code."""
    parts: list[str] = []
    length = 0
    for sentence in _cycle(_PROSE):
        parts.append(sentence)
        length += len(sentence)
        if length >= chars:
            break
    return "".join(parts)[:chars]


def _cycle(items: tuple[str, ...]) -> Any:
    while True:
        yield from items


def time_heuristic(budget_s: float = 0.5) -> list[dict[str, Any]]:
    """choose_tier on an unknown task type: microseconds per call, by conversation size."""
    rows = []
    for size in HEURISTIC_SIZES:
        messages = [
            ChatMessage(role="system", content="You are a careful senior engineer."),
            ChatMessage(role="user", content=conversation_text(size)),
        ]
        choice = choose_tier(HEURISTIC_TASK_TYPE, messages)
        for _ in range(50):
            choose_tier(HEURISTIC_TASK_TYPE, messages)
        samples: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(samples) < 500 or (time.perf_counter() < deadline and len(samples) < 20_000):
            t0 = time.perf_counter_ns()
            choose_tier(HEURISTIC_TASK_TYPE, messages)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        rows.append(
            {
                "chars": size,
                "tier": str(choice.tier),
                "reason": choice.reason,
                "calls": len(samples),
                "p50_us": round(percentile(samples, 0.50), 1),
                "p99_us": round(percentile(samples, 0.99), 1),
                "max_us": round(max(samples), 1),
            }
        )
    return rows


# -- one level -----------------------------------------------------------------------------


def stagger(concurrency: int, delay_ms: int) -> float:
    """Seconds between worker starts: spread over one provider delay (at least 10 ms)."""
    if concurrency <= 1:
        return 0.0
    return (max(delay_ms, 10) / 1000) / concurrency


async def through_nexus(
    client: LlmClient,
    provider: MockProvider,
    concurrency: int,
    total: int,
    tick: Any,
) -> list[Answer]:
    async def one(_: int) -> Answer:
        return await client.ask(llm_request(client.reply_to, provider.task_type))

    return await closed_loop(
        total,
        concurrency,
        one,
        stagger_s=stagger(concurrency, provider.delay_ms),
        on_done=tick,
    )


async def direct_child(config: dict[str, Any]) -> None:
    """The anchor's process: the same calls straight to the provider with LiteLLM, configured
    as Nexus has it. Prints a line per completed call, then one JSON line with the figures."""
    litellm = load_litellm_here()
    provider = MockProvider(config["delay_ms"], config["base_url"], proc=None)  # type: ignore[arg-type]
    messages = llm_request("unused", provider.task_type)["messages"]

    async def one(_: int) -> float:
        started = time.perf_counter()
        response = await litellm.acompletion(
            model=f"openai/{provider.model}",
            messages=messages,
            api_key=KEY_VALUE,
            api_base=provider.base_url,
            timeout=60,
            max_retries=0,
            num_retries=0,
        )
        elapsed = (time.perf_counter() - started) * 1000
        assert response.choices[0].message.content
        return elapsed

    print("started", flush=True)
    cpu, wall = time.process_time(), time.monotonic()
    latencies = await closed_loop(
        config["total"],
        config["concurrency"],
        one,
        stagger_s=stagger(config["concurrency"], provider.delay_ms),
        on_done=lambda: print("done", flush=True),
    )
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    report = {"latencies_ms": latencies, "cpu_pct": cpu / wall * 100, "wall_s": wall}
    print(json.dumps(report), flush=True)


async def direct(
    platform: Platform, provider: MockProvider, concurrency: int, total: int, tick: Any
) -> tuple[list[float], dict[str, Any]]:
    """The anchor, in a process of its own (as Nexus has one): latencies, and CPU."""
    config = {
        "delay_ms": provider.delay_ms,
        "base_url": provider.base_url,
        "concurrency": concurrency,
        "total": total,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--direct-config",
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        limit=2**26,
    )
    assert proc.stdout is not None
    meter = CpuMeter({"provider": lambda: [provider.proc.pid], "postgres": postgres_pids(platform)})
    report: dict[str, Any] | None = None
    async for raw in proc.stdout:
        line = raw.decode().strip()
        if line == "started":
            meter.start()
        elif line == "done":
            tick()
        elif line.startswith("{"):
            report = json.loads(line)
    cpu = meter.stop()
    if await proc.wait() != 0 or report is None:
        raise RuntimeError("the direct LiteLLM anchor failed")
    cpu["client_cpu_pct"] = round(report["cpu_pct"], 1)
    cpu["wall_s"] = round(report["wall_s"], 2)
    return report["latencies_ms"], cpu


async def stages(platform: Platform, answers: list[Answer]) -> dict[str, list[float]]:
    """Where each request's overhead went, from the timestamps PostgreSQL recorded: the
    request's enqueue, Nexus's record of it, and its result's enqueue."""
    by_id = {a.body["request_id"]: a for a in answers}
    async with async_connection(platform.nexus_db) as conn:
        rows = await (
            await conn.execute(
                "SELECT request_id, extract(epoch FROM received_at)::float8, "
                "extract(epoch FROM completed_at)::float8, provider_ms, overhead_ms "
                "FROM llm_requests WHERE request_id = ANY(%s)",
                (list(by_id),),
            )
        ).fetchall()
    out: dict[str, list[float]] = {
        "send": [],
        "nexus_to_record": [],
        "record_to_reply": [],
        "reply_to_client": [],
    }
    for request_id, received_at, completed_at, provider_ms, _ in rows:
        a = by_id[request_id]
        out["send"].append((received_at - a.sent) * 1000)
        out["nexus_to_record"].append((completed_at - received_at) * 1000 - provider_ms)
        out["record_to_reply"].append((a.reply_enqueued - completed_at) * 1000)
        out["reply_to_client"].append((a.received - a.reply_enqueued) * 1000)
    return out


def summary(values: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.50), digits),
        "p99": round(percentile(values, 0.99), digits),
        "mean": round(statistics.fmean(values), digits) if values else math.nan,
    }


async def run_level(
    platform: Platform,
    nexus: NexusProcess,
    client: LlmClient,
    provider: MockProvider,
    concurrency: int,
    args: argparse.Namespace,
    progress: Progress,
) -> dict[str, Any]:
    total = args.warmup + args.requests
    label = f"C={concurrency}, delay {provider.delay_ms} ms"
    task = progress.add_task(f"{label}: via Nexus", total=total)
    meter = CpuMeter(
        {
            "nexus": lambda: [nexus.pid],
            "provider": lambda: [provider.proc.pid],
            "client": this_process,
            "postgres": postgres_pids(platform),
        }
    )
    meter.start()
    started = time.monotonic()
    answers = await through_nexus(
        client, provider, concurrency, total, lambda: progress.advance(task)
    )
    nexus_wall = time.monotonic() - started
    nexus_cpu = meter.stop()
    counted = answers[args.warmup :]
    errors = [a.body["error"] for a in counted if "error" in a.body]
    ok = [a for a in counted if "error" not in a.body]
    e2e = [(a.received - a.sent) * 1000 for a in ok]
    provider_ms = [float(a.body["provider_ms"]) for a in ok]
    overhead = [x - p for x, p in zip(e2e, provider_ms, strict=True)]
    reported = [float(a.body["overhead_ms"]) for a in ok]
    parts = await stages(platform, ok)

    task = progress.add_task(f"{label}: direct LiteLLM", total=total)
    direct_ms, direct_cpu = await direct(
        platform, provider, concurrency, total, lambda: progress.advance(task)
    )
    direct_wall = direct_cpu["wall_s"]
    direct_ms = direct_ms[args.warmup :]

    e2e_p50 = percentile(e2e, 0.5)
    direct_p50 = percentile(direct_ms, 0.5)
    return {
        "concurrency": concurrency,
        "provider_delay_ms": provider.delay_ms,
        "counted": len(ok),
        "errors": len(errors),
        "error_codes": sorted({e.get("code", "?") for e in errors}),
        "overhead_ms": summary(overhead),
        "e2e_ms": summary(e2e),
        "provider_ms": summary(provider_ms),
        "nexus_reported_overhead_ms": summary(reported),
        "direct_ms": summary(direct_ms),
        "e2e_over_direct_p50": round(e2e_p50 / direct_p50, 3) if direct_p50 else math.nan,
        "stages_ms": {name: summary(values) for name, values in parts.items()},
        "via_nexus_rate": round(total / nexus_wall, 1),
        "direct_rate": round(total / direct_wall, 1),
        "via_nexus_cpu": nexus_cpu,
        "direct_cpu": direct_cpu,
        "load_average": load_average(),
    }


# -- the run -------------------------------------------------------------------------------


def load_litellm_here() -> Any:
    """LiteLLM as Nexus configures it (local price list, quiet, no telemetry)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    from singularity.nexus.llm_client import load_litellm

    return load_litellm()


def levels(args: argparse.Namespace) -> list[tuple[int, int]]:
    concurrency: list[int] = args.concurrency
    delays: list[int] = args.provider_delay_ms
    if len(delays) == 1:
        delays = delays * len(concurrency)
    if len(delays) != len(concurrency):
        raise SystemExit("--provider-delay-ms takes one value, or one per --concurrency level")
    if any(c < 1 for c in concurrency):
        raise SystemExit("--concurrency levels must be at least 1")
    return list(zip(concurrency, delays, strict=True))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = levels(args)
    progress_console.print("timing the complexity heuristic")
    heuristic = time_heuristic()
    results: list[dict[str, Any]] = []
    async with open_platform(args) as platform:
        info = machine(platform.server)  # the commit that runs, taken now
        info["libraries"] = versions("litellm", "openai", "httpx", "fastapi", "uvicorn", "psycopg")
        with mock_providers(platform, [d for _, d in plan]) as providers:
            registry = write_registry(platform.home / "models.toml", list(providers.values()))
            nexus_env = {
                "NEXUS_MODELS_FILE": str(registry),
                "NEXUS_LLM_CONCURRENCY": str(max(c for c, _ in plan)),
                KEY_VARIABLE: KEY_VALUE,
            }
            progress_console.print("starting nexus")
            async with (
                NexusProcess(platform, log_level=args.nexus_log_level, **nexus_env) as nexus,
                reply_queue(platform, "bench_replies") as queue,
                LlmClient(platform.bus, queue) as client,
            ):
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                )
                with Progress(*columns, console=progress_console) as progress:
                    for concurrency, delay in plan:
                        gc.collect()
                        results.append(
                            await run_level(
                                platform,
                                nexus,
                                client,
                                providers[delay],
                                concurrency,
                                args,
                                progress,
                            )
                        )
                        if not nexus.alive():
                            raise RuntimeError(f"nexus stopped:\n{nexus.log_tail()}")
    return {"heuristic": heuristic, "levels": results, "machine": info}


# -- reporting -----------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for level in report["levels"]:
        if level["concurrency"] != TARGET_CONCURRENCY:
            continue
        for name, limit in (("p50", TARGET_OVERHEAD_P50_MS), ("p99", TARGET_OVERHEAD_P99_MS)):
            value = level["overhead_ms"][name]
            checks.append(
                {
                    "figure": f"overhead {name} at C={TARGET_CONCURRENCY}, "
                    f"delay {level['provider_delay_ms']} ms",
                    "value": value,
                    "target": limit,
                    "unit": "ms",
                    "met": value <= limit,
                }
            )
    for row in report["heuristic"]:
        checks.append(
            {
                "figure": f"heuristic p99 at {row['chars']:,} chars",
                "value": row["p99_us"],
                "target": TARGET_HEURISTIC_US,
                "unit": "us",
                "met": row["p99_us"] <= TARGET_HEURISTIC_US,
            }
        )
    return checks


def pair(d: dict[str, float]) -> str:
    return f"{d['p50']:.2f} / {d['p99']:.2f}"


def print_tables(report: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    main = Table(title="Router overhead (ms, p50 / p99): overhead = e2e - provider_ms")
    for column in ("C", "delay", "n", "overhead", "e2e", "direct", "e2e/direct p50"):
        main.add_column(column, justify="right")
    for r in report["levels"]:
        main.add_row(
            str(r["concurrency"]),
            f"{r['provider_delay_ms']} ms",
            f"{r['counted']:,}" + (f" ({r['errors']} err)" if r["errors"] else ""),
            pair(r["overhead_ms"]),
            pair(r["e2e_ms"]),
            pair(r["direct_ms"]),
            f"{r['e2e_over_direct_p50']:.3f}",
        )
    console.print(main)

    parts = Table(title="Where the overhead goes (ms)")
    for column in (
        "C",
        "delay",
        "",
        "send",
        "to record",
        "record to result",
        "result to client",
        "overhead_ms",
        "provider_ms",
    ):
        parts.add_column(column, justify="right")
    for r in report["levels"]:
        s = r["stages_ms"]
        for stat in ("p50", "p99"):
            parts.add_row(
                str(r["concurrency"]) if stat == "p50" else "",
                f"{r['provider_delay_ms']} ms" if stat == "p50" else "",
                stat,
                *(
                    f"{d[stat]:.2f}"
                    for d in (
                        s["send"],
                        s["nexus_to_record"],
                        s["record_to_reply"],
                        s["reply_to_client"],
                        r["nexus_reported_overhead_ms"],
                        r["provider_ms"],
                    )
                ),
            )
    console.print(parts)

    load = Table(title="CPU while routing (% of one core) and rates (requests/s)")
    for column in ("C", "delay", "Nexus", "PostgreSQL", "provider", "client", "other", "req/s"):
        load.add_column(column, justify="right")
    load.add_column("direct: client CPU, req/s", justify="right")
    for r in report["levels"]:
        m, d = r["via_nexus_cpu"], r["direct_cpu"]
        load.add_row(
            str(r["concurrency"]),
            f"{r['provider_delay_ms']} ms",
            *(
                f"{m[k]:.0f}"
                for k in ("nexus_cpu_pct", "postgres_cpu_pct", "provider_cpu_pct", "client_cpu_pct")
            ),
            f"{m['others_pct']:.0f}",
            f"{r['via_nexus_rate']:,.0f}",
            f"{d['client_cpu_pct']:.0f}, {r['direct_rate']:,.0f}",
        )
    console.print(load)

    heuristic = Table(title=f"Complexity heuristic: choose_tier({HEURISTIC_TASK_TYPE!r}, ...) (µs)")
    for column in ("conversation", "tier", "calls", "p50", "p99", "max"):
        heuristic.add_column(column, justify="right")
    for row in report["heuristic"]:
        heuristic.add_row(
            f"{row['chars']:,} chars",
            row["tier"],
            f"{row['calls']:,}",
            f"{row['p50_us']:.1f}",
            f"{row['p99_us']:.1f}",
            f"{row['max_us']:.1f}",
        )
    console.print(heuristic)

    print_targets(checks)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--concurrency",
        type=int_list,
        default=[1, 64],
        help="requests kept outstanding, one level per value (default 1,64)",
    )
    parser.add_argument(
        "--provider-delay-ms",
        type=int_list,
        default=[0, 1000],
        help="the provider's answer delay: one value for every level, or one per level "
        "(default 0,1000)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="counted requests per level")
    parser.add_argument(
        "--warmup", type=int, default=200, help="uncounted requests first, per level"
    )
    add_log_level_argument(parser)
    parser.add_argument("--direct-config", help=argparse.SUPPRESS)  # the anchor's process
    add_platform_arguments(parser)
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    if args.direct_config:
        await direct_child(json.loads(args.direct_config))
        return
    report = await run(args)
    checks = targets(report)
    print_tables(report, checks)
    emit_json(
        {
            "benchmark": "nexus_router",
            "machine": report["machine"],
            "params": {
                "levels": [[c, d] for c, d in levels(args)],
                "requests": args.requests,
                "warmup": args.warmup,
                "nexus_log_level": args.nexus_log_level,
                "nexus": "separate process (singularity run nexus)",
                "provider": "singularity.testing.openai_server, one process per delay",
                "stagger": "workers start spread over one provider delay (>= 10 ms)",
            },
            "levels": report["levels"],
            "heuristic": report["heuristic"],
            "targets": checks,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
