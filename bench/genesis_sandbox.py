"""Genesis: what the sandbox costs per job, and how many jobs a worker runs per second.

Part 1, per-job overhead, in this process: a Python hello-world run (a) as a bare subprocess
(`/usr/bin/python3 -c ...`, pipes, no isolation: the anchor of jobs), (b) under bare bubblewrap
(`bwrap --unshare-all ...` with /usr, /proc, /dev and two tmpfs mounts, nothing else: the
anchor of `Sandbox.run`), (c) through `Sandbox.run` (the same argv with every limit and
guarantee), and (d) as a whole job through `execute` (the syntax check and the run: one
sandbox, one Python start). Rounds interleave a to d; p50 and p99 of each, and the ratios c/b
and d/a at p50.

Part 2, saturation: N jobs through the bus to a Genesis worker in its own process
(`python -m singularity run genesis`, GENESIS_CONCURRENCY = C), all sent at once, against the
same N hello-worlds run as bare subprocesses C at a time (the anchor), in the same run; with
the CPU each job cost the worker, its sandboxes and PostgreSQL, from /proc.

Each ratio is printed beside its target (issue 16): c/b <= 1.3, d/a <= 1.6, jobs/s >= 0.4x.

    python bench/genesis_sandbox.py [-n 200] [--warmup 20] [--jobs 1000] [-c CPUS]
                                    [--database-url URL] [--home HOME]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from _common import console, emit_json, machine, progress_console
from _nexus import add_platform_arguments, open_platform, process_env, spread
from singularity.genesis.jobs.execution import JobSpec, execute
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox
from singularity.logs import configure_logging
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Role
from singularity.shared_queue import ensure_queue
from singularity.shared_queue.install import grant_publish

PYTHON = "/usr/bin/python3"
HELLO = "print('hello, world')"
BWRAP = [
    "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1",
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
    "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
    "--tmpfs", "/tmp", "--tmpfs", "/work", "--chdir", "/work",
]  # fmt: skip
TARGETS = {"sandbox_over_bwrap": 1.3, "job_over_bare": 1.6, "genesis_over_bare": 0.4}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--samples", type=int, default=200, help="counted runs of each")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted runs of each first")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the saturation part")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=os.cpu_count() or 2, help="jobs at once"
    )
    add_platform_arguments(parser)
    return parser.parse_args()


# -- part 1 --------------------------------------------------------------------------------


async def bare(prefix: tuple[str, ...] = ()) -> None:
    proc = await asyncio.create_subprocess_exec(
        *prefix, PYTHON, "-c", HELLO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out == b"hello, world\n", out


async def sandboxed(sandbox: Sandbox) -> None:
    result = await sandbox.run([PYTHON, "-c", HELLO], limits=DEFAULT_LIMITS)
    assert result.exit_code == 0 and result.stdout == b"hello, world\n", result


async def job(sandbox: Sandbox) -> None:
    execution = await execute(JobSpec(language="python", code=HELLO), sandbox)
    assert execution.status.value == "OK", execution


async def timed(run: Any) -> float:
    started = time.perf_counter()
    await run()
    return (time.perf_counter() - started) * 1000


async def overhead(args: argparse.Namespace, sandbox: Sandbox) -> dict[str, Any]:
    kinds = {
        "bare": bare,
        "bwrap": lambda: bare(tuple(BWRAP)),
        "sandbox": lambda: sandboxed(sandbox),
        "job": lambda: job(sandbox),
    }
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    total = args.warmup + args.samples
    with progress() as bar:
        task = bar.add_task("per-job overhead (bare, bwrap, sandbox, job)", total=total)
        for index in range(total):
            for name, run in kinds.items():
                elapsed = await timed(run)
                if index >= args.warmup:
                    samples[name].append(elapsed)
            bar.advance(task)
    figures = {name: _spread(values) for name, values in samples.items()}
    anchor, bwrap = figures["bare"]["p50"], figures["bwrap"]["p50"]
    return {
        "samples": args.samples,
        "ms": figures,
        "sandbox_over_bwrap_p50": round(figures["sandbox"]["p50"] / bwrap, 2),
        "sandbox_over_bare_p50": round(figures["sandbox"]["p50"] / anchor, 2),
        "job_over_bare_p50": round(figures["job"]["p50"] / anchor, 2),
        "sandbox_added_p50_ms": round(figures["sandbox"]["p50"] - bwrap, 2),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {**spread(values), "mean": round(sum(values) / len(values), 2)}


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=progress_console,
    )


# -- part 2 --------------------------------------------------------------------------------


async def bare_saturation(jobs: int, concurrency: int) -> float:
    """Jobs per second for bare hello-world subprocesses, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await bare()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return jobs / (time.perf_counter() - started)


async def genesis_saturation(args: argparse.Namespace, platform: Any) -> dict[str, Any]:
    """Jobs per second through the bus to a Genesis worker process."""
    replies = f"bench_jobs_{uuid.uuid4().hex[:8]}"
    async with async_connection(platform.bus) as conn:
        await ensure_queue(conn, replies)
        await grant_publish(conn, platform.cluster.role_name(Role.GENESIS), replies)
    log_path = platform.home / "genesis-bench.log"
    env = process_env(platform, GENESIS_CONCURRENCY=str(args.concurrency))
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "singularity", "run", "genesis",
            stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, cwd=platform.home,
        )  # fmt: skip
        try:
            await _started(log_path, proc)
            before = _cpu_ticks(proc.pid)
            through = await _through_bus(args, platform, replies)
            after = _cpu_ticks(proc.pid)
            tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
            through["cpu_ms_per_job"] = {
                name: round((after[name] - before[name]) * tick_ms / args.jobs, 2) for name in after
            }
            return through
        finally:
            proc.terminate()
            await proc.wait()
            async with async_connection(platform.bus) as conn:
                await conn.execute("SELECT pgmq.drop_queue(%s)", (replies,))


async def _started(log_path: Path, proc: Any) -> None:
    deadline = time.monotonic() + 60
    while "genesis_started" not in _text(log_path):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise SystemExit(f"genesis did not start:\n{_text(log_path)[-2000:]}")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # its consumers subscribe to their wake-ups as they start


def _cpu_ticks(worker: int) -> dict[str, int]:
    """CPU ticks so far of the worker itself, of its sandboxes (reaped children: each run's
    whole tree, the job's Python included), and of every PostgreSQL process of this machine."""
    own = _stat_ticks(str(worker))
    postgres = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
                postgres += sum(_stat_ticks(pid))  # with the server's reaped backends
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return {
        "worker": own[0] + own[1],
        "sandboxes": own[2] + own[3],
        "postgres": postgres,
        "machine": busy,  # every CPU: this bench, kernel threads, anything else running
    }


def _stat_ticks(pid: str) -> list[int]:
    # utime, stime, cutime, cstime: fields 14 to 17 of /proc/PID/stat, after the command name.
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return [0, 0, 0, 0]
    return [int(value) for value in fields[11:15]]


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


async def _through_bus(args: argparse.Namespace, platform: Any, replies: str) -> dict[str, Any]:
    bodies = [
        json.dumps({"id": f"b-{uuid.uuid4().hex}", "code": HELLO, "language": "python",
                    "reply_to": replies})
        for _ in range(args.jobs)
    ]  # fmt: skip
    statuses: dict[str, int] = {}
    async with async_connection(platform.bus) as conn:
        started = time.perf_counter()
        await conn.execute(
            "SELECT pgmq.send_batch('job_requests', array(SELECT jsonb_array_elements(%s::jsonb)))",
            (f"[{','.join(bodies)}]",),
        )
        with progress() as bar:
            task = bar.add_task(f"{args.jobs} jobs through Genesis", total=args.jobs)
            done = 0
            while done < args.jobs:
                rows = await (
                    await conn.execute("SELECT message FROM pgmq.pop(%s, 100)", (replies,))
                ).fetchall()
                for (message,) in rows:
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1
                done += len(rows)
                bar.update(task, completed=done)
                if not rows:
                    await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    return {"jobs_per_s": round(args.jobs / elapsed, 1), "seconds": round(elapsed, 2),
            "statuses": statuses}  # fmt: skip


# -- report --------------------------------------------------------------------------------


def report(part1: dict[str, Any], part2: dict[str, Any]) -> None:
    table = Table(title=f"Per-job time, Python hello-world (ms, n = {part1['samples']})")
    for column in ("run", "p50", "p99", "mean", "p50 / bare", "p50 / bwrap"):
        table.add_column(column, justify="right" if column != "run" else "left")
    anchor, bwrap = part1["ms"]["bare"]["p50"], part1["ms"]["bwrap"]["p50"]
    labels = {
        "bare": "(a) bare subprocess",
        "bwrap": "(b) bare bubblewrap",
        "sandbox": "(c) Sandbox.run",
        "job": "(d) job: check + run (one process)",
    }
    for name, label in labels.items():
        f = part1["ms"][name]
        table.add_row(label, f"{f['p50']:.2f}", f"{f['p99']:.2f}", f"{f['mean']:.2f}",
                      f"{f['p50'] / anchor:.2f}", f"{f['p50'] / bwrap:.2f}")  # fmt: skip
    console.print(table)
    sat = Table(title=f"Saturation: {part2['jobs']} jobs, {part2['concurrency']} at a time")
    sat.add_column("system")
    sat.add_column("jobs/s", justify="right")
    sat.add_row("bare subprocesses (anchor)", f"{part2['bare_jobs_per_s']:.1f}")
    sat.add_row("through the bus to Genesis", f"{part2['genesis']['jobs_per_s']:.1f}")
    sat.add_row("ratio Genesis / bare", f"{part2['genesis_over_bare']:.2f}")
    console.print(sat)
    cpu = part2["genesis"]["cpu_ms_per_job"]
    console.print(
        f"CPU per job through the bus (ms): worker {cpu['worker']:.2f}, its sandboxes "
        f"{cpu['sandboxes']:.2f} (the job's Python included), PostgreSQL {cpu['postgres']:.2f}; "
        f"the whole machine {cpu['machine']:.2f}"
    )
    goals = Table(title="Targets (issue 16)")
    for column in ("ratio", "measured", "target", "met"):
        goals.add_column(column, justify="left" if column == "ratio" else "right")
    measured = {
        "sandbox_over_bwrap": part1["sandbox_over_bwrap_p50"],
        "job_over_bare": part1["job_over_bare_p50"],
        "genesis_over_bare": part2["genesis_over_bare"],
    }
    for name, value in measured.items():
        target = TARGETS[name]
        met = value >= target if name == "genesis_over_bare" else value <= target
        sign = ">=" if name == "genesis_over_bare" else "<="
        goals.add_row(name, f"{value:.2f}", f"{sign} {target}", "yes" if met else "no")
    console.print(goals)


async def main() -> None:
    args = parse()
    configure_logging("warning", stream=sys.stderr)
    sandbox = Sandbox()
    await sandbox.check()
    part1 = await overhead(args, sandbox)
    async with open_platform(args) as platform:
        bare_rate = await bare_saturation(args.jobs, args.concurrency)
        through = await genesis_saturation(args, platform)
        part2 = {
            "jobs": args.jobs,
            "concurrency": args.concurrency,
            "bare_jobs_per_s": round(bare_rate, 1),
            "genesis": through,
            "genesis_over_bare": round(through["jobs_per_s"] / bare_rate, 2),
        }
        report(part1, part2)
        emit_json(
            {
                "benchmark": "genesis_sandbox",
                "machine": machine(platform.server),
                "overhead": part1,
                "saturation": part2,
            }
        )


if __name__ == "__main__":
    asyncio.run(main())
