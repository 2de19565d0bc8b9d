"""A worker's environments: its layer cache, and the registry proxy started on first need.

Most experiments need nothing installed, or find their layer in the cache: the proxy (which
reads the host's pip and npm configuration, a second or so) starts only when a setup step
must really run, once per worker, and stops with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from singularity.config import Settings
from singularity.genesis.environments.cache import EnvironmentCache
from singularity.genesis.environments.detect import SetupStep, step_for
from singularity.genesis.environments.prepare import (
    SETUP_LIMITS,
    Prepared,
    nothing_installed,
    prepare,
)
from singularity.genesis.environments.proxy import RegistryProxy, registry_proxy
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox

__all__ = ["Environments", "SetupChoice"]

# What a caller asks for: None, the repository's own step (declared or recognised); text, that
# step instead; False, nothing installed.
SetupChoice = str | bool | None


class Environments:
    """Prepares repositories' environments for one worker (or one CLI command)."""

    def __init__(
        self, cache: EnvironmentCache, allowed: Sequence[str] = (), *, limits: Limits = SETUP_LIMITS
    ) -> None:
        self.cache = cache
        self._allowed = tuple(allowed)
        self._limits = limits
        self._proxy: RegistryProxy | None = None
        self._stack = contextlib.AsyncExitStack()
        self._starting = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Environments:
        cache = EnvironmentCache.from_settings(settings)
        return cls(cache, settings.genesis_allowed_registries)

    async def prepare(
        self, sandbox: Sandbox, source: Path, setup: SetupChoice, test_command: str | None = None
    ) -> Prepared:
        """The environment of the repository at `source` for runs of `test_command` (see
        `prepare.prepare`); hold the result while its runs go on. `setup` False: nothing
        installed, nothing detected."""
        if setup is False:
            return nothing_installed()
        given = setup if isinstance(setup, str) else None
        step: SetupStep | None = await asyncio.to_thread(step_for, source, given, test_command)
        if step is None:
            return nothing_installed()
        await asyncio.to_thread(self.cache.ensure)
        proxy = await self._started_proxy()
        return await prepare(
            sandbox, source, step=step, cache=self.cache, proxy=proxy, limits=self._limits
        )

    async def aclose(self) -> None:
        """Stop the proxy, if it was started."""
        self._proxy = None
        await self._stack.aclose()

    async def _started_proxy(self) -> RegistryProxy:
        async with self._starting:
            if self._proxy is None:
                self._proxy = await self._stack.enter_async_context(registry_proxy(self._allowed))
            return self._proxy
