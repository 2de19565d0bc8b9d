"""The package registries a setup step may use: the host's own pip and npm configuration.

Read from the tools themselves, never written here: `python3 -m pip config list` (index-url,
extra-index-url, find-links, cert, trusted-host; pip's own default index, read from pip, when
none is set) and `npm config list --json` (registry, cafile). What the sandbox gets from it:

- the allowlist of the proxy: each http(s) index, find-links URL and registry, by host:port
  (replaced by GENESIS_ALLOWED_REGISTRIES when that is set);
- the same settings as environment variables (`PIP_INDEX_URL`, `npm_config_registry`, ...),
  since the sandbox has neither the host's config files nor its home;
- read-only binds of what is local (`file:` indexes, find-links directories) at their own
  paths, so the URLs stay valid inside;
- the CA bundles (pip's `cert`, npm's `cafile`) bound at fixed paths and named by the
  variables each tool reads, so TLS is verified inside as it is on the host.

Credentials in a URL never enter the sandbox (the setup step runs a repository's code): they
are dropped with a warning, so a registry that needs them cannot be used from a sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import structlog

from singularity.genesis.environments.allowlist import (
    Endpoint,
    endpoint_of_entry,
    endpoint_of_url,
)
from singularity.genesis.sandbox.command import PYTHON

__all__ = [
    "NPM_CA",
    "PIP_CA",
    "PipConfig",
    "Registries",
    "load_registries",
    "read_npm_config",
    "read_pip_config",
    "read_registries",
    "registries_from",
]

log = structlog.get_logger(__name__)

PIP_CA = "/run/singularity/pip-ca.pem"
NPM_CA = "/run/singularity/npm-ca.pem"
_TIMEOUT_S = 30.0
# pip reads its sections in this order, each overriding the one before (`:env:` is PIP_*).
_SECTIONS = ("global", "install", ":env:")
_PIP_KEYS = ("index-url", "extra-index-url", "find-links", "cert", "trusted-host", "no-index")
_DEFAULT_INDEX = (
    "from pip._internal.models.index import PyPI; print(PyPI.simple_url); "
    "print(PyPI.file_storage_domain)"
)
# Sandbox paths a local index may not be bound over.
_RESERVED = ("/work", "/env", "/proc", "/dev", "/run/singularity", "/usr", "/etc")


@dataclass(frozen=True)
class PipConfig:
    """What pip on the host is configured to install from."""

    index_url: str
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    cert: Path | None = None
    no_index: bool = False
    file_storage: str | None = None  # the default index's file host, when that index is used


@dataclass(frozen=True)
class NpmConfig:
    """What npm on the host is configured to install from."""

    registry: str
    cafile: Path | None = None


@dataclass(frozen=True)
class Registries:
    """The registries of the host, as the proxy allows them and the sandbox is told of them."""

    allowed: frozenset[Endpoint]
    pip: PipConfig | None = None
    npm: NpmConfig | None = None
    local_dirs: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def sandbox_env(self) -> dict[str, str]:
        """The variables that give pip and npm in the sandbox the host's settings."""
        env: dict[str, str] = {}
        if self.pip is not None:
            env.update(_pip_env(self.pip))
        if self.npm is not None:
            env["npm_config_registry"] = self.npm.registry
            if self.npm.cafile is not None:
                env |= {"npm_config_cafile": NPM_CA, "NODE_EXTRA_CA_CERTS": NPM_CA}
        return env

    def sandbox_binds(self) -> dict[str, Path]:
        """Read-only binds: local indexes at their own paths, CA bundles at fixed ones."""
        binds = {str(path): path for path in self.local_dirs}
        if self.pip is not None and self.pip.cert is not None:
            binds[PIP_CA] = self.pip.cert
        if self.npm is not None and self.npm.cafile is not None:
            binds[NPM_CA] = self.npm.cafile
        return binds


def _pip_env(pip: PipConfig) -> dict[str, str]:
    env = {"PIP_INDEX_URL": pip.index_url, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if pip.extra_index_urls:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(pip.extra_index_urls)
    if pip.find_links:
        env["PIP_FIND_LINKS"] = " ".join(pip.find_links)
    if pip.trusted_hosts:
        env["PIP_TRUSTED_HOST"] = " ".join(pip.trusted_hosts)
    if pip.no_index:
        env["PIP_NO_INDEX"] = "1"
    if pip.cert is not None:
        # pip reads PIP_CERT; other Python tools a step may run read the other two.
        env |= {"PIP_CERT": PIP_CA, "SSL_CERT_FILE": PIP_CA, "REQUESTS_CA_BUNDLE": PIP_CA}
    return env


def read_pip_config(python: str = PYTHON, env: Mapping[str, str] | None = None) -> PipConfig | None:
    """pip's effective settings as `python -m pip config list` shows them; None without pip."""
    listed = _run([python, "-m", "pip", "config", "list"], env)
    default = _run([python, "-c", _DEFAULT_INDEX], env)
    if listed is None or default is None:
        return None
    values = _pip_values(listed)
    default_index, storage = ([*default.split(), "", ""])[:2]
    index = values.get("index-url", "").strip() or default_index
    cert = values.get("cert", "").strip()
    return PipConfig(
        index_url=index,
        extra_index_urls=tuple(values.get("extra-index-url", "").split()),
        find_links=tuple(values.get("find-links", "").split()),
        trusted_hosts=tuple(values.get("trusted-host", "").split()),
        cert=Path(cert) if cert else None,
        no_index=values.get("no-index", "").lower() in ("1", "true", "yes", "on"),
        file_storage=storage if index.rstrip("/") == default_index.rstrip("/") else None,
    )


def _pip_values(listed: str) -> dict[str, str]:
    """`section.key='value'` lines, each key's value from the section pip reads last."""
    found: dict[str, dict[str, str]] = {}
    for line in listed.splitlines():
        name, sep, quoted = line.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not (sep and dot) or key not in _PIP_KEYS or section not in _SECTIONS:
            continue
        try:
            value = ast.literal_eval(quoted.strip())
        except (ValueError, SyntaxError):
            continue
        found.setdefault(key, {})[section] = str(value)
    return {key: next(v[s] for s in reversed(_SECTIONS) if s in v) for key, v in found.items()}


def read_npm_config(npm: str | None, env: Mapping[str, str] | None = None) -> NpmConfig | None:
    """npm's registry and CA file as `npm config list --json` shows them; None without npm."""
    if npm is None:
        return None
    listed = _run([npm, "config", "list", "--json"], env)
    try:
        values = json.loads(listed or "")
    except ValueError:
        return None
    registry = values.get("registry") if isinstance(values, dict) else None
    if not isinstance(registry, str) or not registry:
        return None
    cafile = values.get("cafile")
    return NpmConfig(registry, Path(cafile) if isinstance(cafile, str) and cafile else None)


def _run(argv: Sequence[str], env: Mapping[str, str] | None) -> str | None:
    try:
        done = subprocess.run(
            argv,
            env=dict(os.environ if env is None else env),
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("registry_config_unreadable", program=argv[0], reason=str(exc))
        return None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        log.warning("registry_config_unreadable", program=argv[0], reason=reason[0])
        return None
    return done.stdout.decode(errors="replace")


def registries_from(
    pip: PipConfig | None, npm: NpmConfig | None, allowed: Iterable[str] = ()
) -> Registries:
    """The registries of these configurations; `allowed` (entries), when given, replaces the
    allowlist they imply. ValueError (one line) for an entry that is not a URL or host[:port]."""
    warnings: list[str] = []
    if pip is not None:
        pip = _clean_pip(pip, warnings)
    if npm is not None:
        npm = NpmConfig(_clean_url(npm.registry, warnings), npm.cafile)
    explicit = frozenset(endpoint_of_entry(entry) for entry in allowed if entry.strip())
    found = explicit or frozenset(_implied(pip, npm))
    local = tuple(dict.fromkeys(_local_dirs(pip, warnings))) if pip is not None else ()
    for message in warnings:
        log.warning("registry_config", detail=message)
    return Registries(found, pip, npm, local, tuple(warnings))


def _clean_pip(pip: PipConfig, warnings: list[str]) -> PipConfig:
    cert = _existing(pip.cert, "pip's cert", warnings)
    return PipConfig(
        index_url=_clean_url(pip.index_url, warnings),
        extra_index_urls=tuple(_clean_url(url, warnings) for url in pip.extra_index_urls),
        find_links=tuple(_clean_url(url, warnings) for url in pip.find_links),
        trusted_hosts=pip.trusted_hosts,
        cert=cert,
        no_index=pip.no_index,
        file_storage=pip.file_storage,
    )


def _existing(path: Path | None, what: str, warnings: list[str]) -> Path | None:
    if path is None or path.is_file():
        return path
    warnings.append(f"{what} {str(path)!r} is not a file: left out")
    return None


def _clean_url(url: str, warnings: list[str]) -> str:
    """The URL without credentials: the sandbox runs a repository's code."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    warnings.append(f"credentials in {urlunsplit(parts._replace(netloc=netloc))} left out")
    return urlunsplit(parts._replace(netloc=netloc))


def _implied(pip: PipConfig | None, npm: NpmConfig | None) -> Iterable[Endpoint]:
    urls: list[str] = []
    if pip is not None and not pip.no_index:
        urls += [pip.index_url, *pip.extra_index_urls]
        if pip.file_storage:
            urls.append(f"https://{pip.file_storage}/")
    if pip is not None:
        urls += pip.find_links
    if npm is not None:
        urls.append(npm.registry)
    for url in urls:
        found = endpoint_of_url(url)
        if found is not None:
            yield found


def _local_dirs(pip: PipConfig, warnings: list[str]) -> Iterable[Path]:
    """Directories of `file:` indexes and local find-links, to bind read-only."""
    indexes = [] if pip.no_index else [pip.index_url, *pip.extra_index_urls]
    for url, is_index in [*((u, True) for u in indexes), *((u, False) for u in pip.find_links)]:
        path = _local_path(url)
        if path is None:
            continue
        # A "simple" index's pages link to files beside it (../../files/...): bind its parent.
        if is_index and path.name == "simple":
            path = path.parent
        if not path.is_dir():
            continue
        target = PurePosixPath(path)
        if any(target == PurePosixPath(r) or target.is_relative_to(r) for r in _RESERVED):
            warnings.append(f"local index {str(path)!r} lies where the sandbox has its own files")
            continue
        if target == PurePosixPath("/"):
            continue
        yield path


def _local_path(url: str) -> Path | None:
    if url.startswith("file:"):
        return Path(unquote(urlsplit(url).path)).resolve()
    if "://" in url:
        return None
    return Path(url).resolve()


def read_registries(allowed: Sequence[str] = (), *, python: str = PYTHON) -> Registries:
    """The host's registries, read from its pip (of `python`, else this interpreter's) and npm."""
    pip = read_pip_config(python) or read_pip_config(sys.executable)
    return registries_from(pip, read_npm_config(shutil.which("npm")), allowed)


async def load_registries(allowed: Sequence[str] = (), *, python: str = PYTHON) -> Registries:
    """`read_registries` off the event loop."""
    return await asyncio.to_thread(read_registries, allowed, python=python)
