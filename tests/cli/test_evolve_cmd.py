"""`singularity evolve`, run as a user runs it: killed with SIGKILL in the middle of a
generation and started again, it goes on from what its databases recorded."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from evolve_support import rewrite
from genesis_support import require_bwrap
from helpers import singularity
from nexus_support import RunningNexus
from singularity.genesis.evolution import EvolutionConfig, ProgramDatabase, open_engine
from singularity.testing.openai_server import MockOpenAI, Reply

EXAMPLE = ["--problem", "circle_packing"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*EXAMPLE, "--generations", "0"], "--generations must be at least"),
        ([*EXAMPLE, "--generations", "2", "--islands", "0"], "--islands"),
        ([*EXAMPLE, "--generations", "2", "--diff-ratio", "2"], "--diff-ratio"),
        ([*EXAMPLE, "--generations", "2", "--budget", "-1"], "--budget"),
        (["--problem", "/nowhere", "--generations", "2"], "is not a directory"),
        (["--generations", "2"], "Missing option '--problem'"),
    ],
)
def test_bad_arguments_get_one_line(args: list[str], message: str) -> None:
    done = singularity("evolve", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _programs(path: Path) -> int:
    if not path.exists():
        return 0
    db = ProgramDatabase(open_engine(f"sqlite:///{path}"), EvolutionConfig(num_islands=2))
    try:
        return db.count()
    except Exception:  # the tables are not created yet
        return 0
    finally:
        db.close()


async def _evolve(db: Path, *extra: str) -> asyncio.subprocess.Process:
    args = ["evolve", "--problem", "circle_packing", "--generations", "2", "--islands", "2"]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "singularity",
        *args,
        "--db",
        f"sqlite:///{db}",
        "--seed",
        "4",
        "--llm-timeout",
        "30",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SINGULARITY_LOG_LEVEL": "warning"},
    )


async def test_a_run_killed_mid_generation_resumes_and_asks_nothing_twice(
    nexus: RunningNexus, llm: MockOpenAI, tmp_path: Path
) -> None:
    require_bwrap()
    # One of generation 1's answers comes at once; the other while the process is dead.
    llm.script(
        "gamma",
        Reply(rewrite(0.95)),
        Reply(rewrite(0.96), delay_s=3.0),
        Reply(rewrite(0.97)),
        Reply(rewrite(0.98)),
    )
    db = tmp_path / "run.db"
    first = await _evolve(db)
    deadline = asyncio.get_running_loop().time() + 90
    while _programs(db) < 3:  # the two initial programs and the first child
        assert first.returncode is None, (await first.communicate())[1].decode()
        assert asyncio.get_running_loop().time() < deadline, "no child was stored"
        await asyncio.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert len(llm.calls_for("gamma")) == 2
    second = await _evolve(db)
    out, err = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 0, err.decode()
    text = out.decode()
    assert "done: 2 generations" in text and "best: program" in text
    assert len(llm.calls_for("gamma")) == 4  # the answer that came while it was dead was used
    assert _programs(db) == 2 + 4
