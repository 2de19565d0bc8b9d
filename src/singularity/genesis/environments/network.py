"""What a setup run is given to reach the registry proxy: the forwarder's command line and the
binds and variables that carry the host's registry settings in."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from singularity.genesis.environments.registries import Registries
from singularity.genesis.sandbox.command import PYTHON

__all__ = ["FORWARD_PORT", "PROXY_SOCKET", "forwarded", "setup_binds", "setup_env"]

PROXY_SOCKET = "/run/singularity/proxy.sock"
FORWARD_PORT = 3128  # on the sandbox's own loopback: nothing else listens there
# Caches go to the sandbox's /tmp (a tmpfs dropped with the run), never into the layer.
_CACHES = {
    "PIP_CACHE_DIR": "/tmp/pip-cache",
    "PIP_NO_INPUT": "1",
    "npm_config_cache": "/tmp/npm-cache",
    "npm_config_update_notifier": "false",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
}


@functools.cache
def _forwarder_source() -> str:
    return (Path(__file__).parent / "forwarder.py").read_text()


def forwarded(argv: Sequence[str]) -> list[str]:
    """`argv` run by the forwarder: with the proxy variables set, its exit status passed on."""
    source = _forwarder_source()
    return [PYTHON, "-I", "-S", "-c", source, str(FORWARD_PORT), PROXY_SOCKET, "--", *argv]


def setup_binds(registries: Registries, socket: Path) -> dict[str, Path]:
    """Read-only binds of a setup run: the proxy's socket, local indexes, CA bundles."""
    return {PROXY_SOCKET: socket, **registries.sandbox_binds()}


def setup_env(registries: Registries) -> dict[str, str]:
    """Variables of a setup run (the forwarder adds the proxy's own)."""
    return {**_CACHES, **registries.sandbox_env()}
