"""The registry proxy: real sockets, a real sandbox, real pip against this host's registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from environment_support import host_registries, sandbox
from singularity.genesis.environments.allowlist import Endpoint, endpoint_of_url
from singularity.genesis.environments.network import forwarded, setup_binds, setup_env
from singularity.genesis.environments.prepare import SETUP_LIMITS
from singularity.genesis.environments.proxy import MAX_HEAD_BYTES, RegistryProxy
from singularity.genesis.environments.registries import Registries


@pytest.fixture
async def proxy() -> AsyncIterator[RegistryProxy]:
    """A proxy to the host's registries, plus names and addresses of this host to refuse."""
    allowed = set(host_registries().allowed)
    allowed |= {Endpoint("localhost", 5432), Endpoint("127.0.0.1", 5432), Endpoint("::1", 5432)}
    registries = Registries(frozenset(allowed), host_registries().pip, host_registries().npm)
    async with RegistryProxy(registries) as running:
        yield running


async def ask(proxy: RegistryProxy, data: bytes) -> bytes:
    """Send `data` to the proxy's socket; everything it answers before closing."""
    reader, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


def status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


def index_endpoint() -> Endpoint:
    pip = host_registries().pip
    assert pip is not None, "this host's pip configuration could not be read"
    found = endpoint_of_url(pip.index_url)
    assert found is not None, "this host's pip index is not an http(s) URL"
    return found


async def test_a_host_not_allowed_is_refused_with_its_reason(proxy: RegistryProxy) -> None:
    with capture_logs() as logs:
        answer = await ask(proxy, b"CONNECT elsewhere.invalid:443 HTTP/1.1\r\n\r\n")
    assert status_line(answer) == "HTTP/1.1 403 elsewhere.invalid:443 is not an allowed registry"
    decision = [e for e in logs if e["event"] == "registry_proxy_decision"]
    assert decision[0]["allowed"] is False and decision[0]["target"] == "elsewhere.invalid:443"


async def test_an_allowed_host_on_another_port_is_refused(proxy: RegistryProxy) -> None:
    host = index_endpoint().host
    answer = await ask(proxy, f"CONNECT {host}:22 HTTP/1.1\r\n\r\n".encode())
    assert status_line(answer) == f"HTTP/1.1 403 {host}:22 is not an allowed registry"


@pytest.mark.parametrize(
    ("request_line", "reason"),
    [
        ("CONNECT 127.0.0.1:5432", "127.0.0.1 is a loopback address"),
        ("CONNECT localhost:5432", "localhost resolves to 127.0.0.1, a loopback address"),
        ("CONNECT [::1]:5432", "::1 is a loopback address"),
        ("GET http://localhost:5432/", "localhost resolves to 127.0.0.1, a loopback address"),
    ],
)
async def test_the_hosts_own_addresses_are_refused_even_when_allowed(
    proxy: RegistryProxy, request_line: str, reason: str
) -> None:
    answer = await ask(proxy, f"{request_line} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_line(answer) == f"HTTP/1.1 403 {reason}"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),
        (b"hello\r\n\r\n", 400),
        (b"CONNECT nohost HTTP/1.1\r\n\r\n", 400),
        (b"POST http://x/ HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/1.1\r\n" + b"X: " + b"y" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
        (b"CONNECT a:1 HTTP/1.1\r\n", 400),  # cut short: the client closes its side
    ],
)
async def test_garbage_is_refused_and_the_proxy_goes_on(
    proxy: RegistryProxy, data: bytes, status: int
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
    writer.write(data)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert status_line(answer).startswith(f"HTTP/1.1 {status} ")
    assert b"\r\n" not in answer.split(b"\r\n\r\n", 1)[1].rstrip(b"\n")  # one-line reason
    # Still serving.
    again = await ask(proxy, b"CONNECT elsewhere.invalid:443 HTTP/1.1\r\n\r\n")
    assert status_line(again).startswith("HTTP/1.1 403 ")


async def test_a_client_that_goes_away_at_once_is_no_trouble(proxy: RegistryProxy) -> None:
    for _ in range(20):
        _, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
        writer.close()
    answer = await ask(proxy, b"CONNECT elsewhere.invalid:443 HTTP/1.1\r\n\r\n")
    assert status_line(answer).startswith("HTTP/1.1 403 ")


async def test_the_socket_lives_in_a_private_directory_and_goes_with_the_proxy() -> None:
    async with RegistryProxy(host_registries()) as running:
        path = running.socket_path
        assert path.is_socket()
        assert path.parent.stat().st_mode & 0o777 == 0o700
    assert not path.parent.exists()


async def test_pip_downloads_a_package_through_the_proxy_from_a_sandbox(
    proxy: RegistryProxy, tmp_path: Path
) -> None:
    """six 1.16.0 from the host's index: none of the host's local indexes holds it."""
    work = tmp_path / "work"
    work.mkdir()
    command = ["/usr/bin/python3", "-m", "pip", "download", "six==1.16.0", "--no-deps"]
    command += ["--no-cache-dir", "-d", "/work/downloads"]
    started = time.monotonic()
    with capture_logs() as logs:
        result = await sandbox().run(
            forwarded(command),
            limits=SETUP_LIMITS,
            workdir=work,
            env=setup_env(proxy.registries),
            binds=setup_binds(proxy.registries, proxy.socket_path),
        )
    took = time.monotonic() - started
    assert result.exit_code == 0, result.stderr.decode()[-2000:]
    assert (work / "downloads" / "six-1.16.0-py2.py3-none-any.whl").is_file()
    allowed = {
        e["target"] for e in logs if e["event"] == "registry_proxy_decision" and e["allowed"]
    }
    assert str(index_endpoint()) in allowed
    print(f"pip download through the proxy: {took:.1f} s")


async def test_a_sandboxed_program_reaches_nothing_but_the_registries(
    proxy: RegistryProxy, tmp_path: Path
) -> None:
    """Through the forwarder, PostgreSQL on the host and a host not allowed are refused; without
    it there is no network at all."""
    probe = (
        "import os, urllib.request, socket\n"
        "for url in ('https://elsewhere.invalid/', 'https://127.0.0.1:5432/'):\n"
        "    try:\n"
        "        urllib.request.urlopen(url, timeout=20)\n"
        "        print('reached', url)\n"
        "    except Exception as exc:\n"
        "        print('refused', url, exc)\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=5)\n"
        "    print('reached postgres directly')\n"
        "except OSError as exc:\n"
        "    print('no direct route', exc.errno)\n"
    )
    result = await sandbox().run(
        forwarded(["/usr/bin/python3", "-c", probe]),
        limits=SETUP_LIMITS,
        env=setup_env(proxy.registries),
        binds=setup_binds(proxy.registries, proxy.socket_path),
    )
    out = result.stdout.decode()
    assert result.exit_code == 0, result.stderr.decode()
    assert "reached" not in out.replace("no direct route", "")
    assert "Tunnel connection failed: 403 elsewhere.invalid:443 is not an allowed registry" in out
    assert "Tunnel connection failed: 403 127.0.0.1 is a loopback address" in out
    assert "no direct route 111" in out  # the sandbox's own loopback: nothing listens there
