"""The sandbox as a program sees it and as the host sees it: real bubblewrap, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from genesis_support import SLOTS, UIDS, require_bwrap, sandbox_processes
from singularity.genesis.limits import DEFAULT_LIMITS, HARD_LIMITS, Limits, limits_from_request
from singularity.genesis.sandbox import (
    PYTHON,
    RunResult,
    Sandbox,
    SandboxUnavailable,
    Step,
    native,
)
from singularity.genesis.sandbox import command as commands

FAST = Limits(wall_s=5.0, cpu_s=3.0)
ROOT = os.geteuid() == 0


@pytest.fixture(params=["native", "portable"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """The sandbox with the native helper (where it builds) and with the portable chain."""
    require_bwrap()
    return Sandbox(uid_base=UIDS, slots=SLOTS, native_helper=request.param == "native")


def with_marker(marker: str) -> list[int]:
    """Host processes running `sleep` with `marker` (bubblewrap's own argv names it too)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0] == b"sleep" and marker.encode() in args:
            found.append(int(name))
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After every test: no process of a sandbox uid, no stage or unsafe directory in /tmp."""
    before = set(os.listdir(tempfile.gettempdir()))
    yield
    assert sandbox_processes() == []
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [name for name in left if name.startswith("singularity-")]


def text(result: RunResult) -> str:
    return result.stdout.decode()


def test_limits_from_a_request_change_only_what_it_names() -> None:
    assert limits_from_request(None) == DEFAULT_LIMITS
    assert limits_from_request({}) == DEFAULT_LIMITS
    found = limits_from_request({"wall_s": 2, "memory_mb": 128, "cpu_s": None})
    assert found == Limits(wall_s=2.0, memory_mb=128)
    assert isinstance(found.wall_s, float)
    assert limits_from_request({"disk_mb": 1024}).disk_mb == HARD_LIMITS.disk_mb
    own = Limits(wall_s=1.0)
    assert limits_from_request({"cpu_s": 1}, defaults=own) == Limits(wall_s=1.0, cpu_s=1.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gpu": 1}, "unknown limit 'gpu'; known: cpu_s, memory_mb, wall_s"),
        ({"memory_mb": "512"}, "limits.memory_mb must be an integer from 1 to 4096; got '512'"),
        ({"memory_mb": 1.5}, "limits.memory_mb must be an integer from 1 to 4096; got 1.5"),
        ({"processes": True}, "limits.processes must be an integer from 1 to 512; got True"),
        ({"wall_s": 0}, "limits.wall_s must be a number above 0 and at most 600; got 0"),
        ({"cpu_s": -1}, "limits.cpu_s must be a number above 0 and at most 300; got -1"),
        ({"cpu_s": float("nan")}, "limits.cpu_s must be a number above 0 and at most 300; got nan"),
        ({"disk_mb": 1025}, "limits.disk_mb must be an integer from 1 to 1024; got 1025"),
        ({"output_bytes": 2**30}, "limits.output_bytes must be an integer from 1 to 16777216"),
        (["wall_s"], "limits must be an object of cpu_s, memory_mb"),
    ],
)
def test_limits_a_request_may_not_have_are_named_with_the_allowed_range(
    values: object, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)) as caught:
        limits_from_request(values)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_stricter_maximum_is_enforced() -> None:
    with pytest.raises(ValueError, match="at most 5; got 10"):
        limits_from_request({"wall_s": 10}, maximum=Limits(wall_s=5.0))


async def test_a_command_runs_and_both_streams_are_captured(sandbox: Sandbox) -> None:
    result = await sandbox.run(["sh", "-c", "echo out; echo err >&2"], limits=FAST)
    assert (result.stdout, result.stderr, result.exit_code, result.signal) == (
        b"out\n",
        b"err\n",
        0,
        None,
    )
    assert result.ok and not (result.timed_out or result.output_limited or result.cpu_exceeded)
    assert result.wall_ms > 0 and result.max_rss_kb > 0


async def test_exit_codes_and_signals_are_the_programs_own(sandbox: Sandbox) -> None:
    exited = await sandbox.run(["sh", "-c", "exit 3"], limits=FAST)
    high = await sandbox.run(["sh", "-c", "exit 137"], limits=FAST)
    killed = await sandbox.run([PYTHON, "-c", "import os; os.kill(os.getpid(), 11)"], limits=FAST)
    assert (exited.exit_code, exited.signal) == (3, None)
    assert (high.exit_code, high.signal) == (137, None)  # an exit code, not "signal 9"
    assert (killed.exit_code, killed.signal) == (None, signal.SIGSEGV)


async def test_a_missing_program_is_the_programs_failure_not_the_sandboxs(
    sandbox: Sandbox,
) -> None:
    result = await sandbox.run(["no-such-program"], limits=FAST)
    assert result.exit_code == 127
    assert b"cannot execute no-such-program" in result.stderr


async def test_files_are_written_into_a_fresh_work_directory(sandbox: Sandbox) -> None:
    files = {"main.py": "print('hi')", "pkg/data/blob.bin": bytes(range(256))}
    script = "pwd; cat main.py; echo; wc -c < pkg/data/blob.bin; echo more >> main.py && echo ok"
    result = await sandbox.run(["sh", "-c", script], limits=FAST, files=files)
    assert text(result) == "/work\nprint('hi')\n256\nok\n"
    fresh = await sandbox.run(["ls", "-A", "/work"], limits=FAST)
    assert fresh.stdout == b""


@pytest.mark.parametrize("name", ["/etc/passwd", "../up", "a/../../up", "", "./a", "a//b", "a\0b"])
async def test_file_names_that_could_leave_the_work_directory_are_refused(
    sandbox: Sandbox, name: str
) -> None:
    with pytest.raises(ValueError, match="relative path"):
        await sandbox.run(["true"], limits=FAST, files={name: "x"})


async def test_files_larger_than_the_disk_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="disk limit"):
        await sandbox.run(["true"], limits=Limits(disk_mb=1), files={"big": b"x" * (2 << 20)})


async def test_stdin_is_fed_in_full(sandbox: Sandbox) -> None:
    data = os.urandom(3 << 20)
    result = await sandbox.run(["sh", "-c", "wc -c"], limits=FAST, stdin=data)
    assert text(result).strip() == str(len(data))
    closed = await sandbox.run(["cat"], limits=FAST)
    assert closed.stdout == b"" and closed.exit_code == 0


async def test_the_environment_is_minimal_with_the_extra_variables(sandbox: Sandbox) -> None:
    result = await sandbox.run(["env"], limits=FAST, env={"GREETING": "hello world"})
    found = dict(line.split("=", 1) for line in text(result).splitlines())
    found.pop("PWD", None)  # set by nothing but `env` reporting the cwd
    assert found == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/work",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "GREETING": "hello world",
    }


async def test_the_program_is_unprivileged_and_alone(sandbox: Sandbox) -> None:
    status = "grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status"
    script = f"id -u; {status}; ls /proc | grep -c '^[0-9]'"
    result = await sandbox.run(["sh", "-c", script], limits=FAST)
    uid, *caps, no_new_privs, processes = text(result).split("\n")[:7]
    assert UIDS <= int(uid) < UIDS + SLOTS if ROOT else int(uid) == os.getuid()
    assert [line.split()[1] for line in caps] == ["0000000000000000"] * 4
    assert no_new_privs.split()[1] == "1"
    assert int(processes) <= 4  # the reaper, sh, grep/ls: no host process is visible


async def test_output_past_the_cap_is_truncated_and_stops_the_run(sandbox: Sandbox) -> None:
    limits = Limits(wall_s=5.0, output_bytes=10_000)
    result = await sandbox.run(["yes"], limits=limits)
    assert len(result.stdout) == 10_000 and result.stdout_truncated
    assert result.output_limited and not result.timed_out
    assert result.signal == signal.SIGKILL
    errors = await sandbox.run(["sh", "-c", "yes >&2"], limits=limits)
    assert errors.stderr_truncated and not errors.stdout_truncated and errors.output_limited


async def test_output_right_at_the_cap_is_kept_whole(sandbox: Sandbox) -> None:
    limits = Limits(wall_s=5.0, output_bytes=5000)
    result = await sandbox.run([PYTHON, "-c", "print('x' * 4999)"], limits=limits)
    assert len(result.stdout) == 5000
    assert not (result.stdout_truncated or result.output_limited) and result.ok


async def test_the_wall_clock_limit_kills_the_tree(sandbox: Sandbox) -> None:
    marker = "31.4159"
    script = f"sleep {marker} & sleep {marker}"
    result = await sandbox.run(["sh", "-c", script], limits=Limits(wall_s=1.0))
    assert result.timed_out and result.signal == signal.SIGKILL and result.exit_code is None
    assert 900 < result.wall_ms < 3000
    assert with_marker(marker) == []


async def test_the_cpu_limit_ends_a_busy_program(sandbox: Sandbox) -> None:
    result = await sandbox.run([PYTHON, "-c", "while True: pass"], limits=Limits(cpu_s=1.0))
    assert result.cpu_exceeded and result.signal == signal.SIGXCPU and not result.timed_out
    assert result.cpu_ms >= 900


async def test_cpu_time_counts_the_whole_tree_orphans_included(sandbox: Sandbox) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    # The burner is orphaned (the subshell that started it exits at once) and reparented to
    # the reaper, which reaps it, so its time is counted.
    script = f"({PYTHON} burn.py &); sleep 0.8"
    result = await sandbox.run(["sh", "-c", script], limits=FAST, files={"burn.py": burn})
    assert result.ok and result.cpu_ms >= 280


async def test_background_processes_end_with_the_program(sandbox: Sandbox) -> None:
    marker = "27.1828"
    result = await sandbox.run(["sh", "-c", f"(setsid sleep {marker} &); echo up"], limits=FAST)
    assert result.ok and text(result) == "up\n"
    assert with_marker(marker) == []


async def test_a_cancelled_run_leaves_nothing_running(sandbox: Sandbox) -> None:
    marker = "16.1803"
    task = asyncio.create_task(sandbox.run(["sleep", marker], limits=FAST))
    for _ in range(100):
        if with_marker(marker):
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not with_marker(marker):
            break
        await asyncio.sleep(0.02)
    assert with_marker(marker) == []


async def test_a_run_cancelled_while_it_starts_leaves_nothing_either(sandbox: Sandbox) -> None:
    for delay in (0.0, 0.005, 0.01, 0.02, 0.04):
        task = asyncio.create_task(sandbox.run(["sleep", "19.1"], limits=FAST))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert sandbox_processes() == []


async def test_concurrent_runs_have_process_budgets_of_their_own(sandbox: Sandbox) -> None:
    hog = (
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(3); os._exit(0)\n        n += 1\nexcept OSError:\n"
        "    print(n, flush=True)\ntime.sleep(1.5)"
    )
    limits = Limits(wall_s=8.0, processes=16)
    hogging = asyncio.create_task(sandbox.run([PYTHON, "-c", hog], limits=limits))
    await asyncio.sleep(0.8)  # the hog has used its whole budget by now
    spawn = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2 & done; wait; echo spawned"
    other = await sandbox.run(["sh", "-c", spawn], limits=limits)
    assert text(other) == "spawned\n" and other.ok
    hogged = await hogging
    assert int(text(hogged)) == 16 - 1  # the budget, less the hog itself (the reaper is extra)


async def test_many_runs_at_once_all_finish(sandbox: Sandbox) -> None:
    runs = [sandbox.run(["sh", "-c", f"echo {n}"], limits=FAST) for n in range(8)]
    results = await asyncio.gather(*runs)
    assert [text(r) for r in results] == [f"{n}\n" for n in range(8)]


async def test_a_host_directory_can_be_the_work_directory(sandbox: Sandbox, tmp_path: Path) -> None:
    # Under pytest's private temporary directory: the sandbox uid could not reach it by name.
    workdir = tmp_path / "repo"
    workdir.mkdir()
    (workdir / "input.txt").write_text("from the host\n")
    script = "cat input.txt extra.txt; echo made > out/result.txt"
    files = {"extra.txt": "from files\n", "out/.keep": ""}
    result = await sandbox.run(["sh", "-c", script], limits=FAST, workdir=workdir, files=files)
    assert text(result) == "from the host\nfrom files\n", result.stderr
    assert (workdir / "out" / "result.txt").read_text() == "made\n"


async def test_a_reachable_host_directory_is_bound_directly(sandbox: Sandbox) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="workdir-"))
    try:
        result = await sandbox.run(["sh", "-c", "echo hi > f; cat f"], limits=FAST, workdir=workdir)
        assert text(result) == "hi\n"
        assert (workdir / "f").read_text() == "hi\n"
    finally:
        shutil.rmtree(workdir)


async def test_binds_are_read_only(sandbox: Sandbox, tmp_path: Path) -> None:
    tool = tmp_path / "tool.txt"
    tool.write_text("tool contents\n")
    script = "cat /opt/tool/tool.txt; echo x > /opt/tool/tool.txt"
    binds = {"/opt/tool/tool.txt": tool}
    result = await sandbox.run(["sh", "-c", script], limits=FAST, binds=binds)
    assert text(result) == "tool contents\n"
    assert b"Read-only file system" in result.stderr
    assert tool.read_text() == "tool contents\n"
    with pytest.raises(ValueError, match="outside /work"):
        await sandbox.run(["true"], limits=FAST, binds={"/work/tool": tool})


async def test_a_step_may_have_a_channel_of_its_own_as_descriptor_3(sandbox: Sandbox) -> None:
    said = "import os\nos.write(3, b'verdict\\n')\nos.close(3)\nprint('ran')"
    probe = (
        "import os\ntry:\n    os.fstat(3)\n    print('open')\nexcept OSError:\n    print('none')"
    )
    first, second = await sandbox.run_steps(
        [Step([PYTHON, "-c", said], channel=True), Step([PYTHON, "-c", probe])], limits=FAST
    )
    assert (first.channel, text(first)) == (b"verdict\n", "ran\n")
    assert (second.channel, text(second)) == (b"", "none\n")  # no channel: no descriptor 3
    assert 0 < first.started_at < second.started_at


async def test_etc_is_the_sandboxs_own_and_read_only(sandbox: Sandbox) -> None:
    script = "id -un; grep -c . /etc/passwd; ls /etc/ld.so.cache; touch /etc/x 2>&1 || true"
    result = await sandbox.run(["sh", "-c", script], limits=FAST)
    user, entries, cache, refused = text(result).splitlines()
    assert (user, entries, cache) == ("sandbox", "3", "/etc/ld.so.cache")
    assert "Read-only file system" in refused
    again = await sandbox.run(["cat", "/etc/hosts"], limits=FAST)
    assert b"localhost" in again.stdout


async def test_check_proves_the_sandbox_once(sandbox: Sandbox) -> None:
    await sandbox.check()
    await sandbox.check()


async def test_without_bubblewrap_the_sandbox_is_unavailable_with_the_fix() -> None:
    missing = Sandbox(uid_base=UIDS, slots=SLOTS, bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        await missing.check()
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        await missing.run(["true"], limits=FAST)


async def test_a_sandbox_that_cannot_be_set_up_fails_closed() -> None:
    broken = Sandbox(uid_base=UIDS, slots=SLOTS, bwrap=shutil.which("false") or "/usr/bin/false")
    with pytest.raises(SandboxUnavailable, match="cannot set up the sandbox"):
        await broken.run(["echo", "never runs"], limits=FAST)


async def test_unsafe_mode_runs_limited_but_not_isolated_and_says_so() -> None:
    unsafe = Sandbox(unsafe=True, uid_base=UIDS, slots=SLOTS, bwrap="/nonexistent/bwrap")
    with capture_logs() as logs:
        await unsafe.check()
        result = await unsafe.run(
            ["sh", "-c", "cat main.txt; env | sort"], limits=FAST, files={"main.txt": "in\n"}
        )
    lines = text(result).splitlines()
    assert lines[0] == "in" and "LANG=C.UTF-8" in lines
    assert not any(line.startswith("SINGULARITY") for line in lines)
    assert [e["event"] for e in logs].count("sandbox_unsafe") == 2
    slow = await unsafe.run(["sleep", "30"], limits=Limits(wall_s=0.5))
    assert slow.timed_out and slow.wall_ms < 2500


def test_a_limit_too_large_for_a_float_is_refused_not_a_crash() -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: JSON's -1e400, which jsonb keeps as
    # an exact 401-digit integer, raised OverflowError, and the job was retried, not refused.
    message = "limits.cpu_s must be a number above 0 and at most 300"
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        limits_from_request({"cpu_s": -(10**400)})
    with pytest.raises(ValueError, match=r"^limits\.wall_s"):
        limits_from_request({"wall_s": 10**400})


async def test_a_leased_identity_is_no_other_runs_while_held(sandbox: Sandbox) -> None:
    async with sandbox.lease_identity() as first, sandbox.lease_identity() as second:
        if ROOT:
            assert first.dedicated and second.dedicated
            assert first.uid != second.uid and UIDS <= first.uid < UIDS + SLOTS
        else:
            assert (first.uid, first.dedicated) == (os.getuid(), False)
        result = await sandbox.run(["id", "-u"], limits=FAST)
        if ROOT:
            assert int(result.stdout) not in (first.uid, second.uid)
    async with sandbox.lease_identity() as again:
        assert again.uid == first.uid  # given back when the block ended


def reaper_heads() -> dict[str, tuple[list[str], list[int]]]:
    """Each reaper's command line start and the descriptors it needs: portable and native."""
    heads = {"portable": (commands.python_reaper(), [])}
    helper = native.helper()
    if helper is not None:
        heads["native"] = ([helper.path], [helper.fd])
    return heads


@pytest.mark.parametrize("kind", ["portable", "native"])
def test_the_reaper_outside_a_namespace_of_its_own_kills_nothing(kind: str) -> None:
    """Its last act kills every process it may signal: run anywhere but as a namespace's init,
    it refuses to start. Run as a sandbox uid, so that even a failure could reach no one else."""
    require_bwrap()
    heads = reaper_heads()
    if kind not in heads:
        pytest.skip("no C compiler here: workers use the portable reaper")
    head, needs = heads[kind]
    read, write = os.pipe()
    try:
        argv = commands.reaper_argv(
            head,
            [((-1, 1, 2), ["true"])],
            FAST,
            report=write,
            control=read,
            scope="namespace",
            nproc=False,
        )
        done = subprocess.run(
            argv,
            pass_fds=(read, write, *needs),
            capture_output=True,
            user=UIDS,
            group=UIDS,
            timeout=30,
        )
    finally:
        os.close(read)
        os.close(write)
    assert done.returncode == 125
    assert b"must be PID 1" in done.stderr
