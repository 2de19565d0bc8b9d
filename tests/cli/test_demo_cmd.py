"""`singularity demo`, run as a newcomer runs it: the three flows against real services, the
approval decided in a real browser."""

from __future__ import annotations

import asyncio
import html
import os
import re
import socket
import stat
import sys

from playwright.async_api import expect

from browser_support import launch_browser, needs_browser
from genesis_support import require_bwrap
from helpers import singularity
from singularity.cli.demo_cmd import open_privately
from singularity.config import Settings
from singularity.nexus.token import ui_token
from singularity.postgres.cluster import Cluster
from singularity.testing.openai_server import MockOpenAI, Reply


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 120)).decode()
        if not line:
            raise AssertionError(f"{pattern!r} not seen in:\n{''.join(seen)}")
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found.group(0)


@needs_browser
async def test_demo_walks_through_the_three_flows(
    cluster: Cluster, nexus_settings: Settings, llm: MockOpenAI
) -> None:
    require_bwrap()
    for model in ("alpha", "beta", "gamma"):
        llm.script(model, Reply("Queues keep every request until it is answered.", 20, 9))
    env = {
        **os.environ,  # with the local server's key (the `llm` fixture)
        "PORT": str(_free_port()),
        "NEXUS_MODELS_FILE": str(nexus_settings.nexus_models_file),
        "COLUMNS": "200",  # one narrated step per line
    }
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "singularity",
        "demo",
        "--timeout",
        "120",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        page_url = await _read_until(
            demo.stdout, r"http://127\.0\.0\.1:\d+/approvals\?token=\S+", seen
        )
        async with launch_browser() as browser:
            page = await browser.new_page()
            await page.goto(page_url)
            card = page.locator('[data-testid="approval-card"]', has_text="demo/greeting.py")
            await expect(card).to_be_visible(timeout=30_000)
            await card.locator('[data-testid="approve"]').click()
            await expect(card).to_have_count(0)
        out, err = await asyncio.wait_for(demo.communicate(), 120)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    text = "".join(seen) + out.decode()
    assert demo.returncode == 0, text + err.decode()
    assert "started in this process: genesis, nexus" in text
    assert "1. An LLM request" in text and "Queues keep every request" in text
    assert re.search(r"routed task type 'chat' \(medium tier\) to model \w+", text)
    assert "20+9 tokens" in text
    assert "2. A code approval" in text
    assert "approved it; the answer came back on approval_responses" in text
    assert "3. A code execution" in text
    assert "sum of the first ten squares: 385" in text
    assert re.search(r"ran it in the sandbox: exit 0, \d+ ms wall", text)
    assert "Traceback" not in err.decode()


def test_demo_without_a_provider_says_how_to_configure_one(cluster: Cluster) -> None:
    result = singularity("demo", "--only", "llm", env={"PORT": str(_free_port()), "COLUMNS": "300"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "found no model it may call (NO_PROVIDER)" in result.stdout
    assert "OPENAI_API_KEY" in result.stdout
    assert "OPENAI_BASE_URL=http://localhost:11434/v1" in result.stdout
    assert "no model answered (NO_PROVIDER)" in result.stdout
    assert "Traceback" not in result.stderr


def test_demo_names_the_flows_it_knows() -> None:
    result = singularity("demo", "--only", "llm,deploy")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --only takes llm, approval, code (comma-separated); got 'llm,deploy'"
    )


def test_the_demo_opens_the_page_without_the_token_on_a_command_line(
    settings: Settings,
) -> None:
    """Every local user can read a browser's command line: it gets a private file instead."""
    page = f"http://127.0.0.1:3000/approvals?token={ui_token(settings)}"
    opened: list[str] = []
    path = open_privately(settings, page, opener=opened.append)
    assert opened == [path.as_uri()] and ui_token(settings) not in opened[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert html.unescape(path.read_text()).count(page) == 1
