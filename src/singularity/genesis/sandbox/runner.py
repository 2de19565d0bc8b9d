"""The sandbox: runs one command in a fresh, isolated, limited environment and says how it ended.

A run is a bubblewrap sandbox: its own user, PID, network, mount, IPC, UTS and cgroup
namespaces (so no network at all, loopback included, and no view of the host's processes),
no capabilities, no new privileges (set-uid files do not elevate), a new session, and death
with the worker. The tree runs as an unprivileged uid (`identity`), under the reaper as PID 1
(`reaper`), with an empty environment but for PATH, HOME=/work, LANG and TMPDIR.

A sandbox may run several steps one after another (a job's checker, then its program): the
first step that does not exit 0 is the last, and each has its own streams, wall clock, rlimits,
figures and result, as if it had a sandbox of its own; only /work and /tmp are shared, which
is why a step that runs the job's code must be the last. Setting a sandbox up is most of what
it costs, so one per job, not one per step.

How the program's end is told apart from the sandbox's: the reaper writes a report once it
has started a step and another when the step is over. A run without the first line never got
as far as a program: bubblewrap failed to set up (its message is on stderr) and the run raises
SandboxUnavailable. With a report, the exit status and signal are the program's own, exactly
(no 128 + N guessing), bubblewrap's exit code is not used at all.

PID 1 is the native helper (`native`, built from reaper.c) where the worker has a C compiler,
else the portable reaper.py; a root worker's staging is the helper's too, else util-linux's.
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
from singularity.genesis.sandbox import etc as etcs
from singularity.genesis.sandbox import native, staging, sweep
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
from singularity.genesis.sandbox.streams import StepSeen

__all__ = ["Sandbox", "Step"]

log = structlog.get_logger(__name__)

_USERNS_HINT = (
    "unprivileged user namespaces are disabled: enable them "
    "(sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000; on Ubuntu "
    "24.04 also kernel.apparmor_restrict_unprivileged_userns=0)"
)
_STAGE_HINT = "run the worker with CAP_SYS_ADMIN, or make every parent directory o+x"
_USERNS_SIGNS = ("No permissions to create", "Creating new namespace failed", "setting up uid map")


@dataclass(frozen=True)
class Step:
    """One program of a sandbox's steps, with its own standard input (None: empty).

    With `channel`, the program also gets a pipe as its descriptor 3, which only it holds
    (the reaper gives it to that step only): what it writes there before it closes it is the
    result's `channel`. A program that checks its input before it runs untrusted code says
    its verdict there, where that code cannot write once the descriptor is closed.
    """

    argv: Sequence[str]
    stdin: bytes | None = None
    channel: bool = False


@dataclass(frozen=True)
class _Request:
    """One run, its inputs checked: what either launcher (sandboxed or unsafe) is given."""

    steps: Sequence[Step]
    limits: Limits
    inputs: dict[PurePosixPath, bytes]
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
        native_helper: bool = True,
    ) -> None:
        self.unsafe = unsafe
        self._bwrap = bwrap
        self._native = native_helper  # False: always the portable reaper and staging
        self._uids = UidPool(uid_base, slots)
        self._checked = False
        self._bwrap_found: str | None = None

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
        results = await self.run_steps(
            [Step(argv, stdin)],
            limits=limits,
            files=files,
            workdir=workdir,
            env=env,
            binds=binds,
            writable_binds=writable_binds,
        )
        return results[0]

    async def run_steps(
        self,
        steps: Sequence[Step],
        *,
        limits: Limits,
        files: Mapping[str, str | bytes] | None = None,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        binds: Mapping[str, Path] | None = None,
        writable_binds: Mapping[str, Path] | None = None,
    ) -> list[RunResult]:
        """Run `steps` one after another in one sandbox, each under `limits`, as `run` does.

        The first step that does not exit 0 is the last; the result of each step that ran (at
        least one), in order. The steps share /work and /tmp: only the last may run code that
        later steps must not trust. Errors as `run`'s, for any step, before any step runs.
        """
        if not steps or not all(step.argv for step in steps):
            raise ValueError("argv must name a program")
        inputs = staging.checked_files(files, limits.disk_mb * MIB)
        extra = staging.checked_env(env)
        for step in steps:
            staging.checked_stdin(0 if step.stdin is None else len(step.stdin), limits.stdin_bytes)
            staging.checked_command(step.argv, extra)
        mounts = staging.checked_binds(binds)
        mounts += staging.checked_binds(writable_binds, writable=True)
        workdir = staging.checked_workdir(workdir)
        quota = None if workdir is None else await Quota.of(workdir, limits)
        request = _Request(steps, limits, inputs, workdir, extra, mounts, quota)
        async with self._uids.lease(keep=True) as identity:
            launch = self._unsafe if self.unsafe else self._sandboxed
            outcome = await launch(request, identity)
        # What the program wrote after the last measure counts too.
        over = quota is not None and await asyncio.to_thread(quota.exceeded)
        last = outcome.steps[-1]
        if over and not last.disk_limited:
            last.disk_limited = True
        results = [_result(seen, outcome, limits) for seen in outcome.steps]
        for step, result in zip(steps, results, strict=False):
            _log_run(step.argv, result, unsafe=self.unsafe)
        return results

    async def _helper(self) -> native.Helper | None:
        if not self._native:
            return None
        built, found = native.helper_if_built()
        return found if built else await asyncio.to_thread(native.helper)

    async def _sandboxed(self, request: _Request, identity: Identity) -> Supervised:
        bwrap = self._bwrap_path()
        helper = await self._helper()
        if helper is None:
            _require_python()
        etc_dir = etcs.ready(identity)
        if etc_dir is None:  # the first run of this uid, or the host's /etc changed
            commands.forget_made()  # its stage is looked at again too
            stage = commands.stage_of(identity) if identity.dedicated else None
            etc_dir = await asyncio.to_thread(etcs.prepare, identity, stage)
        with contextlib.ExitStack() as stack:
            pipes = Pipes(Fds(stack), status=True)
            fds = [pipes.fds.memfd(data) for data in request.inputs.values()]
            targets = [f"{WORK}/{path}" for path in request.inputs]
            work = None
            if request.workdir is not None:
                await asyncio.to_thread(staging.hand_over, request.workdir, identity)
                work = Bind(request.workdir, WORK, writable=True)
            for bind in request.mounts:
                if bind.writable:
                    await asyncio.to_thread(staging.hand_over, bind.source, identity)
            prefix, user, work, mounts, scratch = commands.launcher(
                stack, identity, request.limits, work, request.mounts, _path(helper)
            )
            args = commands.sandbox_args(
                bwrap,
                identity,
                request.limits,
                status_fd=pipes.status_w,
                etc=etc_dir,
                work=work,
                inputs=list(zip(fds, targets, strict=True)),
                binds=mounts,
                scratch=scratch,
            )
            reaper = self._reaper(pipes, request, helper, scope="namespace", nproc=True)
            env = commands.environment(WORK, "/tmp", request.env)
            inherited = [*pipes.inherited, *fds, *([] if helper is None else [helper.fd])]
            command = Command([*prefix, *args, "--", *reaper], env, inherited, user)
            command.stderr = pipes.report_w
            try:
                outcome = await _start(command, request, pipes, namespace=True)
            except SandboxUnavailable:
                self._forget()
                raise
        if not outcome.started and not outcome.stopped:
            self._forget()
            raise SandboxUnavailable(_diagnosis(outcome.setup_stderr))
        return outcome

    @staticmethod
    def _reaper(
        pipes: Pipes, request: _Request, helper: native.Helper | None, *, scope: str, nproc: bool
    ) -> list[str]:
        for step in request.steps:
            pipes.add_step(step.stdin, channel=step.channel)
        head = commands.python_reaper() if helper is None else [helper.path]
        argvs = [step.argv for step in request.steps]
        return pipes.reaper(head, argvs, request.limits, scope=scope, nproc=nproc)

    async def _unsafe(self, request: _Request, identity: Identity) -> Supervised:
        argv0 = request.steps[0].argv[0]
        log.warning("sandbox_unsafe", argv0=argv0, reason="no isolation: development mode")
        helper = await self._helper()
        if helper is None:
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
            steps = [
                Step([sources.get(word, word) for word in step.argv], step.stdin, step.channel)
                for step in request.steps
            ]
            pipes = Pipes(Fds(stack), status=False)
            reaper = self._reaper(
                pipes,
                dataclasses.replace(request, steps=steps),
                helper,
                scope="group",
                nproc=identity.dedicated,
            )
            env = commands.environment(str(root), str(root), request.env)
            user = identity.uid if identity.dedicated else None
            inherited = [*pipes.inherited, *([] if helper is None else [helper.fd])]
            command = Command(reaper, env, inherited, user, cwd=str(root), stderr=pipes.report_w)
            outcome = await _start(command, request, pipes, namespace=False)
        if identity.dedicated:
            await sweep.sweep(sweep.of_uid(identity.uid), what="uid")
        return outcome

    def _forget(self) -> None:
        """A run failed to set up: what was found or made once is looked at again next time."""
        self._bwrap_found = None
        commands.forget_made()

    def _bwrap_path(self) -> str:
        if self._bwrap_found is not None:
            return self._bwrap_found
        found = shutil.which(self._bwrap)  # on the worker's PATH, as any command would be
        if found is None:
            raise SandboxUnavailable(
                f"bubblewrap is not installed (no {self._bwrap!r} found): "
                "install bubblewrap: apt-get install bubblewrap"
            )
        self._bwrap_found = found  # looked up again once a run fails to set up
        return found


async def _start(
    command: Command, request: _Request, pipes: Pipes, *, namespace: bool
) -> Supervised:
    try:
        child = Child.spawn(command, control=pipes.control_w, namespace=namespace)
    except OSError as exc:
        raise SandboxUnavailable(f"cannot start {command.argv[0]}: {exc}") from exc
    # The host's copies of what the child inherited go, so that EOF means the child is gone.
    # The control pipe's write end stays with the host; Child closes it when the run is over.
    pipes.fds.close(*command.pass_fds, pipes.report_w)
    pipes.fds.release(pipes.control_w)
    outcome = await child.supervise(
        wall_s=request.limits.wall_s,
        output_bytes=request.limits.output_bytes,
        report=pipes.report,
        outputs=pipes.outputs,
        guard=None if request.quota is None else request.quota.watch,
    )
    for index, seen in enumerate(outcome.steps):
        seen.said = pipes.said(index)
    return outcome


def _path(helper: native.Helper | None) -> str | None:
    return None if helper is None else helper.path


def _result(seen: StepSeen, outcome: Supervised, limits: Limits) -> RunResult:
    report = seen.report
    if report is None:  # the reaper was killed before it could tell: the tree was killed too
        exit_code, signum, cpu_ms, rss = None, int(signal.SIGKILL), 0.0, 0
        stopped = outcome.stopped
    else:
        exit_code, signum = report.exit_code, report.signal
        cpu_ms, rss, stopped = report.cpu_ms, report.max_rss_kb, report.stopped
    hard_cpu_ms = max(1, math.ceil(limits.cpu_s)) * 1000
    cpu_exceeded = signum == signal.SIGXCPU or (
        signum == signal.SIGKILL and not stopped and cpu_ms >= hard_cpu_ms
    )
    limited = seen.output_limited or seen.disk_limited
    return RunResult(
        exit_code=exit_code,
        signal=signum,
        stdout=bytes(seen.stdout.data),
        stderr=bytes(seen.stderr.data),
        stdout_truncated=seen.stdout.truncated,
        stderr_truncated=seen.stderr.truncated,
        timed_out=seen.timed_out and not limited,
        output_limited=seen.output_limited,
        disk_limited=seen.disk_limited,
        cpu_exceeded=cpu_exceeded,
        wall_ms=seen.wall_ms,
        cpu_ms=cpu_ms,
        max_rss_kb=rss,
        channel=seen.said,
        started_at=seen.started_at or 0.0,
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
