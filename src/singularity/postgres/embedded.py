"""The embedded PostgreSQL server: pgserver's PostgreSQL 16 (with pgvector) in our data directory.

Every process that uses the server holds a lease (a file named by its pid). The server starts
with the first lease and stops when the last live lease is released, or on `db stop`. Leases of
processes that died without releasing are ignored, so a killed process never pins the server.
A server started by `pin()` (for `db url`, or an operator) runs until `db stop`.

Run as root, the server runs as the unprivileged `pgserver` user with that user's own group.
Its programs are started inside the data directory (the working directory is set before the
user is switched) and name it `/proc/self/cwd`: the kernel follows that link without checking
the path leading to it, so the home and every directory above it stay private (0700) and no
directory outside the home is ever chmod-ed for the server's sake. The server listens on no TCP
address; its socket is in a directory only its user can enter (`socket_dir`), which is what
keeps other local users out, since local logins are trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from singularity.errors import DatabaseUnavailable
from singularity.postgres.socket_dir import make_socket_dir, remove_socket_dir
from singularity.private import DIR_MODE, private_dir

__all__ = ["EmbeddedServer", "ServerInfo"]

log = structlog.get_logger(__name__)

_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver's convention
_START_TIMEOUT_S = 30
_HERE = Path("/proc/self/cwd")  # the data directory, as the server's own programs reach it
# No TCP at all (the command line wins over ALTER SYSTEM); the socket for its owner alone.
_SERVER_OPTIONS = (
    "-c listen_addresses='' -c max_connections=300 -c shared_buffers=128MB "
    "-c unix_socket_permissions=0700"
)
# Local logins are trusted (the socket's directory keeps others out); over TCP, should anyone
# ever open it, only with a password, and the service roles of the embedded server have none.
_INITDB_OPTIONS = [
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--encoding=UTF8",
    "--no-locale",
    "-U",
    "postgres",
]


@dataclass(frozen=True)
class _ServerUser:
    """Who runs the server's programs: this process's user, or (as root) `pgserver`."""

    uid: int | None = None
    gid: int | None = None

    @property
    def owner(self) -> tuple[int, int] | None:
        return None if self.uid is None or self.gid is None else (self.uid, self.gid)

    def data(self, pgdata: Path) -> Path:
        """The data directory as the server's programs name it."""
        return pgdata if self.uid is None else _HERE

    def run(self, pgdata: Path) -> dict[str, object]:
        """subprocess arguments: in the data directory, files private, no group of root's."""
        kwargs: dict[str, object] = {"cwd": pgdata, "umask": 0o077}
        if self.uid is not None:
            kwargs.update(user=self.uid, group=self.gid, extra_groups=[])
        return kwargs


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server listens."""

    pid: int
    socket_dir: Path
    port: int


class EmbeddedServer:
    """Starts, shares and stops one PostgreSQL server in `home/pgdata`."""

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser().resolve()
        self.pgdata = self.home / "pgdata"
        self._run = self.home / "run"
        self._leases = self._run / "leases"
        self._pin = self._run / "pinned"
        self._held = False

    # -- public API ----------------------------------------------------------------------

    def acquire(self) -> ServerInfo:
        """Start the server if needed and hold a lease on it for this process."""
        with self._lock():
            info = self._ensure_running()
            self._write_lease()
            self._held = True
            return info

    def release(self) -> bool:
        """Drop this process's lease; stop the server if no live lease remains. True if stopped."""
        if not self._held:
            return False
        with self._lock():
            self._held = False
            with contextlib.suppress(FileNotFoundError):
                (self._leases / str(os.getpid())).unlink()
            if self._live_leases() or self._pin.exists():
                return False
            return self._stop()

    def pin(self) -> ServerInfo:
        """Start the server (if needed) and keep it running until `stop()`."""
        with self._lock():
            info = self._ensure_running()
            self._pin.touch()
            return info

    def stop(self) -> list[int]:
        """Stop the server now; returns the pids of other processes that were still using it."""
        with self._lock():
            others = [pid for pid in self._live_leases() if pid != os.getpid()]
            with contextlib.suppress(FileNotFoundError):
                self._pin.unlink()
            for lease in self._leases.glob("*") if self._leases.exists() else []:
                lease.unlink(missing_ok=True)
            self._held = False
            self._stop()
            return others

    def info(self) -> ServerInfo | None:
        """The running server, or None."""
        return _read_postmaster(self.pgdata)

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def users(self) -> list[int]:
        """Pids of live processes holding a lease."""
        return self._live_leases()

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        private_dir(self._run, within=self.home)
        with (self._run / "server.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _ensure_running(self) -> ServerInfo:
        info = _read_postmaster(self.pgdata)
        if info is not None:
            return info
        started = time.monotonic()
        pgserver = _pgserver()
        user = _server_user()
        self._prepare_directories(user)
        data, run = user.data(self.pgdata), user.run(self.pgdata)
        if not self.initialized:
            log.info("embedded_initdb", pgdata=str(self.pgdata))
            pgserver.initdb(_INITDB_OPTIONS, pgdata=data, **run)
        socket_dir = make_socket_dir(self.pgdata, user.owner)
        socket_arg = data if socket_dir == self.pgdata else socket_dir
        try:
            pgserver.pg_ctl(
                [
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "-o",
                    f"{_SERVER_OPTIONS} -k {shlex.quote(str(socket_arg))}",
                    "-l",
                    str(data / "log"),
                    "start",
                ],
                pgdata=data,
                timeout=_START_TIMEOUT_S + 5,
                **run,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            remove_socket_dir(socket_dir, self.pgdata)
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL did not start ({exc}); its log is {self.pgdata / 'log'}"
            ) from None
        info = _wait_ready(self.pgdata)
        log.info(
            "embedded_started",
            pgdata=str(self.pgdata),
            socket=str(info.socket_dir),
            seconds=round(time.monotonic() - started, 2),
        )
        return info

    def _prepare_directories(self, user: _ServerUser) -> None:
        """The home private to us, and pgdata private to the server's user."""
        private_dir(self.home)
        with contextlib.suppress(FileExistsError):
            self.pgdata.mkdir(mode=DIR_MODE)
        if user.owner is not None:
            os.lchown(self.pgdata, *user.owner)

    def _write_lease(self) -> None:
        private_dir(self._leases, within=self.home)
        me = psutil.Process()
        lease = {"pid": me.pid, "created": me.create_time()}
        (self._leases / str(me.pid)).write_text(json.dumps(lease))

    def _live_leases(self) -> list[int]:
        if not self._leases.exists():
            return []
        live = []
        for path in self._leases.iterdir():
            try:
                lease = json.loads(path.read_text())
                process = psutil.Process(lease["pid"])
                alive = abs(process.create_time() - lease["created"]) < 1.0
            except (ValueError, KeyError, psutil.Error, OSError):
                alive = False
            if alive and process.status() != psutil.STATUS_ZOMBIE:
                live.append(lease["pid"])
            else:
                path.unlink(missing_ok=True)
        return sorted(live)

    def _stop(self) -> bool:
        info = _read_postmaster(self.pgdata)
        if info is None:
            return False
        pgserver = _pgserver()
        user = _server_user()
        try:
            pgserver.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=user.data(self.pgdata), **user.run(self.pgdata)
            )
        except subprocess.CalledProcessError:
            return _read_postmaster(self.pgdata) is None
        remove_socket_dir(info.socket_dir, self.pgdata)
        log.info("embedded_stopped", pgdata=str(self.pgdata))
        return True


def _pgserver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def _server_user() -> _ServerUser:
    """PostgreSQL refuses to run as root: as root, use (and create) the `pgserver` user."""
    if os.geteuid() != 0:
        return _ServerUser()
    import pwd

    try:
        entry = pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        # A system account with a group of its own, no home and no login shell.
        command = ["useradd", "--system", "--user-group", "--no-create-home"]
        command += ["--shell", "/usr/sbin/nologin", _SYSTEM_USER]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise DatabaseUnavailable(
                f"cannot create the user {_SYSTEM_USER!r} the embedded PostgreSQL runs as: "
                + (result.stderr.strip().splitlines() or ["useradd failed"])[-1]
            ) from None
        entry = pwd.getpwnam(_SYSTEM_USER)
    if entry.pw_gid == 0:
        raise DatabaseUnavailable(
            f"the user {_SYSTEM_USER!r} has root's group as its own; give it a group of its own"
        )
    return _ServerUser(entry.pw_uid, entry.pw_gid)


def _read_postmaster(pgdata: Path) -> ServerInfo | None:
    """Parse postmaster.pid; None unless the postmaster is alive and ready."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    pid = int(lines[0])
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    socket_dir = Path(lines[4].strip())
    if socket_dir == _HERE:  # started inside the data directory (see the module's docstring)
        socket_dir = pgdata
    return ServerInfo(pid=pid, socket_dir=socket_dir, port=int(lines[3]))


def _wait_ready(pgdata: Path) -> ServerInfo:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = _read_postmaster(pgdata)
        if info is not None:
            return info
        time.sleep(0.05)
    raise DatabaseUnavailable(f"the embedded PostgreSQL did not become ready; see {pgdata / 'log'}")
