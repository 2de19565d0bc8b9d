"""The layer cache: one read-only directory per setup step, inputs and platform, shared by all.

Under `root` (settings.genesis_dir / "environments", private to the worker):

    <key>/          the layer, read-only (chmod a-w after the build, and bound read-only)
    <key>.json      what it is: the step, its size, when it was made and last used, by whom
    <key>.lock      its use lock: shared while runs use it, exclusive (never waited for) to
                    remove it
    <key>.build.lock  the builders' lock: one builds the key at a time
    .build-<key>-*  a build in progress (removed when it fails, or by the next build of the key)

A layer is built in a temporary directory and renamed to its key once sealed, so a key names a
complete layer or nothing; two workers building one key take turns on its build lock, and the
second finds the first's layer. The cache is bounded (GENESIS_ENV_CACHE_MB): after a build, the
least recently used layers that no run holds are removed until it fits again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from singularity.config import Settings
from singularity.genesis.environments.detect import SetupStep
from singularity.genesis.environments.lock import LayerLock
from singularity.genesis.sandbox.command import PYTHON
from singularity.genesis.workspaces.workspace import remove_workspace
from singularity.private import open_private, private_dir

__all__ = ["EnvironmentCache", "LayerInfo", "host_platform", "layer_key"]

log = structlog.get_logger(__name__)

MIB = 1 << 20
_KEY_LENGTH = 64
_MAX_REPOSITORIES = 20  # names kept per layer, for `singularity genesis env list`


@dataclass(frozen=True)
class LayerInfo:
    """One cached layer, as `<key>.json` records it."""

    key: str
    script: str
    description: str
    platform: dict[str, str]
    size_bytes: int
    created: float
    last_used: float
    uses: int
    repositories: list[str]


def layer_key(step: SetupStep, digests: Mapping[str, str], platform: Mapping[str, str]) -> str:
    """sha256 of the step's text, the digests of the files it reads, and the platform."""
    document = {"step": step.script, "inputs": dict(digests), "platform": dict(platform)}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@functools.cache
def host_platform() -> dict[str, str]:
    """What a layer's contents depend on besides its step: the sandbox's Python and Node, the
    machine's architecture."""
    found = {"machine": platform.machine(), "python": _version([PYTHON, "-I", "-S", "-V"])}
    node = shutil.which("node", path="/usr/local/bin:/usr/bin:/bin")
    if node is not None:
        found["node"] = _version([node, "--version"])
    return found


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).decode(errors="replace").strip() or "unknown"


class EnvironmentCache:
    """The cached layers of one worker host (or of any workers sharing `root`)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> EnvironmentCache:
        root = settings.genesis_dir / "environments"
        return cls(root, settings.genesis_env_cache_mb * MIB)

    def ensure(self) -> None:
        """Create the cache directory (private to the worker) if it is missing."""
        private_dir(self.root)

    def layer(self, key: str) -> Path:
        return self.root / _checked(key)

    def has(self, key: str) -> bool:
        path = self.layer(key)
        return path.is_dir() and not path.is_symlink()

    def lock(self, key: str) -> LayerLock:
        """The key's lock, open and not yet held: shared while runs use the layer, exclusive
        (never waited for: see `remove`) to remove it."""
        self.ensure()
        return LayerLock(self.root / f"{_checked(key)}.lock")

    def build_lock(self, key: str) -> LayerLock:
        """The lock builders of the key take turns on, open and not yet held. Apart from the
        use lock: a builder waiting here holds nothing another builder waits for."""
        self.ensure()
        return LayerLock(self.root / f"{_checked(key)}.build.lock")

    def new_build(self, key: str) -> Path:
        """A fresh build directory for `key` (hold its build lock); leftovers of builds of
        the key that died are removed first."""
        for stale in self.root.glob(f".build-{_checked(key)}-*"):
            remove_workspace(stale)
        return Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=self.root))

    def commit(self, key: str, built: Path, step: SetupStep, repository: str) -> LayerInfo:
        """Seal `built` (a directory under the cache root) and make it the layer of `key`."""
        seal(built)
        size = tree_size(built)
        os.rename(built, self.layer(key))
        now = time.time()
        info = LayerInfo(
            key, step.script, step.description, host_platform(), size, now, now, 1, [repository]
        )
        self._write(info)
        log.info("environment_built", key=key, size_bytes=size, description=step.description)
        return info

    def record_use(self, key: str, repository: str) -> None:
        """Note that a run used the layer now (for least-recently-used eviction and the list)."""
        info = self.info(key)
        if info is None:
            return
        names = [name for name in info.repositories if name != repository]
        names = [repository, *names][:_MAX_REPOSITORIES]
        changed = {"last_used": time.time(), "uses": info.uses + 1, "repositories": names}
        self._write(LayerInfo(**{**asdict(info), **changed}))

    def info(self, key: str) -> LayerInfo | None:
        try:
            with open(self.root / f"{_checked(key)}.json", encoding="utf-8") as handle:
                return LayerInfo(**json.load(handle))
        except (OSError, ValueError, TypeError):
            return None

    def entries(self) -> list[LayerInfo]:
        """Every complete layer, least recently used first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("*.json"):
            info = self.info(path.stem) if _is_key(path.stem) else None
            if info is not None and self.has(info.key):
                found.append(info)
        return sorted(found, key=lambda info: info.last_used)

    def remove(self, key: str) -> bool:
        """Remove a layer no run holds; False (and nothing removed) while one does."""
        lock = self.lock(key)
        try:
            if not lock.try_exclusive():
                return False
            self._remove_locked(key)
            return True
        finally:
            lock.close()

    def _remove_locked(self, key: str) -> None:
        # Out of its key's name first: a half-removed layer is never taken for a whole one.
        if self.has(key):
            trash = Path(tempfile.mkdtemp(prefix=f".trash-{key}-", dir=self.root))
            os.rename(self.layer(key), trash / "layer")
            remove_workspace(trash)
        (self.root / f"{key}.json").unlink(missing_ok=True)
        log.info("environment_removed", key=key)

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Remove least recently used layers (not `keep`, none in use) until the cache fits."""
        entries = self.entries()
        total = sum(info.size_bytes for info in entries)
        removed = []
        for info in entries:
            if total <= self.max_bytes:
                break
            if info.key != keep and self.remove(info.key):
                total -= info.size_bytes
                removed.append(info.key)
        return removed

    def prune(self, *, older_than_s: float | None = None) -> tuple[list[str], list[str]]:
        """Remove every layer (or those unused for `older_than_s`); (removed, in use) keys."""
        cutoff = None if older_than_s is None else time.time() - older_than_s
        removed, busy = [], []
        for info in self.entries():
            if cutoff is not None and info.last_used >= cutoff:
                continue
            (removed if self.remove(info.key) else busy).append(info.key)
        return removed, busy

    def _write(self, info: LayerInfo) -> None:
        final = self.root / f"{info.key}.json"
        partial = final.with_name(f".{info.key}.{os.getpid()}.json")
        with os.fdopen(open_private(partial), "w", encoding="utf-8") as handle:
            json.dump(asdict(info), handle, indent=1)
        os.replace(partial, final)


def seal(path: Path) -> None:
    """Make a built tree the worker's, readable by every run's uid, and writable by none.

    coreutils walk any depth and never follow a link found in the tree (the tree was written by
    the setup step); set-id bits go.
    """
    if os.geteuid() == 0:
        owner = f"{os.getuid()}:{os.getgid()}"
        _coreutil(["chown", "-R", "-P", "--no-dereference", owner, "--", str(path)])
    _coreutil(["chmod", "-R", "a+rX,a-w,ug-s", "--", str(path)])


def _coreutil(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[:1] or ["failed"]
        raise OSError(f"{argv[0]} of the built layer failed: {reason[0]}")


def tree_size(path: Path) -> int:
    """Bytes the tree takes on disk (its blocks), never through a link."""
    total = 0
    for directory, names, files in os.walk(path):
        for name in [*names, *files]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total


def _checked(key: str) -> str:
    if not _is_key(key):
        raise ValueError(f"{key!r} is not a layer key")
    return key


def _is_key(text: str) -> bool:
    return len(text) == _KEY_LENGTH and all(char in "0123456789abcdef" for char in text)
