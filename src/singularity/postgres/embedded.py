"""The embedded PostgreSQL server: pgserver's PostgreSQL 16 (with pgvector) in our data directory.

Every process that uses the server holds a lease (a file named by its pid). The server starts
with the first lease and stops when the last live lease is released, or on `db stop`. Leases of
processes that died without releasing are ignored, so a killed process never pins the server.
A server started by `pin()` (for `db url`, or an operator) runs until `db stop`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from singularity.errors import DatabaseUnavailable

__all__ = ["EmbeddedServer", "ServerInfo"]

log = structlog.get_logger(__name__)

_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver's convention
_START_TIMEOUT_S = 30
_SERVER_OPTIONS = (
    "-c listen_addresses='' -c max_connections=300 -c shared_buffers=128MB "
    "-c unix_socket_permissions=0770"
)


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
        self._run.mkdir(parents=True, exist_ok=True)
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
        system_user = self._prepare_directories()
        if not self.initialized:
            log.info("embedded_initdb", pgdata=str(self.pgdata))
            pgserver.initdb(
                ["--auth=trust", "--encoding=UTF8", "--no-locale", "-U", "postgres"],
                pgdata=self.pgdata,
                user=system_user,
            )
        socket_dir = _socket_dir(self.pgdata)
        try:
            pgserver.pg_ctl(
                [
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "-o",
                    f"{_SERVER_OPTIONS} -k {socket_dir}",
                    "-l",
                    str(self.pgdata / "log"),
                    "start",
                ],
                pgdata=self.pgdata,
                user=system_user,
                timeout=_START_TIMEOUT_S + 5,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
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

    def _prepare_directories(self) -> str | None:
        """Create pgdata; as root, hand it to an unprivileged system user as pgserver does."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return None
        import pwd

        from pgserver import utils

        utils.ensure_user_exists(_SYSTEM_USER)
        entry = pwd.getpwnam(_SYSTEM_USER)
        utils.ensure_prefix_permissions(self.pgdata)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return _SYSTEM_USER

    def _write_lease(self) -> None:
        self._leases.mkdir(parents=True, exist_ok=True)
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
        if _read_postmaster(self.pgdata) is None:
            return False
        pgserver = _pgserver()
        system_user = _SYSTEM_USER if os.geteuid() == 0 else None
        try:
            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=system_user)
        except subprocess.CalledProcessError:
            return _read_postmaster(self.pgdata) is None
        log.info("embedded_stopped", pgdata=str(self.pgdata))
        return True


def _pgserver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def _socket_dir(pgdata: Path) -> Path:
    """pgdata itself unless its path is too long for a Unix socket name (about 107 bytes)."""
    if len(str(pgdata / ".s.PGSQL.5432")) < 100:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    short = Path("/tmp") / f"singularity-{os.getuid()}-{digest}"
    short.mkdir(mode=0o777, exist_ok=True)
    short.chmod(0o777)
    return short


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
    return ServerInfo(pid=pid, socket_dir=Path(lines[4].strip()), port=int(lines[3]))


def _wait_ready(pgdata: Path) -> ServerInfo:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = _read_postmaster(pgdata)
        if info is not None:
            return info
        time.sleep(0.05)
    raise DatabaseUnavailable(f"the embedded PostgreSQL did not become ready; see {pgdata / 'log'}")
