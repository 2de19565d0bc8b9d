"""Hostile programs against the real sandbox: each ends with its documented status, no trace.

What each attack ends with:
- fork bomb: held to its process budget, it spins until the wall clock ends it: TIMEOUT;
- memory bomb: the address-space limit makes allocation fail: MEMORY_LIMIT;
- CPU loop: SIGXCPU at the CPU limit: TIMEOUT; sleep loop: the wall clock: TIMEOUT;
- output flood: stopped at the cap, output truncated: OUTPUT_LIMIT;
- disk fill: the tmpfs is full (ENOSPC, as the program sees it): RUNTIME_ERROR; a file past the
  file-size limit kills its writer with SIGXFSZ: OUTPUT_LIMIT;
- network: there is none, loopback included (the host's PostgreSQL too): RUNTIME_ERROR;
- the host's environment, files, processes, set-uid programs, and writes outside /work: not
  there, not readable, not elevating, not landing on the host (the probes report and end OK).
After every test no process of a sandbox uid is left, nor any directory the sandbox made.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_support import SLOTS, UIDS, sandbox_processes
from singularity.genesis.jobs.execution import Execution, JobSpec, Status, execute
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox

if shutil.which("bwrap") is None:
    if os.environ.get("SINGULARITY_REQUIRE_SANDBOX") == "1":
        pytest.fail("bubblewrap is required (SINGULARITY_REQUIRE_SANDBOX=1) but missing")
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

LIMITS = Limits(wall_s=2.0, cpu_s=2.0, processes=32, memory_mb=256, disk_mb=8)
THIS_FILE = Path(__file__).resolve()
PROJECT = THIS_FILE.parents[2]
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


def on_host(path: str | Path) -> bool:
    return os.path.lexists(path)


def contents(path: Path) -> str:
    return path.read_text()


async def python(sandbox: Sandbox, code: str, limits: Limits = LIMITS) -> Execution:
    return await execute(JobSpec("python", code, limits=limits), sandbox)


async def bash(sandbox: Sandbox, code: str, limits: Limits = LIMITS) -> Execution:
    return await execute(JobSpec("bash", code, limits=limits), sandbox)


async def test_a_fork_bomb_is_held_to_its_budget_and_timed_out(sandbox: Sandbox) -> None:
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    started = time.monotonic()
    done = await python(sandbox, bomb)
    assert done.status is Status.TIMEOUT
    assert time.monotonic() - started < LIMITS.wall_s + 3
    # The classic one, kept alive by its main shell (alone, it would end with the shell).
    shell = await bash(sandbox, ":(){ :|:& };:\nsleep 30\n")
    assert shell.status is Status.TIMEOUT


async def test_a_memory_bomb_hits_the_memory_limit(sandbox: Sandbox) -> None:
    growing = await python(sandbox, "chunks = []\nwhile True:\n    chunks.append(b'x' * 10**7)\n")
    assert growing.status is Status.MEMORY_LIMIT and "MemoryError" in (growing.error or "")
    assert growing.max_rss_kb <= LIMITS.memory_mb * 1024
    huge = await python(sandbox, "block = bytearray(2**40)")
    assert huge.status is Status.MEMORY_LIMIT


async def test_a_cpu_loop_is_stopped_at_the_cpu_limit(sandbox: Sandbox) -> None:
    done = await python(sandbox, "while True:\n    pass\n", Limits(cpu_s=1.0, wall_s=10.0))
    assert done.status is Status.TIMEOUT and "CPU limit" in (done.error or "")
    assert done.wall_ms < 5000


async def test_a_sleep_loop_is_stopped_by_the_wall_clock(sandbox: Sandbox) -> None:
    done = await bash(sandbox, "while true; do sleep 1; done")
    assert done.status is Status.TIMEOUT and "wall-clock" in (done.error or "")
    assert LIMITS.wall_s * 1000 <= done.wall_ms < (LIMITS.wall_s + 2) * 1000


async def test_an_output_flood_is_cut_at_the_cap(sandbox: Sandbox) -> None:
    limits = Limits(wall_s=5.0, output_bytes=64 * 1024)
    done = await python(sandbox, "while True:\n    print('x' * 1000)\n", limits)
    assert done.status is Status.OUTPUT_LIMIT and done.truncated
    assert len(done.output) == 64 * 1024


async def test_filling_the_disk_ends_with_no_space_left(sandbox: Sandbox) -> None:
    for where in ("/work", "/tmp"):
        fill = (
            f"with open('{where}/fill', 'wb') as out:\n"
            "    while True:\n"
            "        out.write(bytes(2**20))\n"
        )
        limits = Limits(wall_s=5.0, disk_mb=8, file_size_mb=64)
        done = await python(sandbox, fill, limits)
        assert done.status is Status.RUNTIME_ERROR, done.error
        assert "No space left on device" in (done.error or "")
    assert not on_host("/tmp/fill") and not on_host("/work/fill")


async def test_a_file_past_the_file_size_limit_is_an_output_limit(sandbox: Sandbox) -> None:
    done = await bash(sandbox, "exec dd if=/dev/zero of=big bs=1M count=8", Limits(file_size_mb=1))
    assert done.status is Status.OUTPUT_LIMIT and "file-size" in (done.error or "")


async def test_there_is_no_network_not_even_to_the_hosts_loopback(sandbox: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        probe = (
            "import socket\n"
            f"for host, port in [('127.0.0.1', {port}), ('127.0.0.1', 5432), ('1.1.1.1', 53)]:\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=1).close()\n"
            "        print('CONNECTED', host, port)\n"
            "    except OSError as exc:\n"
            "        print('blocked', host, port, type(exc).__name__)\n"
            "print(sorted(name for _, name in socket.if_nameindex()))\n"
        )
        done = await python(sandbox, probe)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the host's listener
    assert done.status is Status.OK and "CONNECTED" not in done.output
    assert done.output.count("blocked") == 3 and "['lo']" in done.output
    postgres = await python(sandbox, "import socket\nsocket.create_connection(('127.0.0.1', 5432))")
    assert postgres.status is Status.RUNTIME_ERROR
    assert "ConnectionRefusedError" in (postgres.error or "")


async def test_the_hosts_environment_is_not_visible(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("GENESIS_TEST_SECRET", secret)
    probe = (
        "import os\n"
        "print(dict(os.environ))\n"
        f"for path in ['/proc/self/environ', '/proc/1/environ', '/proc/{os.getpid()}/environ']:\n"
        "    try:\n"
        "        print(path, open(path, 'rb').read())\n"
        "    except OSError as exc:\n"
        "        print(path, type(exc).__name__)\n"
    )
    done = await python(sandbox, probe)
    assert done.status is Status.OK
    assert secret not in done.output and "GENESIS_TEST_SECRET" not in done.output
    assert "/proc/1/environ PermissionError" in done.output  # the reaper is not dumpable
    assert f"/proc/{os.getpid()}/environ FileNotFoundError" in done.output


@pytest.fixture
def singularity_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SINGULARITY_HOME with a secret any host user could read, as the worker's own."""
    home = Path(tempfile.mkdtemp(prefix="genesis-home-", dir="/tmp"))
    home.chmod(0o755)
    (home / "secrets.env").write_text("TOKEN=do-not-leak\n")
    (home / "secrets.env").chmod(0o644)
    monkeypatch.setenv("SINGULARITY_HOME", str(home))
    yield home
    shutil.rmtree(home)


@pytest.fixture
def host_file() -> Iterator[Path]:
    """A host file anyone may read and write, in a directory anyone may enter."""
    target = Path(tempfile.mkdtemp(prefix="genesis-target-", dir="/tmp"))
    target.chmod(0o755)
    path = target / "host.txt"
    path.write_text("host data\n")
    path.chmod(0o666)
    yield path
    shutil.rmtree(target)


async def test_files_outside_the_work_directory_cannot_be_read(
    sandbox: Sandbox, singularity_home: Path
) -> None:
    paths = [
        "/etc/shadow",
        str(PROJECT / "pyproject.toml"),
        str(THIS_FILE),
        str(singularity_home / "secrets.env"),
        "/root",
        "/home",
        "/var/lib",
        "/run/postgresql",
    ]
    probe = (
        "import os\n"
        f"for path in {paths!r}:\n"
        "    print(path, os.path.exists(path))\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as exc:\n"
        "        print('unreadable', type(exc).__name__)\n"
    )
    done = await python(sandbox, probe)
    assert done.status is Status.OK
    assert done.output.count(" False\n") == len(paths)
    assert "do-not-leak" not in done.output and "[project]" not in done.output


async def test_a_symlink_to_a_host_file_leads_nowhere(sandbox: Sandbox, host_file: Path) -> None:
    probe = (
        "import os\n"
        f"os.symlink('{host_file}', 'link')\n"
        "os.symlink('/etc/shadow', 'shadow')\n"
        "for name in ['link', 'shadow']:\n"
        "    try:\n"
        "        print(open(name).read())\n"
        "    except OSError as exc:\n"
        "        print(name, type(exc).__name__)\n"
        "try:\n"
        "    open('link', 'w').write('overwritten')\n"
        "except OSError as exc:\n"
        "    print('write', type(exc).__name__)\n"
    )
    done = await python(sandbox, probe)
    assert done.status is Status.OK, done.error
    assert "host data" not in done.output and "shadow FileNotFoundError" in done.output
    assert contents(host_file) == "host data\n"


async def test_links_in_a_bound_work_directory_do_not_reach_the_host(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "planted").symlink_to(secret)
    script = (
        "cat planted; echo changed > planted; ln -s /etc/passwd passwd; ln -s /etc etc; echo done"
    )
    first = await sandbox.run(["sh", "-c", script], limits=LIMITS, workdir=workdir)
    assert b"host secret" not in first.stdout and first.stdout.endswith(b"done\n")
    assert secret.read_text() == "host secret\n"
    # The next run hands the directory over again: the links are changed, never followed.
    second = await sandbox.run(["true"], limits=LIMITS, workdir=workdir)
    assert second.ok
    assert os.stat("/etc/passwd").st_uid == 0 and os.stat("/etc").st_uid == 0
    assert secret.stat().st_uid == os.getuid()


async def test_set_uid_programs_do_not_elevate(sandbox: Sandbox, tmp_path: Path) -> None:
    script = "su -c id root </dev/null; passwd -S root; id -u"
    done = await bash(sandbox, script)
    assert done.output.strip().splitlines()[-1] != "0"
    if not ROOT:
        pytest.skip("a set-uid root copy needs root to make")
    copy = tmp_path / "id"
    shutil.copy("/usr/bin/id", copy)
    os.chown(copy, 0, 0)
    copy.chmod(0o4755)
    assert copy.stat().st_mode & stat.S_ISUID
    result = await sandbox.run(
        ["sh", "-c", "/opt/suid/id; /opt/suid/id -u"],
        limits=LIMITS,
        binds={"/opt/suid/id": copy},
    )
    lines = result.stdout.decode().splitlines()
    assert result.ok and "euid=0" not in lines[0] and lines[1] != "0"


async def test_writes_outside_the_work_directory_do_not_land_on_the_host(
    sandbox: Sandbox,
) -> None:
    marker = f"genesis-marker-{uuid.uuid4().hex}"
    targets = ["/usr", "/etc", "/", "/dev", "/tmp", "/var/tmp", str(PROJECT)]
    probe = (
        f"for where in {targets!r}:\n"
        "    try:\n"
        f"        open(where.rstrip('/') + '/{marker}', 'w').write('x')\n"
        "        print(where, 'written')\n"
        "    except OSError as exc:\n"
        "        print(where, type(exc).__name__)\n"
    )
    done = await python(sandbox, probe)
    assert done.status is Status.OK
    assert "/tmp written" in done.output  # the sandbox's own /tmp, a tmpfs
    for where in targets:
        assert not on_host(Path(where) / marker)


async def test_the_program_cannot_signal_the_host(sandbox: Sandbox) -> None:
    done = await bash(sandbox, f"kill -9 -1; kill -9 {os.getpid()}; kill -9 1; echo still")
    assert done.status is Status.OK and done.output == "still\n"


async def test_no_further_namespaces_or_privileges_can_be_had(sandbox: Sandbox) -> None:
    done = await bash(sandbox, "unshare -r id -u || echo refused; setpriv --reuid 0 id || echo no")
    assert done.status is Status.OK
    assert done.output.splitlines() == ["refused", "no"]
