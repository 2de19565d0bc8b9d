"""The registries read from real pip and npm configuration files, and from this host's own."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from environment_support import host_registries
from singularity.genesis.environments.allowlist import (
    Endpoint,
    endpoint_of_entry,
    forbidden_address,
)
from singularity.genesis.environments.registries import (
    NPM_CA,
    PIP_CA,
    read_npm_config,
    read_pip_config,
    registries_from,
)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with a home of the test's own and none of the host's PIP_* or npm_*."""
    kept = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "NPM_"))}
    return {**kept, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg"), **extra}


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    return bundle


def test_pip_configuration_names_the_indexes_links_and_cert(tmp_path: Path, ca: Path) -> None:
    wheels = tmp_path / "wheels"
    (tmp_path / "mirror" / "simple").mkdir(parents=True)
    wheels.mkdir()
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\n"
        "index-url = https://mirror.test:8443/pypi/simple\n"
        f"extra-index-url = https://user:secret@other.test/simple file://{tmp_path}/mirror/simple\n"
        f"find-links = {wheels}\n"
        f"cert = {ca}\n"
        "trusted-host = mirror.test\n"
    )
    env = clean_env(tmp_path, PIP_CONFIG_FILE=str(conf))
    pip = read_pip_config(sys.executable, env)
    assert pip is not None
    assert pip.index_url == "https://mirror.test:8443/pypi/simple"
    assert pip.file_storage is None  # not pip's default index: its file host is not implied
    registries = registries_from(pip, None)
    assert registries.allowed == {Endpoint("mirror.test", 8443), Endpoint("other.test", 443)}
    assert registries.local_dirs == (tmp_path / "mirror", wheels)
    env_inside = registries.sandbox_env()
    assert "secret" not in str(env_inside) and "credentials" in registries.warnings[0]
    assert env_inside["PIP_EXTRA_INDEX_URL"].startswith("https://other.test/simple ")
    assert env_inside["PIP_TRUSTED_HOST"] == "mirror.test"
    assert env_inside["PIP_CERT"] == PIP_CA
    assert registries.sandbox_binds()[PIP_CA] == ca


def test_the_environment_overrides_pip_files_as_pip_does(tmp_path: Path, ca: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://file.test/simple\n")
    env = clean_env(tmp_path, PIP_CONFIG_FILE=str(conf), PIP_INDEX_URL="https://env.test/simple")
    pip = read_pip_config(sys.executable, env)
    assert pip is not None and pip.index_url == "https://env.test/simple"


def test_without_an_index_pips_own_default_is_used(tmp_path: Path) -> None:
    env = clean_env(tmp_path, PIP_CONFIG_FILE=os.devnull)  # devnull: no config file at all
    pip = read_pip_config(sys.executable, env)
    assert pip is not None and pip.file_storage
    registries = registries_from(pip, None)
    index = endpoint_of_entry(pip.index_url)
    assert registries.allowed == {index, Endpoint(pip.file_storage, 443)}


def test_npm_configuration_names_the_registry_and_cafile(tmp_path: Path, ca: Path) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is required (it is on every CI machine)"
    rc = tmp_path / "npmrc"
    rc.write_text(f"registry=https://npm.mirror.test/repo/\ncafile={ca}\n")
    found = read_npm_config(npm, clean_env(tmp_path, NPM_CONFIG_USERCONFIG=str(rc)))
    assert found is not None
    assert found.registry == "https://npm.mirror.test/repo/" and found.cafile == ca
    registries = registries_from(None, found)
    assert registries.allowed == {Endpoint("npm.mirror.test", 443)}
    assert registries.sandbox_env()["npm_config_cafile"] == NPM_CA
    assert registries.sandbox_binds() == {NPM_CA: ca}


def test_explicit_registries_replace_the_implied_ones(tmp_path: Path) -> None:
    registries = registries_from(None, None, ["https://a.test/simple", "b.test:8080", "c.test"])
    assert registries.allowed == {
        Endpoint("a.test", 443),
        Endpoint("b.test", 8080),
        Endpoint("c.test", 443),
    }


@pytest.mark.parametrize("entry", ["ftp://a.test/", "a.test/simple", "bad host", "https://"])
def test_a_bad_registry_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="registry"):
        registries_from(None, None, [entry])


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this-network"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("10.1.2.3", None),
        ("192.168.1.1", None),
        ("203.0.113.80", None),
    ],
)
def test_host_addresses_are_told_apart_from_registry_addresses(
    address: str, kind: str | None
) -> None:
    assert forbidden_address(address) == kind


def test_this_hosts_own_configuration_is_read() -> None:
    """Whatever this host uses: pip's index is allowed, and each local index is a directory."""
    registries = host_registries()
    assert registries.pip is not None
    index = (
        endpoint_of_entry(registries.pip.index_url) if "://" in registries.pip.index_url else None
    )
    assert index is None or index in registries.allowed
    assert all(path.is_dir() for path in registries.local_dirs)
    assert all(source.exists() for source in registries.sandbox_binds().values())
    if registries.npm is not None:
        assert endpoint_of_entry(registries.npm.registry) in registries.allowed
