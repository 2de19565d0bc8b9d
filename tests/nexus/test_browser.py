"""The web UI in a real Chromium: live cards from a plain pgmq client, decisions that reach
the queue and the tables, reconnect replay, the token, and inert hostile content."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from psycopg_pool import AsyncConnectionPool

from browser_support import launch_browser, needs_browser
from nexus_support import RunningNexus, wait_for_message

pytestmark = needs_browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_browser() as launched:
        yield launched


async def signed_in(browser: Browser, nexus: RunningNexus, page_name: str) -> Page:
    context = await browser.new_context(base_url=nexus.url)
    page = await context.new_page()
    await page.goto(f"/{page_name}?token={nexus.token}")
    assert page.url.endswith(f"/{page_name}")  # the token left the address bar
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    return page


async def pgmq_send(pool: AsyncConnectionPool, queue: str, body: dict[str, object]) -> None:
    """What any pgmq client does: pgmq.send with a JSON body."""
    async with pool.connection() as conn:
        await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (queue, json.dumps(body)))


def approval(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "file_path": "src/app.py",
        "diff": "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n",
        "description": "bump x",
    }
    body.update(fields)
    return body


async def test_a_card_appears_live_and_approve_answers_on_the_queue(
    browser: Browser,
    nexus: RunningNexus,
    bus_pool: AsyncConnectionPool,
    nexus_db: AsyncConnectionPool,
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    body = approval()
    await pgmq_send(bus_pool, "approval_requests", body)
    card = page.locator(f'[data-testid="approval-card"][data-id="{body["id"]}"]')
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("src/app.py")
    # Highlighted: the added line is an "inserted" token of the diff lexer.
    await expect(card.locator("pre.diff .gi", has_text="+x = 2")).to_be_visible()
    await card.locator('[data-testid="approve"]').click()
    await expect(card).to_have_count(0)

    response = await wait_for_message(bus_pool, "approval_responses", request_id=body["id"])
    assert response["approved"] is True
    async with nexus_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT a.approved, m.request_type FROM approval_requests a "
                "JOIN hitl_metrics m ON m.request_id = a.id WHERE a.id = %s",
                (body["id"],),
            )
        ).fetchone()
    assert row == (True, "approval")


async def test_reject_needs_a_reason_and_sends_it(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    body = approval()
    await pgmq_send(bus_pool, "approval_requests", body)
    card = page.locator(f'[data-testid="approval-card"][data-id="{body["id"]}"]')
    await card.locator('[data-testid="reject"]').click()
    await expect(card).to_be_visible()  # no reason: nothing sent
    await card.locator('[data-testid="reject-reason"]').fill("x must stay 1")
    await card.locator('[data-testid="reject"]').click()
    await expect(card).to_have_count(0)
    response = await wait_for_message(bus_pool, "approval_responses", request_id=body["id"])
    assert (response["approved"], response["reason"]) == (False, "x must stay 1")


async def test_a_question_is_answered_from_the_page(
    browser: Browser,
    nexus: RunningNexus,
    bus_pool: AsyncConnectionPool,
    nexus_db: AsyncConnectionPool,
) -> None:
    page = await signed_in(browser, nexus, "questions")
    ident = str(uuid.uuid4())
    context = {"repo": "billing", "options": ["postgres", "sqlite"]}
    await pgmq_send(
        bus_pool, "question_requests", {"id": ident, "question": "Which DB?", "context": context}
    )
    card = page.locator(f'[data-testid="question-card"][data-id="{ident}"]')
    await expect(card).to_contain_text("Which DB?")
    await expect(card).to_contain_text('"repo": "billing"')  # readable JSON
    await card.locator('[data-testid="answer-input"]').fill("postgres")
    await card.locator('[data-testid="answer-submit"]').click()
    await expect(card).to_have_count(0)
    response = await wait_for_message(bus_pool, "question_responses", request_id=ident)
    assert response["response"] == "postgres"
    async with nexus_db.connection() as conn:
        row = await (
            await conn.execute("SELECT response FROM question_requests WHERE id = %s", (ident,))
        ).fetchone()
    assert row == ("postgres",)


async def test_a_reconnecting_browser_gets_every_pending_item_once(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    first = approval()
    await pgmq_send(bus_pool, "approval_requests", first)
    page = await signed_in(browser, nexus, "approvals")
    cards = page.locator('[data-testid="approval-card"]')
    await expect(page.locator(f'[data-id="{first["id"]}"]')).to_be_visible()  # replayed
    before = await cards.count()

    nexus.parts.events.restart_all()  # every browser's socket ends; they reconnect
    second = approval()
    await pgmq_send(bus_pool, "approval_requests", second)
    await expect(page.locator(f'[data-id="{second["id"]}"]')).to_be_visible()
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    await expect(cards).to_have_count(before + 1)
    await expect(page.locator(f'[data-id="{first["id"]}"]')).to_have_count(1)


async def test_the_pages_need_the_token(browser: Browser, nexus: RunningNexus) -> None:
    context = await browser.new_context(base_url=nexus.url)
    page = await context.new_page()
    response = await page.goto("/approvals")
    assert response is not None and response.status == 401
    await expect(page.locator("body")).to_contain_text("token")
    response = await page.goto("/approvals?token=wrong-token")
    assert response is not None and response.status == 401
    await expect(page.locator('[data-testid="approval-card"]')).to_have_count(0)


async def test_a_hostile_diff_stays_inert_text(
    browser: Browser, nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    page = await signed_in(browser, nexus, "approvals")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    body = approval(
        file_path='<img src=x onerror="window.__pwned=1">',
        description="<b onmouseover=alert(2)>hi</b>",
        diff=(
            "--- a/x.html\n+++ b/x.html\n@@ -0,0 +1 @@\n"
            "+<script>window.__pwned=3;alert(3)</script>\n"
        ),
    )
    await pgmq_send(bus_pool, "approval_requests", body)
    card = page.locator(f'[data-testid="approval-card"][data-id="{body["id"]}"]')
    await expect(card).to_contain_text("<script>window.__pwned=3;alert(3)</script>")
    await expect(card).to_contain_text('<img src=x onerror="window.__pwned=1">')
    assert await card.locator("script, img, b").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []
