"""PostgreSQL's client programs (pg_dump, psql): finding a pair that suits a server, running them.

The embedded server is dumped with the programs pgserver ships next to it. For a configured
server, pg_dump must be at least the server's major version (an older one refuses to dump it);
the closest such version is preferred, since a newer pg_dump may write SQL that only newer
servers accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from singularity.errors import SingularityError
from singularity.postgres.endpoint import Endpoint

__all__ = ["ClientTools", "ToolFailed", "ToolsMissing", "find_tools", "run_tool"]

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_APPLICATION = "singularity-backup"


class ToolsMissing(SingularityError):
    """No suitable pg_dump/psql is installed; the message names what to install."""


class ToolFailed(SingularityError):
    """pg_dump or psql exited with an error; the message is its last line."""


@dataclass(frozen=True)
class ClientTools:
    """A pg_dump and a psql of one PostgreSQL version, from one directory."""

    bin_dir: Path
    version: str
    major: int

    @property
    def pg_dump(self) -> Path:
        return self.bin_dir / "pg_dump"

    @property
    def psql(self) -> Path:
        return self.bin_dir / "psql"


def find_tools(server_major: int, *, embedded: bool) -> ClientTools:
    """The client programs to use with a server of this major version."""
    candidates = [tools for tools in map(_probe, _search_dirs(embedded)) if tools is not None]
    suitable = [t for t in candidates if t.major >= server_major]
    if suitable:
        return min(suitable, key=lambda t: t.major)  # min() keeps the first of equals
    found = ", ".join(f"{t.version} in {t.bin_dir}" for t in candidates)
    raise ToolsMissing(
        f"backups of this PostgreSQL {server_major} server need pg_dump and psql "
        f"{server_major} or newer"
        + (f" (found only {found})" if found else " (none found on PATH or in /usr/lib/postgresql)")
        + f": install them, e.g. `apt install postgresql-client-{server_major}` on Debian/Ubuntu "
        "(from apt.postgresql.org), or put their bin directory first on PATH"
    )


def _search_dirs(embedded: bool) -> Iterator[Path]:
    bundled = _pgserver_bin()
    if embedded and bundled is not None:
        yield bundled
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry)
    if _DEBIAN_ROOT.is_dir():
        versions = [p for p in _DEBIAN_ROOT.iterdir() if p.name.isdigit()]
        for version in sorted(versions, key=lambda p: int(p.name), reverse=True):
            yield version / "bin"
    if bundled is not None:
        yield bundled


def _pgserver_bin() -> Path | None:
    """pgserver's bundled PostgreSQL binaries (found without importing the package)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if path.is_dir() else None


def _probe(directory: Path) -> ClientTools | None:
    return _probe_resolved(str(directory.resolve()))


@functools.cache
def _probe_resolved(directory: str) -> ClientTools | None:
    path = Path(directory)
    if not all(os.access(path / name, os.X_OK) for name in ("pg_dump", "psql")):
        return None
    try:
        result = subprocess.run(
            [str(path / "pg_dump"), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or match is None:
        return None
    version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return ClientTools(bin_dir=path, version=version, major=int(match.group(1)))


def _connection_args(endpoint: Endpoint) -> tuple[list[str], dict[str, str]]:
    """`--dbname=<conninfo>` without the password, and the environment that carries it."""
    conninfo = endpoint.as_user(endpoint.user, None).conninfo(application_name=_APPLICATION)
    env = {"PGCONNECT_TIMEOUT": "10"}
    if endpoint.password:
        env["PGPASSWORD"] = endpoint.password
    return [f"--dbname={conninfo}"], env


async def run_tool(program: Path, args: Sequence[str], endpoint: Endpoint) -> None:
    """Run pg_dump or psql against `endpoint`; ToolFailed with its last error line if it fails."""
    connect, extra_env = _connection_args(endpoint)
    process = await asyncio.create_subprocess_exec(
        str(program),
        *args,
        *connect,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **extra_env},
        umask=0o077,  # a dump holds every table: readable by its owner alone
    )
    try:
        _, stderr = await process.communicate()
    except BaseException:
        # Cancelled (the service is stopping): never leave a pg_dump running behind us.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        reason = _first_error(lines) or f"exit status {process.returncode}"
        raise ToolFailed(f"{program.name} failed on {endpoint.dbname}: {reason}")


def _first_error(lines: list[str]) -> str | None:
    """The line that says what went wrong (psql's ON_ERROR_STOP ends on a generic one)."""
    for line in lines:
        if "error:" in line.lower() or "fatal:" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else None
