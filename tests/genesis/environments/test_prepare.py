"""Preparing environments for real: pip and npm through the proxy in bubblewrap, the layer cached
read-only, and test runs that use it offline."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from environment_support import host_registries, sandbox, write
from singularity.genesis.environments import (
    EnvironmentCache,
    RegistryProxy,
    SetupFailed,
    prepare,
)
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox

TEST_RUN = Limits(wall_s=60.0, cpu_s=30.0, memory_mb=1024)


@pytest.fixture
async def proxy() -> AsyncIterator[RegistryProxy]:
    async with RegistryProxy(host_registries()) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> EnvironmentCache:
    return EnvironmentCache(tmp_path / "environments", 1 << 30)


@pytest.fixture
def box() -> Sandbox:
    return sandbox()


async def test_a_python_repository_gets_a_venv_its_tests_use_offline(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(
        tmp_path / "repo",
        {
            "requirements.txt": "six==1.16.0\n",
            "test_it.py": "import six\n\ndef test_six():\n    assert six.__version__ == '1.16.0'\n",
        },
    )
    started = time.monotonic()
    with await prepare(box, repo, cache=cache, proxy=proxy) as prepared:
        built_s = time.monotonic() - started
        assert not prepared.cached and prepared.layer is not None
        assert "virtualenv at /env/venv" in (prepared.step.description if prepared.step else "")
        run = await box.run(
            ["pytest", "-q", "-p", "no:cacheprovider"],
            limits=TEST_RUN,
            workdir=repo,
            binds=prepared.binds,
            env=prepared.env,
        )
        assert run.exit_code == 0, run.stdout.decode()[-2000:] + run.stderr.decode()[-2000:]
        assert b"1 passed" in run.stdout
        layer = prepared.layer
    assert not os.access(layer / "venv" / "bin" / "python3", os.W_OK) or os.geteuid() == 0
    assert layer.stat().st_mode & 0o222 == 0
    started = time.monotonic()
    with await prepare(box, repo, cache=cache, proxy=proxy) as again:
        assert again.cached and again.layer == layer and again.output is None
    print(
        f"pip setup: built in {built_s:.1f} s, found cached in {time.monotonic() - started:.2f} s"
    )
    info = cache.info(again.key or "")
    assert info is not None and info.uses == 2 and info.repositories == ["repo"]


async def test_an_npm_repository_gets_its_node_modules(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(
        tmp_path / "repo",
        {
            "package.json": json.dumps(
                {"name": "t", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}
            ),
            "test.js": "const isNumber = require('is-number');\n"
            "if (!isNumber(5) || isNumber('x')) process.exit(1);\nconsole.log('ok');\n",
        },
    )
    # The lockfile, written by the host's npm once (the test's own preparation, not the product).
    await asyncio.to_thread(
        subprocess.run,
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=120,
    )
    started = time.monotonic()
    with await prepare(box, repo, cache=cache, proxy=proxy) as prepared:
        built_s = time.monotonic() - started
        assert prepared.step is not None and prepared.step.script.startswith("npm ci\n")
        assert prepared.layer is not None
        assert (prepared.layer / "node_modules" / "is-number" / "package.json").is_file()
        run = await box.run(
            ["node", "test.js"],
            limits=Limits(wall_s=30.0, memory_mb=4096),
            workdir=repo,
            binds=prepared.binds,
            env=prepared.env,
        )
        assert run.exit_code == 0, run.stderr.decode()[-2000:]
        assert run.stdout == b"ok\n"
    assert not (repo / "node_modules").exists()  # the repository itself is untouched
    print(f"npm ci setup: built in {built_s:.1f} s")


async def test_a_failing_step_is_reported_and_not_cached(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(tmp_path / "repo", {"README": "x"})
    with pytest.raises(SetupFailed) as failed:
        await prepare(
            box, repo, step="echo building\necho broken >&2\nexit 3", cache=cache, proxy=proxy
        )
    assert failed.value.output.exit_code == 3
    assert failed.value.output.stdout_tail == "building\n"
    assert str(failed.value) == "the setup step exited with 3: broken"
    assert cache.entries() == []
    assert [p.name for p in cache.root.iterdir() if not p.name.endswith(".lock")] == []


async def test_a_repository_with_nothing_to_install_gets_no_layer(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    prepared = await prepare(box, write(tmp_path / "r", {"a.py": ""}), cache=cache, proxy=proxy)
    assert prepared.layer is None and prepared.binds == {} and prepared.env == {}


async def test_two_workers_preparing_one_key_build_it_once(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(tmp_path / "repo", {"README": "x"})
    step = "echo built >> /env/marker\nsleep 1\n"
    first, second = await asyncio.gather(
        prepare(box, repo, step=step, cache=cache, proxy=proxy),
        prepare(box, repo, step=step, cache=cache, proxy=proxy),
    )
    with first, second:
        assert sorted([first.cached, second.cached]) == [False, True]
        assert first.layer == second.layer and first.layer is not None
        assert (first.layer / "marker").read_text() == "built\n"


async def test_the_least_recently_used_layer_goes_when_the_cache_is_full(
    box: Sandbox, proxy: RegistryProxy, tmp_path: Path
) -> None:
    cache = EnvironmentCache(tmp_path / "environments", 3 << 20)
    repo = write(tmp_path / "repo", {"README": "x"})
    keys = []
    for name in ("a", "b", "c"):
        step = f"head -c 1200000 /dev/zero > /env/{name}\n"
        with await prepare(box, repo, step=step, cache=cache, proxy=proxy) as prepared:
            keys.append(prepared.key)
    assert [info.key for info in cache.entries()] == keys[1:]
    # A layer in use is not evicted, and `prune` says so.
    with await prepare(
        box, repo, step="head -c 1200000 /dev/zero > /env/b\n", cache=cache, proxy=proxy
    ):
        removed, busy = cache.prune()
    assert busy == [keys[1]] and removed == [keys[2]]


# Attacks: what a setup step or a test run may try.


async def test_a_setup_step_cannot_reach_the_hosts_postgresql(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    step = (
        "python3 - <<'EOF'\n"
        "import socket, urllib.request\n"
        "for where in (('127.0.0.1', 5432), ('localhost', 5432)):\n"
        "    try:\n"
        "        socket.create_connection(where, timeout=5); print('reached', where)\n"
        "    except OSError as exc: print('refused', where, exc.errno)\n"
        "try:\n"
        "    urllib.request.urlopen('http://127.0.0.1:5432/', timeout=10); print('reached proxy')\n"
        "except Exception as exc: print('refused proxy', exc)\n"
        "EOF\n"
        "exit 1\n"
    )
    with pytest.raises(SetupFailed) as failed:
        await prepare(
            box, write(tmp_path / "repo", {"README": "x"}), step=step, cache=cache, proxy=proxy
        )
    out = failed.value.output.stdout_tail
    assert "reached" not in out
    assert "refused ('127.0.0.1', 5432) 111" in out
    assert "403: 127.0.0.1:5432 is not an allowed registry" in out


async def test_a_setup_step_cannot_reach_another_hosts_address(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    # An address of one of the allowed registries, by number: names are allowed, not addresses.
    index = sorted(proxy.registries.allowed)[0]
    address = (await asyncio.get_running_loop().getaddrinfo(index.host, index.port))[0][4][0]
    step = f"python3 -c \"import urllib.request; urllib.request.urlopen('https://{address}/')\"\n"
    with pytest.raises(SetupFailed) as failed:
        await prepare(
            box, write(tmp_path / "repo", {"README": "x"}), step=step, cache=cache, proxy=proxy
        )
    assert (
        f"403 {address}:{index.port} is not an allowed registry" in failed.value.output.stderr_tail
    )


async def test_a_setup_step_writes_nowhere_but_env_and_work(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(tmp_path / "repo", {"README": "x"})
    step = (
        "for p in /usr/pwned /etc/pwned /opt/pwned /run/singularity/pwned /pwned; do\n"
        "  touch $p 2>/dev/null && echo wrote $p\n"
        "done\n"
        f"touch {tmp_path}/pwned 2>/dev/null && echo wrote host\n"
        "echo ok > /env/ok; echo ok > /work/ok; echo ok > /tmp/ok\n"
    )
    with await prepare(box, repo, step=step, cache=cache, proxy=proxy) as prepared:
        assert prepared.output is not None and "wrote" not in prepared.output.stdout_tail
        assert prepared.layer is not None and (prepared.layer / "ok").is_file()
    assert not (tmp_path / "pwned").exists() and not await asyncio.to_thread(
        os.path.exists, "/opt/pwned"
    )
    assert not (repo / "ok").exists()  # /work was a copy


async def test_a_later_run_cannot_change_the_layer(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(tmp_path / "repo", {"README": "x"})
    with await prepare(
        box, repo, step="mkdir /env/d\necho v > /env/d/f\n", cache=cache, proxy=proxy
    ) as prepared:
        assert prepared.layer is not None
        attack = "echo x > /env/d/f; rm -rf /env/d; chmod -R u+w /env; touch /env/new; true"
        run = await box.run(
            ["sh", "-c", attack],
            limits=TEST_RUN,
            workdir=repo,
            binds=prepared.binds,
            env=prepared.env,
        )
        assert run.exit_code == 0
        assert b"Read-only file system" in run.stderr
        assert (prepared.layer / "d" / "f").read_text() == "v\n"
        assert not (prepared.layer / "new").exists()


async def test_a_step_that_swaps_env_for_a_link_caches_nothing(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    repo = write(tmp_path / "repo", {"README": "x"})
    victim = write(tmp_path / "victim", {"file": "mine"})
    os.chmod(victim / "file", 0o644)
    step = f"cd /work && mv .singularity-env gone && ln -s {victim} .singularity-env\n"
    with pytest.raises(Exception, match="replaced its /env directory"):
        await prepare(box, repo, step=step, cache=cache, proxy=proxy)
    assert (victim / "file").stat().st_mode & 0o777 == 0o644
    assert (victim / "file").stat().st_uid == os.getuid()
    assert cache.entries() == []


async def test_a_requirement_naming_a_path_outside_the_repository_is_not_found(
    box: Sandbox, proxy: RegistryProxy, cache: EnvironmentCache, tmp_path: Path
) -> None:
    outside = write(tmp_path / "outside", {"setup.py": "raise SystemExit('ran outside code')\n"})
    repo = write(tmp_path / "repo", {"requirements.txt": f"{outside}\n../outside\n"})
    with pytest.raises(SetupFailed) as failed:
        await prepare(box, repo, step=None, cache=cache, proxy=proxy)
    output = failed.value.output.stdout_tail + failed.value.output.stderr_tail
    assert "ran outside code" not in output
    assert "does not exist" in output or "Invalid requirement" in output or "not find" in output
    assert cache.entries() == []


def test_npm_is_on_this_machine() -> None:
    assert shutil.which("npm") is not None and shutil.which("node") == "/usr/bin/node"
