"""How long a new user waits: the embedded server's first start with `db init`, and later starts.

Measures, in one run, the `singularity db init` command as a user runs it (a new process each
time: Python start-up, server start, bootstrap, server stop) against its anchor, the bare
PostgreSQL of the same pgserver package doing only `initdb` + start + stop (first start) and
start + stop (later start). Prints the ratio ours/anchor and the targets (first <= 15 s,
later <= 3 s). The last line is one JSON object with every figure.

    python bench/embedded_startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

console = Console(stderr=True)


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def ours(home: Path) -> tuple[float, float]:
    """`singularity db init` on a new home, then again on the same home."""
    env = {**os.environ, "SINGULARITY_HOME": str(home)}
    command = [sys.executable, "-m", "singularity", "db", "init"]
    first = timed(command, env)
    later = timed(command, env)
    return first, later


def anchor(pgdata: Path) -> tuple[float, float]:
    """The same PostgreSQL binaries, bare: initdb + start + stop, then start + stop."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    user = ["runuser", "-u", "pgserver", "--"] if os.geteuid() == 0 else []
    pgdata.mkdir()
    if user:
        import shutil

        shutil.chown(pgdata, "pgserver", "pgserver")
        pgdata.parent.chmod(0o755)
    start_stop = [
        [
            *user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(pgdata / "log"),
            "-o",
            f"-c listen_addresses='' -k {pgdata}",
            "start",
        ],
        [*user, str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
    ]
    initdb = [
        *user,
        str(bin_dir / "initdb"),
        "-D",
        str(pgdata),
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "-U",
        "postgres",
    ]
    started = time.perf_counter()
    for command in (initdb, *start_stop):
        subprocess.run(command, check=True, capture_output=True)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for command in start_stop:
        subprocess.run(command, check=True, capture_output=True)
    return first, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {
        k: [] for k in ("ours_first", "ours_later", "bare_first", "bare_later")
    }
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("starting servers", total=args.rounds)
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="sg-bench-") as scratch:
                root = Path(scratch)
                root.chmod(0o755)  # the unprivileged server user must reach it
                first, later = ours(root / "home")
                figures["ours_first"].append(first)
                figures["ours_later"].append(later)
                first, later = anchor(root / "bare")
                figures["bare_first"].append(first)
                figures["bare_later"].append(later)
            progress.advance(task)
    median = {name: round(statistics.median(values), 3) for name, values in figures.items()}
    result = {
        "benchmark": "embedded_startup",
        "rounds": args.rounds,
        "median_s": median,
        "ratio_first": round(median["ours_first"] / median["bare_first"], 2),
        "ratio_later": round(median["ours_later"] / median["bare_later"], 2),
        "target_first_s": 15,
        "target_later_s": 3,
        "met": median["ours_first"] <= 15 and median["ours_later"] <= 3,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
        },
    }
    table = Table(title="Embedded PostgreSQL start-up (median seconds)")
    for column in ("", "first start", "later start"):
        table.add_column(column)
    table.add_row(
        "singularity db init", f"{median['ours_first']:.2f}", f"{median['ours_later']:.2f}"
    )
    table.add_row(
        "bare PostgreSQL (anchor)", f"{median['bare_first']:.2f}", f"{median['bare_later']:.2f}"
    )
    table.add_row("ratio ours / anchor", f"{result['ratio_first']}", f"{result['ratio_later']}")
    table.add_row("target", "<= 15 s", "<= 3 s")
    Console().print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
