"""The code running in the sandbox (and the job's sender) attacks the worker's resources.

Each test runs the attack for real in the real sandbox (bubblewrap, the reaper, a root worker's
uid of its own), checks that it is contained with the documented status, and that the same
sandbox then runs a normal job. The inode bounds of the tmpfs mounts need a root worker (they
are staged as root: bubblewrap has no option for them), which CI is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_support import SLOTS, UIDS, sandbox_processes
from singularity.genesis.jobs.execution import Execution, JobSpec, Status, classify, execute
from singularity.genesis.limits import MIB, Limits, limits_from_request
from singularity.genesis.sandbox import Sandbox
from singularity.genesis.sandbox.command import inode_budget
from singularity.genesis.sandbox.tree import MAX_DEPTH, measure

if shutil.which("bwrap") is None:
    if os.environ.get("SINGULARITY_REQUIRE_SANDBOX") == "1":
        pytest.fail("bubblewrap is required (SINGULARITY_REQUIRE_SANDBOX=1) but missing")
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

LIMITS = Limits(wall_s=10.0, cpu_s=10.0, processes=32, memory_mb=256, disk_mb=8)
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(uid_base=UIDS, slots=SLOTS)


@pytest.fixture(autouse=True)
def no_trace() -> Iterator[None]:
    before = set(os.listdir(tempfile.gettempdir()))
    yield
    assert sandbox_processes() == []
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [name for name in left if name.startswith("singularity-")]


async def job(sandbox: Sandbox, spec: JobSpec) -> Execution:
    return await execute(spec, sandbox)


async def still_serves(sandbox: Sandbox) -> None:
    done = await job(sandbox, JobSpec("python", "print(6 * 7)", stdin="x", args=("-v",)))
    assert (done.status, done.output) == (Status.OK, "42\n"), done


@pytest.mark.skipif(not ROOT, reason="the inode bound is staged by a root worker")
async def test_finding_9_the_sandbox_tmpfs_mounts_hold_a_bounded_number_of_files(
    sandbox: Sandbox,
) -> None:
    # Empty files take no room, only kernel memory: without an inode limit 1.2 M of them fit.
    code = (
        "import os, sys\n"
        "for where in ('/work', '/tmp', '/dev/shm'):\n"
        "    n = 0\n"
        "    try:\n"
        "        while n < 200_000:\n"
        "            os.close(os.open(f'{where}/f{n}', os.O_CREAT | os.O_WRONLY)); n += 1\n"
        "    except OSError as exc:\n"
        "        print(where, n, exc.strerror)\n"
        "    else:\n"
        "        print(where, n, 'no limit')\n"
    )
    done = await job(sandbox, JobSpec("python", code, limits=LIMITS))
    assert done.status is Status.OK, done
    made = {line.split()[0]: int(line.split()[1]) for line in done.output.splitlines()}
    assert "no limit" not in done.output
    assert "No space left on device" in done.output
    assert 0 < made["/work"] <= inode_budget(LIMITS.disk_mb)
    assert 0 < made["/tmp"] <= inode_budget(LIMITS.disk_mb)
    assert 0 < made["/dev/shm"] <= inode_budget(min(16, LIMITS.disk_mb))
    await still_serves(sandbox)


async def test_finding_9_arguments_past_the_command_line_limit_are_refused_with_the_limit(
    sandbox: Sandbox,
) -> None:
    one_long = ("x" * 200_000,)  # past the kernel's 128 KiB for one word: E2BIG
    many = tuple("y" * 1000 for _ in range(3000))  # 3 MB in all: past ARG_MAX
    for args in (one_long, many):
        done = await job(sandbox, JobSpec("python", "print(1)", args=args, limits=LIMITS))
        assert done.status is Status.UNSUPPORTED, done
        assert done.error is not None and "\n" not in done.error
        assert "limit of" in done.error
        assert done.history == ()  # refused before any sandbox ran
    await still_serves(sandbox)


async def test_finding_9_a_huge_stdin_is_refused_before_it_is_copied(sandbox: Sandbox) -> None:
    stdin = "z" * (100 * MIB)
    started = time.monotonic()
    done = await job(sandbox, JobSpec("python", "import sys; sys.stdin.read()", stdin=stdin))
    assert done.status is Status.UNSUPPORTED, done
    assert done.error is not None and "limits.stdin_bytes" in done.error
    assert "\n" not in done.error
    assert done.history == ()
    assert time.monotonic() - started < 1.0
    # A sender cannot raise the bound past its maximum either, and a stdin under it still runs.
    with pytest.raises(ValueError, match="stdin_bytes"):
        limits_from_request({"stdin_bytes": 200 * MIB})
    code = "import sys; print(len(sys.stdin.read()))"
    done = await job(sandbox, JobSpec("python", code, stdin="q" * MIB, limits=LIMITS))
    assert (done.status, done.output) == (Status.OK, f"{MIB}\n"), done
    await still_serves(sandbox)


async def test_finding_9_signals_to_the_reaper_neither_kill_it_nor_lose_the_report(
    sandbox: Sandbox,
) -> None:
    # PID 1 is the reaper. Every signal there is, SIGINT first (Python's own handler made the
    # kernel deliver it), several times over; then the program ends in its own way.
    code = (
        "import os, signal, time\n"
        "for _ in range(3):\n"
        "    for n in sorted(signal.valid_signals()):\n"
        "        try:\n"
        "            os.kill(1, n)\n"
        "        except OSError:\n"
        "            pass\n"
        "    time.sleep(0.1)\n"
        "print('still here', flush=True)\n"
        "raise SystemExit(7)\n"
    )
    done = await job(sandbox, JobSpec("python", code, limits=LIMITS))
    assert done.status is Status.RUNTIME_ERROR, done
    assert done.exit_code == 7 and done.output == "still here\n"
    shell = "for s in INT TERM HUP QUIT USR1 USR2 ALRM; do kill -s $s 1; done; sleep 0.2; echo ok"
    done = await job(sandbox, JobSpec("bash", shell, limits=LIMITS))
    assert (done.status, done.output) == (Status.OK, "ok\n"), done
    # The program itself gets the default actions back: SIGINT still ends it.
    done = await job(sandbox, JobSpec("bash", "kill -s INT $$; sleep 5", limits=LIMITS))
    assert done.status is Status.SIGNALED and "SIGINT" in (done.error or ""), done
    await still_serves(sandbox)


async def test_finding_9_a_host_work_directory_is_bounded_in_total(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # 1 MB files, each under file_size_mb: only their total can be bounded, and is.
    limits = Limits(wall_s=20.0, cpu_s=20.0, disk_mb=8, file_size_mb=4)
    code = (
        "import time\n"
        "for n in range(300):\n"
        "    with open(f'out{n}', 'wb') as f:\n"
        "        f.write(b'x' * (1 << 20))\n"
        "    time.sleep(0.01)\n"
    )
    (tmp_path / "main.py").write_text(code)
    result = await sandbox.run(["python3", "main.py"], limits=limits, workdir=tmp_path)
    assert result.disk_limited and not result.timed_out
    assert classify(result) is Status.OUTPUT_LIMIT
    written = measure(tmp_path).bytes
    assert written < (limits.disk_mb + 8) * MIB  # the watchdog's slack, far from 300 MB
    # A writer faster than the watchdog is caught when it ends: never an OK over the quota.
    (tmp_path / "main.py").write_text(
        "for n in range(16):\n    open(f'fast{n}', 'wb').write(b'y' * (2 << 20))\n"
    )
    result = await sandbox.run(["python3", "main.py"], limits=limits, workdir=tmp_path)
    assert result.disk_limited and not result.ok
    # Within the quota, a run in a host directory is as before.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "main.py").write_text("open('small', 'w').write('s' * 1000)\n")
    result = await sandbox.run(["python3", "main.py"], limits=limits, workdir=fresh)
    assert result.ok and not result.disk_limited
    await still_serves(sandbox)


async def test_finding_9_a_host_work_directory_is_bounded_in_files_too(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    limits = Limits(wall_s=20.0, cpu_s=20.0, disk_mb=1)
    code = "import os\nfor n in range(200_000):\n    os.close(os.open(f'e{n}', os.O_CREAT))\n"
    (tmp_path / "main.py").write_text(code)
    result = await sandbox.run(["python3", "main.py"], limits=limits, workdir=tmp_path)
    assert result.disk_limited and classify(result) is Status.OUTPUT_LIMIT
    assert len(os.listdir(tmp_path)) < 200_000
    await still_serves(sandbox)


async def test_attack_nesting_below_the_watchdogs_reach_stops_the_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Data hidden deeper than the measure walks must not escape the quota: a tree too deep to
    # measure counts as over it. The same tree given as a work directory is refused outright.
    limits = Limits(wall_s=20.0, cpu_s=20.0, disk_mb=8)
    code = (
        "import os\n"
        f"for _ in range({MAX_DEPTH + 50}):\n"
        "    os.mkdir('d'); os.chdir('d')\n"
        "open('hidden', 'wb').write(b'h' * (4 << 20))\n"
    )
    (tmp_path / "main.py").write_text(code)
    try:
        result = await sandbox.run(["python3", "main.py"], limits=limits, workdir=tmp_path)
        assert result.disk_limited and classify(result) is Status.OUTPUT_LIMIT
        with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH}"):
            await sandbox.run(["true"], limits=limits, workdir=tmp_path)
    finally:
        unnest(tmp_path / "d")
    await still_serves(sandbox)


def unnest(top: Path) -> None:
    """Remove a chain of nested `d` directories a level at a time (rmtree recurses)."""
    while (top / "d").is_dir():
        (top / "d").rename(top.with_name("next"))
        shutil.rmtree(top)
        top.with_name("next").rename(top)
    shutil.rmtree(top, ignore_errors=True)


async def test_attack_links_in_the_work_directory_do_not_lead_the_worker_out(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Links to the host's root, and a directory swapped for a link again and again while the
    # worker measures: the measure never follows one, so it neither walks the host (slow, and
    # over any quota) nor counts its files; the run ends as the program does.
    limits = Limits(wall_s=20.0, cpu_s=20.0, disk_mb=8)
    code = (
        "import os, time\n"
        "os.symlink('/', 'host')\n"
        "os.symlink('/usr', 'usr')\n"
        "end = time.monotonic() + 1.5\n"
        "while time.monotonic() < end:\n"
        "    os.mkdir('swap'); os.rmdir('swap'); os.symlink('/usr', 'swap'); os.unlink('swap')\n"
        "print('done')\n"
    )
    (tmp_path / "main.py").write_text(code)
    result = await sandbox.run(["python3", "main.py"], limits=limits, workdir=tmp_path)
    assert result.ok and not result.disk_limited, result
    assert result.stdout == b"done\n"
    assert (tmp_path / "host").is_symlink()
    assert measure(tmp_path).entries < 10
    await still_serves(sandbox)
