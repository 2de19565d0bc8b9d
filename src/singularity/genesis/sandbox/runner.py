"""The sandbox: runs one command in a fresh, isolated, limited environment and says how it ended.

A run is a bubblewrap sandbox: its own user, PID, network, mount, IPC, UTS and cgroup
namespaces (so no network at all, loopback included, and no view of the host's processes),
no capabilities, no new privileges (set-uid files do not elevate), a new session, and death
with the worker. The tree runs as an unprivileged uid (`identity`), under the reaper as PID 1
(`reaper`), with an empty environment but for PATH, HOME=/work, LANG and TMPDIR.

How the program's end is told apart from the sandbox's: the reaper writes a report once it
has started the program and another when the program is over. A run without the first line
never got as far as the program: bubblewrap failed to set up (its message is on stderr) and
the run raises SandboxUnavailable. With a report, the exit status and signal are the
program's own, exactly (no 128 + N guessing), bubblewrap's exit code is not used at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

from singularity.genesis.limits import MIB, Limits
from singularity.genesis.sandbox import command as commands
from singularity.genesis.sandbox import staging, sweep
from singularity.genesis.sandbox.command import PYTHON, WORK, Command
from singularity.genesis.sandbox.identity import (
    DEFAULT_SLOTS,
    DEFAULT_UID_BASE,
    Identity,
    UidPool,
)
from singularity.genesis.sandbox.pipes import Fds, Pipes
from singularity.genesis.sandbox.process import Child, Supervised
from singularity.genesis.sandbox.quota import Quota
from singularity.genesis.sandbox.result import RunResult, SandboxUnavailable
from singularity.genesis.sandbox.staging import Bind

__all__ = ["Sandbox"]

log = structlog.get_logger(__name__)

_USERNS_HINT = (
    "unprivileged user namespaces are disabled: enable them "
    "(sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000; on Ubuntu "
    "24.04 also kernel.apparmor_restrict_unprivileged_userns=0)"
)
_STAGE_HINT = "run the worker with CAP_SYS_ADMIN, or make every parent directory o+x"
_USERNS_SIGNS = ("No permissions to create", "Creating new namespace failed", "setting up uid map")


@dataclass(frozen=True)
class _Request:
    """One run, its inputs checked: what either launcher (sandboxed or unsafe) is given."""

    argv: Sequence[str]
    limits: Limits
    inputs: dict[PurePosixPath, bytes]
    stdin: bytes | None
    workdir: Path | None
    env: dict[str, str]
    mounts: list[Bind]
    quota: Quota | None  # what the run may add to `workdir`


class Sandbox:
    """Runs commands isolated by bubblewrap (or, `unsafe`, only limited: development only)."""

    def __init__(
        self,
        *,
        unsafe: bool = False,
        bwrap: str = "bwrap",
        uid_base: int = DEFAULT_UID_BASE,
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        self.unsafe = unsafe
        self._bwrap = bwrap
        self._uids = UidPool(uid_base, slots)
        self._checked = False

    @contextlib.asynccontextmanager
    async def lease_identity(self) -> AsyncIterator[Identity]:
        """The identity a run would have, held for the block (for work done as that uid).

        A root worker gets a uid of the range that no run holds meanwhile; any other worker
        gets its own uid (`dedicated` False).
        """
        async with self._uids.lease() as identity:
            yield identity

    async def check(self) -> None:
        """Prove that a sandbox can be set up here (once); SandboxUnavailable if not."""
        if self.unsafe:
            log.warning("sandbox_unsafe", reason="development mode: code runs without isolation")
            return
        if self._checked:
            return
        result = await self.run(["true"], limits=Limits(wall_s=20.0))
        if result.exit_code != 0:
            detail = result.stderr.decode(errors="replace").strip() or f"exit {result.exit_code}"
            raise SandboxUnavailable(f"the sandbox starts, but `true` fails in it: {detail}")
        self._checked = True

    async def run(
        self,
        argv: Sequence[str],
        *,
        limits: Limits,
        files: Mapping[str, str | bytes] | None = None,
        stdin: bytes | None = None,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        binds: Mapping[str, Path] | None = None,
        writable_binds: Mapping[str, Path] | None = None,
    ) -> RunResult:
        """Run `argv` in /work under `limits`; how it ended, output capped.

        `files` (relative paths) are written into /work first: a fresh tmpfs of `disk_mb`, or
        the host directory `workdir` bound read-write (it is handed over to the run's uid: the
        program may change anything in it; what it adds is watched, see `quota`). `binds` maps
        sandbox paths to host paths mounted read-only (tools such as ruff); `writable_binds`
        read-write, handed over to the run's uid as `workdir` is (not watched by the quota).
        ValueError (one line) for a file name, bind, command line, stdin or workdir that is not
        allowed; SandboxUnavailable when the sandbox cannot be set up (it fails closed).
        """
        if not argv:
            raise ValueError("argv must name a program")
        staging.checked_stdin(0 if stdin is None else len(stdin), limits.stdin_bytes)
        inputs = staging.checked_files(files, limits.disk_mb * MIB)
        extra = staging.checked_env(env)
        staging.checked_command(argv, extra)
        mounts = staging.checked_binds(binds)
        mounts += staging.checked_binds(writable_binds, writable=True)
        workdir = staging.checked_workdir(workdir)
        quota = None if workdir is None else await Quota.of(workdir, limits)
        request = _Request(argv, limits, inputs, stdin, workdir, extra, mounts, quota)
        async with self._uids.lease() as identity:
            launch = self._unsafe if self.unsafe else self._sandboxed
            outcome = await launch(request, identity)
        # What the program wrote after the last measure counts too.
        over = quota is not None and await asyncio.to_thread(quota.exceeded)
        if over and not outcome.disk_limited:
            outcome = dataclasses.replace(outcome, disk_limited=True)
        result = _result(outcome, limits)
        _log_run(argv, result, unsafe=self.unsafe)
        return result

    async def _sandboxed(self, request: _Request, identity: Identity) -> Supervised:
        bwrap = self._bwrap_path()
        _require_python()
        with contextlib.ExitStack() as stack:
            pipes = Pipes(stack, Fds(stack), status=True)
            fds = [pipes.fds.memfd(data) for data in request.inputs.values()]
            targets = [f"{WORK}/{path}" for path in request.inputs]
            for name, data in commands.etc_files(identity).items():
                fds.append(pipes.fds.memfd(data))
                targets.append(f"/etc/{name}")
            work = None
            if request.workdir is not None:
                await asyncio.to_thread(staging.hand_over, request.workdir, identity)
                work = Bind(request.workdir, WORK, writable=True)
            for bind in request.mounts:
                if bind.writable:
                    await asyncio.to_thread(staging.hand_over, bind.source, identity)
            prefix, user, work, mounts, scratch = commands.launcher(
                stack, identity, request.limits, work, request.mounts
            )
            args = commands.sandbox_args(
                bwrap,
                identity,
                request.limits,
                status_fd=pipes.status_w,
                work=work,
                inputs=list(zip(fds, targets, strict=True)),
                binds=mounts,
                scratch=scratch,
            )
            reaper = pipes.reaper(request.argv, request.limits, scope="namespace", nproc=True)
            env = commands.environment(WORK, "/tmp", request.env)
            command = Command([*prefix, *args, "--", *reaper], env, [*pipes.inherited, *fds], user)
            outcome = await _start(command, request, pipes, namespace=True)
        if not outcome.started and not outcome.stopped:
            raise SandboxUnavailable(_diagnosis(outcome.stderr))
        return outcome

    async def _unsafe(self, request: _Request, identity: Identity) -> Supervised:
        log.warning(
            "sandbox_unsafe", argv0=request.argv[0], reason="no isolation: development mode"
        )
        _require_python()
        with contextlib.ExitStack() as stack:
            root = request.workdir
            if root is None:
                root = Path(tempfile.mkdtemp(prefix="singularity-unsafe-"))
                stack.callback(shutil.rmtree, root, ignore_errors=True)
            staging.write_files(root, request.inputs)
            await asyncio.to_thread(staging.hand_over, root, identity)
            sources = {
                bind.target: str(bind.source) for bind in request.mounts
            }  # no mounts: host paths
            argv = [sources.get(word, word) for word in request.argv]
            pipes = Pipes(stack, Fds(stack), status=False)
            reaper = pipes.reaper(argv, request.limits, scope="group", nproc=identity.dedicated)
            env = commands.environment(str(root), str(root), request.env)
            user = identity.uid if identity.dedicated else None
            command = Command(reaper, env, pipes.inherited, user, cwd=str(root))
            outcome = await _start(command, request, pipes, namespace=False)
        if identity.dedicated:
            await sweep.sweep(sweep.of_uid(identity.uid), what="uid")
        return outcome

    def _bwrap_path(self) -> str:
        found = shutil.which(self._bwrap)  # on the worker's PATH, as any command would be
        if found is None:
            raise SandboxUnavailable(
                f"bubblewrap is not installed (no {self._bwrap!r} found): "
                "install bubblewrap: apt-get install bubblewrap"
            )
        return found


async def _start(
    command: Command, request: _Request, pipes: Pipes, *, namespace: bool
) -> Supervised:
    stdin = request.stdin
    stdin_fd = None if stdin is None else pipes.fds.memfd(stdin)
    try:
        child = Child.spawn(command, stdin_fd, control=pipes.control_w, namespace=namespace)
    except OSError as exc:
        raise SandboxUnavailable(f"cannot start {command.argv[0]}: {exc}") from exc
    # The host's copies of what the child inherited go, so that EOF means the child is gone.
    # The control pipe's write end stays with the host; Child closes it when the run is over.
    pipes.fds.close(*command.pass_fds, *([] if stdin_fd is None else [stdin_fd]))
    pipes.fds.release(pipes.control_w)
    return await child.supervise(
        wall_s=request.limits.wall_s,
        output_bytes=request.limits.output_bytes,
        report=pipes.report,
        status=pipes.status,
        guard=None if request.quota is None else request.quota.watch,
    )


def _result(outcome: Supervised, limits: Limits) -> RunResult:
    report = outcome.report
    if report is None:  # the reaper was killed before it could tell: the tree was killed too
        exit_code, signum, cpu_ms, rss = None, int(signal.SIGKILL), 0.0, 0
    else:
        exit_code, signum, cpu_ms, rss = (
            report.exit_code,
            report.signal,
            report.cpu_ms,
            report.max_rss_kb,
        )
    hard_cpu_ms = max(1, math.ceil(limits.cpu_s)) * 1000
    cpu_exceeded = signum == signal.SIGXCPU or (
        signum == signal.SIGKILL and not outcome.stopped and cpu_ms >= hard_cpu_ms
    )
    return RunResult(
        exit_code=exit_code,
        signal=signum,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        timed_out=outcome.timed_out,
        output_limited=outcome.output_limited,
        disk_limited=outcome.disk_limited,
        cpu_exceeded=cpu_exceeded,
        wall_ms=outcome.wall_ms,
        cpu_ms=cpu_ms,
        max_rss_kb=rss,
    )


def _diagnosis(stderr: bytes) -> str:
    text = stderr.decode(errors="replace").strip()
    first = text.splitlines()[0] if text else "no message"
    if any(sign in text for sign in _USERNS_SIGNS):
        return f"{_USERNS_HINT} ({first})"
    if first.startswith(("mount:", "unshare:")):
        return f"cannot stage a directory the sandbox uid may not enter ({first}): {_STAGE_HINT}"
    return f"bubblewrap cannot set up the sandbox: {first}"


def _require_python() -> None:
    if not os.access(PYTHON, os.X_OK):
        raise SandboxUnavailable(
            f"{PYTHON} is missing (the sandbox's first process runs on it): "
            "install it: apt-get install python3-minimal"
        )


def _log_run(argv: Sequence[str], result: RunResult, *, unsafe: bool) -> None:
    log.debug(
        "sandbox_run",
        argv0=argv[0],
        unsafe=unsafe,
        exit_code=result.exit_code,
        signal=result.signal,
        timed_out=result.timed_out,
        output_limited=result.output_limited,
        disk_limited=result.disk_limited,
        cpu_exceeded=result.cpu_exceeded,
        wall_ms=round(result.wall_ms, 1),
        cpu_ms=round(result.cpu_ms, 1),
        max_rss_kb=result.max_rss_kb,
    )
