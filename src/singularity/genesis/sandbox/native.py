"""The native helper: `reaper.c` built once per worker process with the host's C compiler.

Python's start alone (about 8 ms, 14 with the modules the portable reaper needs) was a third of
a sandboxed hello-world, and the staging chain of a root worker (unshare, sh, a mount per tmpfs,
setpriv, prlimit) was six more programs to start; the native helper is both, and starts in about
1 ms. It is kept in memory and reaches each run as a sealed memfd, executed as /proc/self/fd/N:
no file of it is left on the host, and no run can change it. Without a compiler, or where the
build does not run (a kernel that refuses to execute memfds), the portable `reaper.py` and the
util-linux chain are used, with the same arguments and report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import structlog

from singularity.genesis.sandbox.command import host_tool
from singularity.genesis.sandbox.staging import sealed_memfd

__all__ = ["Helper", "helper", "helper_if_built"]

log = structlog.get_logger(__name__)

_SOURCE = Path(__file__).with_name("reaper.c")
_FLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror")
_TIMEOUT_S = 60.0
_lock = threading.Lock()
_built: list[Helper | None] = []  # once tried: the helper, or None where it cannot be


class Helper:
    """The built helper: a read-only, sealed memfd the worker keeps open for its lifetime."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @property
    def path(self) -> str:
        """Its path in any process that inherited the descriptor (the sandbox's too)."""
        return f"/proc/self/fd/{self.fd}"


def helper_if_built() -> tuple[bool, Helper | None]:
    """Whether the build was tried, and its helper (None: the portable chain is used)."""
    return (True, _built[0]) if _built else (False, None)


def helper() -> Helper | None:
    """The helper, built on first use (blocking: call it in a thread); None where it cannot be."""
    with _lock:
        if not _built:
            _built.append(_build())
        return _built[0]


def _build() -> Helper | None:
    compiler = host_tool("cc") or host_tool("gcc") or host_tool("clang")
    if compiler is None:
        log.info("sandbox_helper_portable", reason="no C compiler (cc) on the worker")
        return None
    folder = Path(tempfile.mkdtemp(prefix="sandbox-helper-"))
    try:
        binary = folder / "reaper"
        # Linked statically where the C library's archive is installed: no loader, no shared
        # library to map in each of a run's two starts of it (about 0.2 ms a run).
        for linking in (("-static",), ()):
            done = subprocess.run(
                [compiler, *_FLAGS, *linking, "-o", str(binary), str(_SOURCE)],
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
            if done.returncode == 0:
                break
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip()[-500:]
            log.warning("sandbox_helper_portable", reason=f"the build failed: {reason}")
            return None
        found = Helper(_read_only(sealed_memfd(binary.read_bytes(), "sandbox-helper")))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("sandbox_helper_portable", reason=f"the build failed: {exc}")
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return found if _runs(found) else None


def _read_only(fd: int) -> int:
    # A descriptor open for writing makes the kernel refuse to execute the file (ETXTBSY).
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)


def _runs(found: Helper) -> bool:
    try:
        done = subprocess.run(
            [found.path, "probe"], pass_fds=[found.fd], capture_output=True, timeout=_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = str(exc)
    else:
        if done.stdout == b"reaper ok\n":
            return True
        reason = done.stderr.decode(errors="replace").strip()[-500:] or f"exit {done.returncode}"
    log.warning("sandbox_helper_portable", reason=f"the built helper does not run here: {reason}")
    os.close(found.fd)
    return False
