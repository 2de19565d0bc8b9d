"""Genesis: what a repository's test run costs in the sandbox with a cached environment.

A small Python repository (a module, `-t` 40 pytest tests, a requirements file naming six) is
tested two ways, interleaved, `-n` 20 rounds after `--warmup` 3:

(a) bare, the anchor: `python -m pytest -q` on the host, in the repository, with a virtualenv
    made on the host by the same system Python, holding the same packages;
(b) sandboxed: what an experiment does for one tree once the layer is cached: `Environments.
    prepare` (the step recognised, its inputs hashed, the layer found and locked) and
    `Sandbox.run` of the same command with the layer at /env, no network.

The layer is built once before the rounds (its build time is printed, not counted). Target:
(b) p50 <= 1.3 x (a) p50 + 100 ms.

    python bench/genesis_environment.py [-n 20] [--warmup 3] [-t 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from _common import console, emit_json, median
from singularity.genesis.environments import EnvironmentCache, Environments
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.sandbox.command import PYTHON
from singularity.genesis.workspaces.workspace import remove_workspace
from singularity.logs import configure_logging

COMMAND = "python -m pytest -q -p no:cacheprovider"
LIMITS = Limits(wall_s=120.0, cpu_s=60.0, memory_mb=1024, processes=64)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--samples", type=int, default=20, help="counted rounds")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted rounds first")
    parser.add_argument("-t", "--tests", type=int, default=40, help="tests in the repository")
    return parser.parse_args()


def make_repository(root: Path, tests: int) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("six==1.16.0\n")
    (repo / "calc.py").write_text("import six\n\n\ndef add(a, b):\n    return a + b\n")
    cases = "".join(
        f"\n\ndef test_add_{n}():\n    assert add({n}, 1) == {n + 1}\n" for n in range(tests)
    )
    (repo / "test_calc.py").write_text(f"from calc import add{cases}")
    return repo


def host_virtualenv(root: Path, repo: Path) -> Path:
    """A virtualenv on the host with what the step installs in the sandbox (the anchor's)."""
    venv = root / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(repo / "requirements.txt"), "pytest"], check=True)
    return venv


async def bare(repo: Path, venv: Path) -> float:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_shell(
        COMMAND, cwd=repo, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"the bare run failed: {err.decode()[-500:] or out.decode()[-500:]}")
    return elapsed


async def sandboxed(sandbox: Sandbox, environments: Environments, repo: Path) -> float:
    started = time.perf_counter()
    with await environments.prepare(sandbox, repo, None, COMMAND) as prepared:
        result = await sandbox.run(
            ["/bin/sh", "-c", COMMAND],
            limits=LIMITS,
            workdir=repo,
            binds=prepared.binds,
            env=prepared.env,
        )
    elapsed = (time.perf_counter() - started) * 1000
    if result.exit_code != 0:
        raise SystemExit(f"the sandboxed run failed: {result.stdout.decode()[-500:]}")
    return elapsed


async def main() -> None:
    args = parse()
    configure_logging("warning")
    root = Path(tempfile.mkdtemp(prefix="bench-environment-"))
    try:
        repo = make_repository(root, args.tests)
        venv = host_virtualenv(root, repo)
        boxed = root / "boxed"  # the sandbox's own copy: its runs own their work directory
        shutil.copytree(repo, boxed)
        sandbox = Sandbox()
        await sandbox.check()
        environments = Environments(EnvironmentCache(root / "layers", 4 << 30))
        try:
            started = time.perf_counter()
            with await environments.prepare(sandbox, boxed, None, COMMAND) as first:
                step = first.step.description if first.step else "none"
            build_s = time.perf_counter() - started
            times: dict[str, list[float]] = {"bare": [], "sandboxed": []}
            for index in range(args.warmup + args.samples):
                a = await bare(repo, venv)
                b = await sandboxed(sandbox, environments, boxed)
                if index >= args.warmup:
                    times["bare"].append(a)
                    times["sandboxed"].append(b)
        finally:
            await environments.aclose()
    finally:
        await asyncio.to_thread(remove_workspace, root)  # the sandbox's files are its uid's
    report(args, step, build_s, times)


def report(args: argparse.Namespace, step: str, build_s: float, times: dict[str, Any]) -> None:
    bare_p50, boxed_p50 = median(times["bare"]), median(times["sandboxed"])
    bound = 1.3 * bare_p50 + 100
    table = Table(title=f"A repository's {args.tests} tests, {args.samples} rounds (ms)")
    for column in ("run", "p50", "min", "max"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, label in (
        ("bare", "(a) bare: host virtualenv, `python -m pytest -q` (the anchor)"),
        ("sandboxed", "(b) sandboxed: cached layer at /env, prepare + Sandbox.run"),
    ):
        values = times[name]
        table.add_row(label, f"{median(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}")
    console.print(table)
    console.print(f"environment: {step}; built once in {build_s:.1f} s (not counted)")
    met = "met" if boxed_p50 <= bound else "NOT met"
    console.print(
        f"target (b) <= 1.3 x (a) + 100 ms = {bound:.1f} ms: {boxed_p50:.1f} ms, {met} "
        f"(ratio {boxed_p50 / bare_p50:.2f})"
    )
    emit_json(
        {
            "bench": "genesis_environment",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "tests": args.tests,
            "bare_p50_ms": round(bare_p50, 2),
            "sandboxed_p50_ms": round(boxed_p50, 2),
            "bound_ms": round(bound, 2),
            "target_met": boxed_p50 <= bound,
            "build_s": round(build_s, 2),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
