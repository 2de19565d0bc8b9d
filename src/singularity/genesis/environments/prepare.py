"""Preparing a repository's environment: its setup step run once, in the sandbox, through the
registry proxy, and the result cached as a read-only layer that later test runs mount at /env.

The setup run: the repository copied to a scratch directory bound at /work, the layer being
built bound read-write at /env (a directory inside that scratch copy, so the run's quota bounds
the layer too), the proxy's socket and the host's registry settings bound read-only, and the
step run by `/bin/sh -e` under the forwarder. A later test run gets /env read-only, PATH with
the layer's tools first, and no network at all (the sandbox has none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from singularity.errors import SingularityError
from singularity.genesis.environments import network
from singularity.genesis.environments.cache import EnvironmentCache, host_platform, layer_key
from singularity.genesis.environments.detect import LAYER, VENV, SetupStep, input_digests, step_for
from singularity.genesis.environments.lock import LayerLock
from singularity.genesis.environments.proxy import RegistryProxy
from singularity.genesis.limits import MIB, Limits
from singularity.genesis.sandbox import SANDBOX_PATH, RunResult, Sandbox
from singularity.genesis.workspaces.workspace import copy_tree, remove_workspace

__all__ = [
    "SETUP_LIMITS",
    "Prepared",
    "SetupFailed",
    "SetupOutput",
    "nothing_installed",
    "prepare",
]

log = structlog.get_logger(__name__)

# A setup step downloads and builds: far more than a test run may use.
SETUP_LIMITS = Limits(
    cpu_s=300.0,
    memory_mb=4096,
    wall_s=600.0,
    processes=256,
    file_size_mb=512,
    open_files=4096,
    output_bytes=4 * MIB,
    disk_mb=2048,
)
TAIL_BYTES = 4096  # of each stream, in a report
_ENV_DIR = ".singularity-env"  # the layer under construction, inside the scratch copy
_NODE_MODULES = f"{LAYER}/node_modules"


@dataclass(frozen=True)
class SetupOutput:
    """How a setup run ended, with the last part of each stream."""

    exit_code: int | None
    signal: int | None
    limit: str | None  # the limit that stopped it: "time", "disk" or "output"
    stdout_tail: str
    stderr_tail: str
    wall_ms: float

    @classmethod
    def of(cls, result: RunResult) -> SetupOutput:
        def tail(data: bytes) -> str:
            return data[-TAIL_BYTES:].decode(errors="replace")

        limits = {"time": result.timed_out, "disk": result.disk_limited}
        limits["output"] = result.output_limited
        limit = next((name for name, hit in limits.items() if hit), None)
        return cls(
            result.exit_code,
            result.signal,
            limit,
            tail(result.stdout),
            tail(result.stderr),
            result.wall_ms,
        )

    def summary(self) -> str:
        """One line: how it ended, and the last line it wrote to stderr (else stdout)."""
        if self.limit is not None:
            ended = f"went past its {self.limit} limit"
        elif self.signal is not None:
            ended = f"was killed by signal {self.signal}"
        else:
            ended = f"exited with {self.exit_code}"
        last = (self.stderr_tail.strip() or self.stdout_tail.strip()).splitlines()[-1:]
        return f"the setup step {ended}" + (f": {last[0][:300]}" if last else "")


class SetupFailed(SingularityError):
    """The setup step failed; nothing was cached. `output` has its exit and its last words."""

    def __init__(self, step: SetupStep, output: SetupOutput) -> None:
        super().__init__(output.summary())
        self.step = step
        self.output = output


@dataclass
class Prepared:
    """A repository's environment, ready for test runs; hold it (a context) while they run.

    Pass `binds` and `env` to `Sandbox.run` for every test run of the repository.
    """

    step: SetupStep | None  # None: the repository needs nothing installed
    layer: Path | None
    key: str | None
    cached: bool  # found in the cache: no setup run happened now
    output: SetupOutput | None  # the setup run's, when one happened now
    _lock: LayerLock | None = field(default=None, repr=False)

    @property
    def binds(self) -> dict[str, Path]:
        """Read-only binds of a test run: the layer at /env."""
        return {} if self.layer is None else {LAYER: self.layer}

    @property
    def env(self) -> dict[str, str]:
        """Variables of a test run: the layer's tools first on PATH, Node's modules found."""
        if self.layer is None:
            return {}
        found: dict[str, str] = {}
        path = [SANDBOX_PATH]
        if (self.layer / "node_modules").is_dir():
            path.insert(0, f"{_NODE_MODULES}/.bin")
            found["NODE_PATH"] = _NODE_MODULES
        if (self.layer / "venv").is_dir():
            path.insert(0, f"{VENV}/bin")
            found["VIRTUAL_ENV"] = VENV
        return {"PATH": ":".join(path), **found}

    @property
    def links(self) -> dict[str, str]:
        """Links a test run's work directory may hold (name: sandbox target), for runtimes that
        look only beside the code (Node's ES modules ignore NODE_PATH)."""
        if self.layer is None or not (self.layer / "node_modules").is_dir():
            return {}
        return {"node_modules": _NODE_MODULES}

    def link_into(self, tree: Path) -> None:
        """Put `links` into a run's work directory, where it has no entry of that name."""
        for name, target in self.links.items():
            if not os.path.lexists(tree / name):
                os.symlink(target, tree / name)

    def described(self) -> dict[str, Any]:
        """What a result says of this environment (see `described`)."""
        return described(self.step, self.cached, self.output)

    def release(self) -> None:
        """Let the cache evict the layer again (no test run may use it after this)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Prepared:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def described(
    step: SetupStep | None, cached: bool | None, output: SetupOutput | None
) -> dict[str, Any]:
    """What an experiment's or a job's result says of a tree's environment: the step, where it
    came from, its script, whether the layer was cached, and how the setup run ended."""
    return {
        "step": None if step is None else step.description,
        "origin": None if step is None else step.origin,
        "script": None if step is None else step.script,
        "cached": cached,
        "setup": None if output is None else dataclasses.asdict(output),
    }


def nothing_installed() -> Prepared:
    """The environment of a run that installs nothing."""
    return Prepared(None, None, None, cached=True, output=None)


async def prepare(
    sandbox: Sandbox,
    source: Path,
    *,
    step: str | SetupStep | None = None,
    cache: EnvironmentCache,
    proxy: RegistryProxy,
    limits: Limits = SETUP_LIMITS,
) -> Prepared:
    """The environment of the repository at `source`: from the cache, or built now.

    `step` overrides the repository's own (declared or recognised). SetupFailed when the step
    fails (nothing is cached); ValueError (one line) for a bad declaration;
    SandboxUnavailable as `Sandbox.run` raises it.
    """
    if sandbox.unsafe:
        raise SingularityError("environments need the bubblewrap sandbox (not the unsafe mode)")
    chosen = await asyncio.to_thread(step_for, source, step)
    if chosen is None:
        return nothing_installed()
    digests = await asyncio.to_thread(input_digests, source)
    key = layer_key(chosen, digests, await asyncio.to_thread(host_platform))
    lock = await asyncio.to_thread(cache.lock, key)
    try:
        return await _prepared(sandbox, source, chosen, key, cache, proxy, limits, lock)
    except BaseException:
        lock.close()
        raise


async def _prepared(
    sandbox: Sandbox,
    source: Path,
    step: SetupStep,
    key: str,
    cache: EnvironmentCache,
    proxy: RegistryProxy,
    limits: Limits,
    lock: LayerLock,
) -> Prepared:
    # Held shared from here on, the layer cannot be removed under the runs (removal never
    # waits for the lock: it skips a layer in use). Builders take turns on a lock of their own,
    # so one waiting to build holds nothing that the one building needs.
    await lock.shared()
    output = None
    if not cache.has(key):
        builders = await asyncio.to_thread(cache.build_lock, key)
        try:
            await builders.exclusive()
            if not cache.has(key):  # no other worker built it while this one waited
                output = await _build(sandbox, source, step, key, cache, proxy, limits)
        finally:
            builders.close()
    if output is None:
        await asyncio.to_thread(cache.record_use, key, source.name)
    else:  # the build recorded its own first use
        await asyncio.to_thread(cache.evict, keep=key)
    log.info("environment_ready", key=key, cached=output is None, step=step.description)
    return Prepared(step, cache.layer(key), key, output is None, output, lock)


async def _build(
    sandbox: Sandbox,
    source: Path,
    step: SetupStep,
    key: str,
    cache: EnvironmentCache,
    proxy: RegistryProxy,
    limits: Limits,
) -> SetupOutput:
    build = await asyncio.to_thread(cache.new_build, key)
    try:
        work = build / "work"
        await asyncio.to_thread(copy_tree, source, work, max_bytes=limits.disk_mb * MIB)
        env_dir = work / _ENV_DIR
        await asyncio.to_thread(remove_workspace, env_dir)  # a repository's own is not ours
        env_dir.mkdir(mode=0o755)
        before = os.lstat(env_dir)
        result = await sandbox.run(
            network.forwarded(["/bin/sh", "-ec", step.script]),
            limits=limits,
            workdir=work,
            env=network.setup_env(proxy.registries),
            binds=network.setup_binds(proxy.registries, proxy.socket_path),
            writable_binds={LAYER: env_dir},
        )
        output = SetupOutput.of(result)
        if not result.ok:
            log.info("environment_setup_failed", key=key, summary=output.summary())
            raise SetupFailed(step, output)
        built = _moved_out(env_dir, before, build)
        await asyncio.to_thread(cache.commit, key, built, step, source.name)
        return output
    finally:
        await asyncio.to_thread(remove_workspace, build)


def _moved_out(env_dir: Path, before: os.stat_result, build: Path) -> Path:
    """The layer directory, moved out of the scratch copy: the same directory the run was given,
    never something the step put in its place (a link to a host path, say)."""
    after = os.lstat(env_dir)
    same = (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    if not same or not stat.S_ISDIR(after.st_mode):
        raise SingularityError("the setup step replaced its /env directory; nothing was cached")
    # The step may have taken its own rights away from the scratch copy: the worker owns it.
    os.chmod(env_dir.parent, 0o700)
    target = Path(tempfile.mkdtemp(prefix="layer-", dir=build)) / "layer"
    os.rename(env_dir, target)
    return target
