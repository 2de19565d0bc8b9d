"""Several hosts on one machine: network namespaces on a private switch, a PostgreSQL server
on one of them, and platform processes on the others.

Each run builds its own switch namespace with a bridge in it, and one namespace per host with
a veth pair into that bridge. Nothing is added to the machine's own network (no address, no
route, no link in the root namespace), so two runs never collide even on the same subnet.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

__all__ = [
    "PG_SYSTEM_USER",
    "Host",
    "LogFile",
    "Network",
    "Postgres",
    "Process",
    "network",
    "platform_command",
    "require_netns",
]

SUBNET = "10.231.0"  # private to each run: the switch namespace is the run's own
PG_SYSTEM_USER = "pgserver"  # PostgreSQL refuses root; the embedded server's convention
_BRIDGE = "br0"
# Root's PATH may lack /usr/sbin (sudo, su without -): look there too.
IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")


def require_netns() -> None:
    """Skip without root and `ip netns`, unless SINGULARITY_REQUIRE_NETNS=1 (CI): then fail."""
    reason = _netns_missing()
    if reason is None:
        return
    if os.environ.get("SINGULARITY_REQUIRE_NETNS") == "1":
        pytest.fail(f"network namespaces are required (SINGULARITY_REQUIRE_NETNS=1): {reason}")
    pytest.skip(reason)


def _netns_missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if IP is None:
        return "ip is not installed (apt-get install iproute2)"
    probe = f"sgt{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    """One machine of the test network."""

    name: str
    namespace: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """`argv` run on this host."""
        assert IP is not None
        return [IP, "netns", "exec", self.namespace, *argv]


@dataclass
class Network:
    """Hosts on one switch; `cut` pulls a host's cable at the switch, `restore` plugs it back."""

    prefix: str
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list, init=False)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-switch"

    def __post_init__(self) -> None:
        _ip("netns", "add", self.switch)
        self._namespaces.append(self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", _BRIDGE, "type", "bridge")
        _ip("-n", self.switch, "link", "set", _BRIDGE, "up")

    def add(self, name: str) -> Host:
        host = Host(name, f"{self.prefix}-{name}", f"{SUBNET}.{len(self.hosts) + 1}")
        _ip("netns", "add", host.namespace)
        self._namespaces.append(host.namespace)
        # Both ends are born in their namespaces: nothing appears in the machine's own.
        _ip(
            "-n",
            self.switch,
            "link",
            "add",
            _port(host),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.namespace,
        )
        _ip("-n", self.switch, "link", "set", _port(host), "master", _BRIDGE, "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def cut(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", _port(host), "down")

    def restore(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", _port(host), "up")

    def reachable(self, source: Host, target: Host, port: int) -> bool:
        """Whether `source` can open a TCP connection to `port` on `target` (within 2 s)."""
        probe = f"exec 3<>/dev/tcp/{target.address}/{port}"
        done = subprocess.run(
            source.command("timeout", "2", "bash", "-c", probe), capture_output=True, timeout=30
        )
        return done.returncode == 0

    def close(self) -> None:
        """Kill whatever still runs in the namespaces, then delete them (and their links)."""
        for namespace in reversed(self._namespaces):
            for pid in _pids(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _ip("netns", "del", namespace, check=False)


def _port(host: Host) -> str:
    # Not a bare short word (`ip` takes abbreviations: "h" is "help"); 15 bytes at most.
    return f"p-{host.name}"[:15]


def _pids(namespace: str) -> list[int]:
    done = _ip("netns", "pids", namespace, check=False)
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


class LogFile:
    """A process's JSON log lines (SINGULARITY_LOG_FORMAT=json), read as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and (name is None or event.get("event") == name):
                    found.append(event)
        return found

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Process:
    """A long-running command on a host, its output in a file; stopped by `stop`."""

    def __init__(
        self,
        host: Host,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        self.host = host
        self.log = LogFile(log)
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                host.command(*argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal meant for pytest does not reach it
            )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the process and wait; SIGKILL if it does not exit in time."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(30)


def platform_command(*args: str) -> list[str]:
    """The `singularity` command, as this interpreter runs it."""
    return [sys.executable, "-m", "singularity", *args]


class Postgres:
    """pgserver's PostgreSQL 16 (with pgvector), its data in `root`, listening on one host's
    address, and on a Unix socket for the test's own look at it (an operator on that host)."""

    PORT = 5432

    def __init__(self, host: Host, root: Path, admin_password: str) -> None:
        self.host = host
        self.pgdata = root / "pgdata"
        self.admin_password = admin_password
        self.socket_dir: Path | None = None
        self._process: Process | None = None

    @property
    def socket_conninfo(self) -> str:
        return f"host={self.socket_dir} port={self.PORT} user=postgres"

    def start(self) -> None:
        # Short, whatever the test's path: a socket's name has room for about 107 bytes.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="sgt-pg-"))
        bin_dir = _pg_bin_dir()
        owner = _system_user()
        self.pgdata.mkdir(parents=True)
        _open_prefix(self.pgdata)
        os.chown(self.pgdata, owner.pw_uid, owner.pw_gid)
        os.chown(self.socket_dir, owner.pw_uid, owner.pw_gid)
        password_file = self.pgdata.parent / "admin-password"
        password_file.write_text(self.admin_password + "\n")
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
            ],
            check=True,
            capture_output=True,
            user=owner.pw_uid,
            group=owner.pw_gid,
            timeout=120,
        )
        password_file.unlink()
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 scram-sha-256\n")
        self._process = Process(
            self.host,
            [
                "setpriv",
                f"--reuid={owner.pw_uid}",
                f"--regid={owner.pw_gid}",
                "--init-groups",
                "--",
                str(bin_dir / "postgres"),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.PORT),
                "-c",
                f"listen_addresses={self.host.address}",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",  # a throwaway server: durability is not what is tested
            ],
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            log=self.pgdata.parent / "postgres.log",
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self._process is not None
            if not self._process.running:
                raise RuntimeError(f"postgres exited:\n{self._process.log.tail()}")
            try:
                psycopg.connect(self.socket_conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres did not start:\n{self._process.log.tail()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(signal.SIGINT, timeout=30)  # SIGINT: the fast shutdown
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def _pgserver() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver import _commands

    return pgserver, _commands


def _pg_bin_dir() -> Path:
    return Path(_pgserver()[1].POSTGRES_BIN_PATH)


def _system_user() -> pwd.struct_passwd:
    _pgserver()[0].utils.ensure_user_exists(PG_SYSTEM_USER)
    return pwd.getpwnam(PG_SYSTEM_USER)


def _open_prefix(path: Path) -> None:
    """Let the server's system user walk to `path` (pgserver's way, as the embedded one)."""
    _pgserver()[0].utils.ensure_prefix_permissions(path)


_RUN_NAMESPACE = re.compile(r"^sgt(\d+)-")


def _sweep_dead_runs() -> None:
    """Delete the namespaces of runs whose process is gone (killed before its teardown)."""
    listed = _ip("netns", "list", check=False).stdout.splitlines()
    for namespace in (line.split()[0] for line in listed if line.strip()):
        match = _RUN_NAMESPACE.match(namespace)
        if match and not psutil.pid_exists(int(match.group(1))):
            for pid in _pids(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _ip("netns", "del", namespace, check=False)


@contextlib.contextmanager
def network(prefix: str) -> Iterator[Network]:
    """A network that is gone afterwards, however the block ends. `prefix` is sgt<pid>."""
    _sweep_dead_runs()
    net: Network | None = None
    try:
        net = Network(prefix)
        yield net
    finally:
        if net is not None:
            net.close()
        else:
            _ip("netns", "del", f"{prefix}-switch", check=False)
