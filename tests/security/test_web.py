"""Attacks on the Nexus web UI and on the reviewer's eyes, against a running Nexus over real
HTTP and WebSocket, in a real Chromium, and through the CLI as a reviewer runs it.

Attackers: an HTTP client without the token, a web page open in the reviewer's browser, and
the author of a diff or a question. Each test runs the attack, checks that it is contained,
then that Nexus still carries a real approval from the queue to its answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from browser_support import launch_browser, needs_browser
from helpers import eventually, singularity
from nexus_support import RunningNexus, wait_for_message
from singularity.nexus.web.auth import COOKIE
from singularity.nexus.web.server import WS_MAX_MESSAGE_BYTES
from singularity.shared_queue import Publisher

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
# Trojan Source (CVE-2021-42574): the check reads as a comment, and the comment as code.
TROJAN_DIFF = (
    "--- a/auth.py\n+++ b/auth.py\n@@ -1,2 +1,3 @@\n"
    " def allowed(level):\n"
    '+    if level != "user\u202e \u2066# admins only\u2069 \u2066":\n'
    "+        return True  \u200b\n"
)
TROJAN_PATH = "docs/report\u202efdp.exe"  # reads as docs/reportexe.pdf


def rss_bytes() -> int:
    """This process's resident memory (Nexus runs inside it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def send_approval(pool: AsyncConnectionPool, **fields: object) -> str:
    ident = str(uuid.uuid4())
    body = {"id": ident, "file_path": "app.py", "diff": DIFF, "description": "bump x"}
    body.update(fields)
    await Publisher(pool).send("approval_requests", body)
    return ident


async def pending(nexus: RunningNexus, ident: str) -> bool:
    async with nexus.client() as client:
        response = await client.get(f"/api/approvals/{ident}")
    return response.status_code == 200 and response.json()["status"] == "pending"


async def still_serves(nexus: RunningNexus, bus_pool: AsyncConnectionPool) -> None:
    """A real approval still goes from the queue, through the API, to its answer."""
    ident = await send_approval(bus_pool)
    await eventually(lambda: pending(nexus, ident), seconds=15)
    async with nexus.client() as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        decided = await client.post(f"/api/approvals/{ident}/approve", json={"user": "ana"})
        assert decided.status_code == 200, decided.text
    answer = await wait_for_message(bus_pool, "approval_responses", request_id=ident)
    assert answer["approved"] is True


async def raw_head(nexus: RunningNexus, head: str) -> tuple[asyncio.StreamReader, ...]:
    host, port = nexus.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode())
    await writer.drain()
    return reader, writer  # type: ignore[return-value]


# -- finding 7: the body before the token, no size limit, the WebSocket ------------------


async def test_finding_7_unauthenticated_body_is_not_read(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    size = 50 * 1024 * 1024
    before = rss_bytes()
    for path in (f"/api/approvals/{uuid.uuid4()}/approve", "/approvals", "/healthz"):
        reader, writer = await raw_head(
            nexus,
            f"POST {path} HTTP/1.1\r\nHost: nexus\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n",
        )
        # The answer comes before a single byte of the body was sent.
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"missing or wrong token" in answer and b"connection: close" in answer.lower()
        # Sending the body anyway: the server has closed the connection and keeps nothing.
        chunk = b"x" * (1024 * 1024)
        with pytest.raises(ConnectionError):
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 5)
        writer.close()
    assert rss_bytes() - before < 30 * 1024 * 1024
    await still_serves(nexus, bus_pool)


async def test_finding_7_an_oversized_body_gets_413(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    ident = await send_approval(bus_pool)
    await eventually(lambda: pending(nexus, ident), seconds=15)
    too_big = 1024 * 1024 + 1
    # Declared: refused from the headers, before the body is sent.
    reader, writer = await raw_head(
        nexus,
        f"POST /api/approvals/{ident}/reject HTTP/1.1\r\nHost: nexus\r\n"
        f"Authorization: Bearer {nexus.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {too_big}\r\n\r\n",
    )
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than 1048576 bytes (NEXUS_MAX_BODY_BYTES)" in answer

    # Chunked (no length given): counted as it comes, refused once over the limit.
    reason = "r" * (too_big + 100)

    async def chunks() -> AsyncIterator[bytes]:
        data = json.dumps({"reason": reason}).encode()
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    async with nexus.client() as client:
        streamed = await client.post(f"/api/approvals/{ident}/reject", content=chunks())
        assert streamed.status_code == 413, streamed.text
        assert "NEXUS_MAX_BODY_BYTES" in streamed.json()["detail"]
    assert await pending(nexus, ident)  # nothing was decided by the refused bodies
    await still_serves(nexus, bus_pool)


async def test_finding_7_an_oversized_websocket_message_closes_the_socket(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    url = nexus.url.replace("http://", "ws://") + "/ws"
    headers = {"Authorization": f"Bearer {nexus.token}"}
    big = "x" * (WS_MAX_MESSAGE_BYTES + 1)
    for message in (big, [big[: len(big) // 2], big[len(big) // 2 :]]):  # one frame; fragments
        async with ws_connect(url, additional_headers=headers, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.send(message)
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with ws_connect(url, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
    await still_serves(nexus, bus_pool)


async def test_finding_7_a_websocket_from_another_origin_or_scheme_is_refused(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    url = nexus.url.replace("http://", "ws://") + "/ws"
    host = nexus.url.removeprefix("http://")
    cookie = {"Cookie": f"{COOKIE}={nexus.token}"}
    for origin in (f"https://{host}", "null", None, "http://evil.example", f"http://{host}.x"):
        headers = dict(cookie) if origin is None else {**cookie, "Origin": origin}
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(url, additional_headers=headers, origin=None):
                pass
        assert refused.value.response.status_code == 403, origin
    async with ws_connect(url, additional_headers=cookie, origin=f"http://{host}") as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "snapshot"
    await still_serves(nexus, bus_pool)


# -- finding 8a: characters the reviewer cannot see ----------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


async def signed_in(browser: Browser, nexus: RunningNexus, page_name: str) -> Page:
    context = await browser.new_context(base_url=nexus.url, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"/{page_name}?token={nexus.token}")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    return page


@needs_browser
async def test_finding_8a_trojan_source_is_flagged_in_the_browser(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    ident = await send_approval(
        bus_pool,
        file_path=TROJAN_PATH,
        diff=TROJAN_DIFF,
        description="Tighten the admin check",
        agent_id="coder\u200b-1",
    )
    card = page.locator(f'[data-testid="approval-card"][data-id="{ident}"]')
    warning = card.locator('[data-testid="hidden-warning"]')
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("contains 7 hidden or bidirectional Unicode characters")
    await expect(warning).to_contain_text("diff lines 5, 6")
    await expect(warning).to_contain_text("file path")
    await expect(warning).to_contain_text("agent")
    # Each character is a visible marker, where it is: in the diff, the path, the agent.
    markers = card.locator('pre.diff [data-testid="hidden-char"]')
    assert await markers.all_text_contents() == [
        "<U+202E>",
        "<U+2066>",
        "<U+2069>",
        "<U+2066>",
        "<U+200B>",
    ]
    await expect(card.locator('[data-testid="file-path"]')).to_have_text(
        "docs/report<U+202E>fdp.exe"
    )
    await expect(card.locator('[data-testid="agent"] [data-testid="hidden-char"]')).to_have_text(
        "<U+200B>"
    )
    # No raw control is left anywhere on the page for the browser to obey.
    text = await page.locator("body").inner_text()
    assert not any(c in text for c in "\u202e\u2066\u2069\u200b")
    await card.screenshot(path="/tmp/nexus-trojan-source.png")

    # A question gets the same treatment, context included.
    question = str(uuid.uuid4())
    await Publisher(bus_pool).send(
        "question_requests",
        {"id": question, "question": "Ship \u202eit?", "context": {"note": "a\u2067b"}},
    )
    await page.goto("/questions")
    qcard = page.locator(f'[data-testid="question-card"][data-id="{question}"]')
    await expect(qcard.locator('[data-testid="hidden-warning"]')).to_contain_text(
        "question contains 2 hidden"
    )
    await expect(qcard.locator('[data-testid="question-text"]')).to_have_text("Ship <U+202E>it?")

    # The reviewer can still decide, and the platform still serves.
    await page.goto("/approvals")
    await card.locator('[data-testid="reject-reason"]').fill("hidden characters")
    await card.locator('[data-testid="reject"]').click()
    await expect(card).to_have_count(0)
    answer = await wait_for_message(bus_pool, "approval_responses", request_id=ident)
    assert answer["approved"] is False
    await still_serves(nexus, bus_pool)


async def cli(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(singularity, *args)
    return result.returncode, result.stdout, result.stderr


async def test_finding_8a_the_cli_shows_hidden_characters_escaped(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    ident = await send_approval(bus_pool, file_path=TROJAN_PATH, diff=TROJAN_DIFF)
    await eventually(lambda: pending(nexus, ident), seconds=15)
    code, out, err = await cli("hitl", "show", ident)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("warning: This contains 6 hidden or bidirectional Unicode")
    assert "diff lines 5, 6; file_path" in first
    assert "docs/report<U+202E>fdp.exe" in out and "<U+2066>" in out and "<U+200B>" in out
    assert not any(c in out for c in "\u202e\u2066\u2069\u200b")

    code, out, err = await cli("hitl", "list")
    assert code == 0, err
    assert "<U+202E>" in out and "\u202e" not in out
    assert "hidden or bidirectional Unicode characters" in out and ident in out
    code, out, err = await cli("hitl", "list", "--json")
    assert code == 0 and "\u202e" not in out and "\\u202e" in out
    await still_serves(nexus, bus_pool)


# -- attacks of our own: a page in the reviewer's browser, a diff or question author --------

# Same site as Nexus (127.0.0.1: SameSite ignores the port), so the browser sends the cookie.
EVIL = "http://127.0.0.1:47999/evil"


async def evil_page(page: Page, html: str) -> None:
    async def fulfil(route: object) -> None:
        await route.fulfill(status=200, content_type="text/html", body=html)  # type: ignore[attr-defined]

    await page.context.route(EVIL, fulfil)
    await page.goto(EVIL)


async def pending_question(nexus: RunningNexus, ident: str) -> bool:
    async with nexus.client() as client:
        response = await client.get(f"/api/questions/{ident}")
    return response.status_code == 200 and response.json()["status"] == "pending"


@needs_browser
async def test_attack_a_page_of_another_origin_cannot_decide_with_the_cookie(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")  # the reviewer is signed in
    approval = await send_approval(bus_pool)
    question = str(uuid.uuid4())
    await Publisher(bus_pool).send("question_requests", {"id": question, "question": "Ship?"})
    await eventually(lambda: pending_question(nexus, question), seconds=15)
    sent: list[str] = []
    answers: list[int] = []
    page.on("request", lambda r: sent.append(r.url) if "/api/" in r.url else None)
    page.on("response", lambda r: answers.append(r.status) if "/api/" in r.url else None)
    # A form (no preflight) and a no-cors fetch, both with the cookie, neither can read the
    # page's anti-forgery value.
    await evil_page(
        page,
        f"""<!doctype html><form id=f method=POST enctype=text/plain
        action="{nexus.url}/api/approvals/{approval}/approve">
        <input name='{{"user":"evil","x":"' value='"}}'></form>
        <script>
        fetch("{nexus.url}/api/questions/{question}/answer", {{method: "POST",
          mode: "no-cors", credentials: "include", headers: {{"Content-Type": "text/plain"}},
          body: '{{"response": "yes"}}'}}).finally(() => document.getElementById("f").submit());
        </script>""",
    )
    await page.wait_for_url(f"{nexus.url}/api/**")
    assert len(sent) == 2, sent  # both forgeries went out
    # 403, not 401: the cookie was sent, and the missing anti-forgery header refused it. (The
    # fetch's answer is opaque to the page; Chromium does not even report it.)
    assert answers == [403]
    assert await pending(nexus, approval) and await pending_question(nexus, question)
    await still_serves(nexus, bus_pool)


@needs_browser
async def test_attack_clickjacking_the_approve_button_is_refused(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    await send_approval(bus_pool)
    await evil_page(
        page,
        f"<!doctype html><p>Win a prize: click below</p><iframe id=x width=900 height=600 "
        f'style="opacity:0.01" src="{nexus.url}/approvals"></iframe>',
    )
    await page.wait_for_load_state("load")
    framed = [f for f in page.frames if f is not page.main_frame]
    assert framed, "no frame was created"
    for frame in framed:
        assert await frame.locator('[data-testid="approval-list"]').count() == 0
        assert not frame.url.startswith(nexus.url)  # Chromium put its error page there
    # Every kind of answer forbids framing: a page, the API, a refusal, a file.
    async with httpx.AsyncClient(base_url=nexus.url) as anonymous:
        answers = [
            await anonymous.get("/approvals"),
            await anonymous.get("/api/approvals"),
            await anonymous.post("/api/approvals/x/approve", content=b"{}"),
            await anonymous.get("/static/app.js"),
        ]
    for answer in answers:
        assert answer.headers["x-frame-options"] == "DENY", answer.url
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    await still_serves(nexus, bus_pool)


XSS = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script>'


@needs_browser
async def test_attack_markup_in_every_field_stays_text(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    ident = await send_approval(
        bus_pool,
        agent_id=f"a{XSS}",
        file_path=f"p{XSS}",
        description=f"[x](javascript:alert(1)){XSS}",
    )
    card = page.locator(f'[data-testid="approval-card"][data-id="{ident}"]')
    await expect(card.locator('[data-testid="agent"]')).to_contain_text("<img src=x")
    # Another reviewer decides it, naming themselves with markup: it shows in a toast.
    async with nexus.client() as client:
        decided = await client.post(
            f"/api/approvals/{ident}/reject", json={"user": f"u{XSS}", "reason": f"r{XSS}"}
        )
        assert decided.status_code == 200
    await expect(page.locator('[data-testid="toast"]')).to_contain_text("<script>")
    question = str(uuid.uuid4())
    await Publisher(bus_pool).send(
        "question_requests", {"id": question, "question": f"q{XSS}", "context": {"c": XSS}}
    )
    for name, shown in (
        ("questions", f'[data-testid="question-card"][data-id="{question}"]'),
        ("history", f'[data-testid="history-row"][data-id="{ident}"]'),
    ):
        await page.goto(f"/{name}")
        await expect(page.locator(shown)).to_contain_text("<img src=x onerror=")
    for name in ("approvals", "questions", "history"):
        await page.goto(f"/{name}")
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
        assert (
            await page.locator(
                "main img, main script, main a:not([download]), main [onerror], #toasts img"
            ).count()
            == 0
        )
        assert await page.evaluate("window.__pwned") is None
    assert dialogs == []
    await still_serves(nexus, bus_pool)


@needs_browser
async def test_attack_a_huge_change_cannot_push_the_buttons_out_of_sight(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    long_line = "+" + "y" * 1_000_000 + "\n"
    diff = DIFF + long_line + "+z = 1\n" * 200_000  # about 2.4 MB, a megabyte on one line
    fake = "All checks passed. Approved by the security team.\n" * 4000  # 200 KB of words
    ident = await send_approval(bus_pool, diff=diff, description=fake, file_path="a/" * 2000)
    card = page.locator(f'[data-testid="approval-card"][data-id="{ident}"]')
    await expect(card).to_be_visible(timeout=30_000)
    await card.evaluate("node => node.scrollIntoView({block: 'start'})")
    approve = card.locator('[data-testid="approve"]')
    box = await approve.bounding_box()
    assert box is not None and box["y"] + box["height"] < 900 and box["x"] + box["width"] < 1280
    reject = await card.locator('[data-testid="reject"]').bounding_box()
    assert reject is not None and reject["x"] + reject["width"] <= 1280
    wide = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0
    await approve.click()
    await expect(card).to_have_count(0)
    answer = await wait_for_message(bus_pool, "approval_responses", request_id=ident)
    assert answer["approved"] is True
    await still_serves(nexus, bus_pool)


async def test_attack_terminal_escapes_in_a_diff_are_shown_not_obeyed(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    ident = await send_approval(
        bus_pool,
        diff=(
            DIFF + "+\x1b[2J\x1b[Hclean screen\n"  # clears the reviewer's terminal
            "+\x1b]8;;http://evil.example\x07docs\x1b]8;;\x07\n"  # a hidden link
            "+rm -rf ~\r+# harmless comment\n"  # the comment overwrites the command
        ),
        description="fine\x1b[8m but hidden\x9b31m",
    )
    await eventually(lambda: pending(nexus, ident), seconds=15)
    code, out, err = await cli("hitl", "show", ident)
    assert code == 0, err
    assert not any(c in out for c in "\x1b\x07\x9b\r"), repr(out)
    assert "<U+001B>[2J" in out and "rm -rf ~<U+000D>" in out and "<U+009B>31m" in out
    assert out.startswith("warning: This contains")
    await still_serves(nexus, bus_pool)
