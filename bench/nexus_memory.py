"""Memory of a Nexus process over many routed requests: RSS after a warm-up, along the way,
and after the last request.

Nexus runs in its own process (`singularity run nexus`), the stand-in provider
(`singularity.testing.openai_server`, no delay) in another. This script keeps C requests
outstanding on `llm_requests` (Nexus's concurrency is set to C as well), reads the results from
its own reply queue, and samples the Nexus process's memory with psutil. The anchor is the RSS
after the warm-up; growth = (end - anchor) / anchor.

    python bench/nexus_memory.py [--requests 100000] [--warmup 5000] [-c 256]
                                 [--sample-every 10000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

import psutil
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from _common import console, emit_json, machine, progress_console
from _nexus import (
    KEY_VALUE,
    KEY_VARIABLE,
    CpuMeter,
    LlmClient,
    NexusProcess,
    add_log_level_argument,
    add_platform_arguments,
    closed_loop,
    llm_request,
    load_average,
    mock_providers,
    open_platform,
    postgres_pids,
    reply_queue,
    this_process,
    versions,
    write_registry,
)

TARGET_GROWTH_PCT = 10.0
MIB = 2**20


def memory(process: psutil.Process) -> dict[str, float]:
    """RSS and USS (memory only this process holds) in MiB, and a few counts."""
    full = process.memory_full_info()
    return {
        "rss_mib": round(full.rss / MIB, 1),
        "uss_mib": round(full.uss / MIB, 1),
        "threads": process.num_threads(),
        "fds": process.num_fds(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    total = args.warmup + args.requests
    samples: list[dict[str, Any]] = []
    errors = 0
    async with open_platform(args) as platform:
        info = machine(platform.server)  # the commit that runs, taken now
        info["libraries"] = versions("litellm", "openai", "httpx", "fastapi", "uvicorn", "psycopg")
        with mock_providers(platform, [0]) as providers:
            provider = providers[0]
            registry = write_registry(platform.home / "models.toml", [provider])
            nexus_env = {
                "NEXUS_MODELS_FILE": str(registry),
                "NEXUS_LLM_CONCURRENCY": str(args.concurrency),
                KEY_VARIABLE: KEY_VALUE,
            }
            progress_console.print("starting nexus")
            async with (
                NexusProcess(platform, log_level=args.nexus_log_level, **nexus_env) as nexus,
                reply_queue(platform, "bench_replies") as queue,
                LlmClient(platform.bus, queue) as client,
            ):
                process = nexus.process()
                samples.append({"requests": 0, "phase": "started", **memory(process)})
                meter = CpuMeter(
                    {
                        "nexus": lambda: [nexus.pid],
                        "provider": lambda: [provider.proc.pid],
                        "client": this_process,
                        "postgres": postgres_pids(platform),
                    }
                )
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                )
                done = 0
                started = time.monotonic()
                with Progress(*columns, console=progress_console) as progress:
                    task = progress.add_task("warm-up", total=total)

                    def tick() -> None:
                        nonlocal done
                        done += 1
                        progress.advance(task)
                        counted = done - args.warmup
                        if done == args.warmup or (
                            counted > 0 and counted % args.sample_every == 0
                        ):
                            sample = memory(process)
                            phase = "warmed up" if counted == 0 else "routing"
                            samples.append({"requests": done, "phase": phase, **sample})
                            progress.update(
                                task,
                                description=f"RSS {sample['rss_mib']:.0f} MiB",
                            )
                            if counted == 0:
                                meter.start()

                    async def one(_: int) -> bool:
                        answer = await client.ask(llm_request(client.reply_to, provider.task_type))
                        return "error" not in answer.body

                    if args.warmup == 0:
                        samples.append({"requests": 0, "phase": "warmed up", **memory(process)})
                        meter.start()
                    outcomes = await closed_loop(total, args.concurrency, one, on_done=tick)
                wall = time.monotonic() - started
                cpu = meter.stop()
                errors = outcomes.count(False)
                if samples[-1]["requests"] != total:
                    samples.append({"requests": total, "phase": "routing", **memory(process)})
                samples[-1]["phase"] = "end"
                gc.collect()
                await asyncio.sleep(args.settle)
                samples.append(
                    {
                        "requests": total,
                        "phase": f"idle {args.settle:g} s later",
                        **memory(process),
                    }
                )
                if not nexus.alive():
                    raise RuntimeError(f"nexus stopped:\n{nexus.log_tail()}")
    anchor = next(s for s in samples if s["phase"] == "warmed up")
    end = next(s for s in samples if s["phase"] == "end")
    growth = (end["rss_mib"] - anchor["rss_mib"]) / anchor["rss_mib"] * 100
    return {
        "machine": info,
        "samples": samples,
        "anchor_rss_mib": anchor["rss_mib"],
        "end_rss_mib": end["rss_mib"],
        "end_over_anchor": round(end["rss_mib"] / anchor["rss_mib"], 3),
        "growth_pct": round(growth, 2),
        "uss_growth_pct": round((end["uss_mib"] - anchor["uss_mib"]) / anchor["uss_mib"] * 100, 2),
        "requests_per_s": round(total / wall, 1),
        "wall_s": round(wall, 1),
        "errors": errors,
        "cpu": cpu,
        "load_average": load_average(),
    }


def print_tables(report: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title="Nexus process memory (MiB)")
    for column in ("requests routed", "phase", "RSS", "USS", "vs warmed-up RSS", "threads", "fds"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    anchor = report["anchor_rss_mib"]
    for s in report["samples"]:
        table.add_row(
            f"{s['requests']:,}",
            s["phase"],
            f"{s['rss_mib']:.1f}",
            f"{s['uss_mib']:.1f}",
            f"{(s['rss_mib'] - anchor) / anchor * 100:+.1f}%",
            str(s["threads"]),
            str(s["fds"]),
        )
    console.print(table)
    met = report["growth_pct"] < TARGET_GROWTH_PCT
    console.print(
        f"RSS growth after the warm-up ({args.warmup:,} requests) to the end "
        f"({args.requests:,} more): {report['growth_pct']:+.2f}% "
        f"(end/warmed-up {report['end_over_anchor']:.3f}; target < {TARGET_GROWTH_PCT:g}%: "
        + ("[green]met[/])" if met else "[red]not met[/])")
    )
    console.print(
        f"{report['requests_per_s']:,.0f} requests/s over {report['wall_s']:,.0f} s, "
        f"{report['errors']} errors; Nexus CPU {report['cpu']['nexus_cpu_pct']:.0f}% of a core"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests after the warm-up")
    parser.add_argument("--warmup", type=int, default=5_000, help="requests before the anchor")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=256, help="requests kept outstanding"
    )
    parser.add_argument(
        "--sample-every", type=int, default=10_000, help="requests between memory samples"
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds idle before the last sample"
    )
    add_log_level_argument(parser)
    add_platform_arguments(parser)
    args = parser.parse_args()
    if args.requests < 1 or args.warmup < 0 or args.concurrency < 1 or args.sample_every < 1:
        parser.error("--requests, --concurrency and --sample-every must be positive")
    return args


async def main() -> None:
    args = parse_args()
    report = await run(args)
    print_tables(report, args)
    emit_json(
        {
            "benchmark": "nexus_memory",
            "machine": report["machine"],
            "params": {
                "requests": args.requests,
                "warmup": args.warmup,
                "concurrency": args.concurrency,
                "sample_every": args.sample_every,
                "provider_delay_ms": 0,
                "nexus_log_level": args.nexus_log_level,
                "nexus": "separate process (singularity run nexus)",
            },
            "results": {k: v for k, v in report.items() if k not in ("machine", "samples", "cpu")},
            "cpu": report["cpu"],
            "samples": report["samples"],
            "target": {
                "growth_pct": report["growth_pct"],
                "target_pct": TARGET_GROWTH_PCT,
                "met": report["growth_pct"] < TARGET_GROWTH_PCT,
            },
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
