"""Helpers of the environment tests: the sandbox, the host's registries, a proxy on them."""

from __future__ import annotations

import functools
from pathlib import Path

from genesis_support import SLOTS, UIDS, require_bwrap
from singularity.genesis.environments.registries import Registries, read_registries
from singularity.genesis.sandbox import Sandbox


def sandbox() -> Sandbox:
    require_bwrap()
    return Sandbox(uid_base=UIDS, slots=SLOTS)


@functools.cache
def host_registries() -> Registries:
    """The registries this host's pip and npm are configured for (read once per test run)."""
    return read_registries()


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
