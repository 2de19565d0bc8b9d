"""Approvals and questions through the bus and the REST API: stored, decided once, answered on
reply_to, recorded in the design's tables and metrics; access needs the token."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.client import connect as ws_connect

from helpers import eventually
from nexus_support import RunningNexus, wait_for_message
from singularity.nexus.token import csrf_token
from singularity.shared_queue import Publisher

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


async def send_approval(pool: AsyncConnectionPool, **fields: object) -> str:
    """An approval request with only the design's fields (plus what the test adds)."""
    ident = str(uuid.uuid4())
    body = {"id": ident, "file_path": "app.py", "diff": DIFF, "description": "bump x"}
    body.update(fields)
    await Publisher(pool).send("approval_requests", body)
    return ident


async def send_question(pool: AsyncConnectionPool, **fields: object) -> str:
    ident = str(uuid.uuid4())
    body = {"id": ident, "question": "Which database?", "context": {"options": ["pg", "sqlite"]}}
    body.update(fields)
    await Publisher(pool).send("question_requests", body)
    return ident


async def pending_ids(nexus: RunningNexus, kind: str) -> set[str]:
    async with nexus.client() as client:
        response = await client.get(f"/api/{kind}")
    assert response.status_code == 200
    return {item["id"] for item in response.json()["items"]}


async def shows(nexus: RunningNexus, kind: str, ident: str) -> None:
    async def check() -> bool:
        return ident in await pending_ids(nexus, kind)

    await eventually(check)


async def test_an_approval_is_stored_shown_and_answered_once(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool, nexus_db: AsyncConnectionPool
) -> None:
    ident = await send_approval(bus_pool)
    await shows(nexus, "approvals", ident)
    async with nexus.client() as client:
        item = (await client.get(f"/api/approvals/{ident}")).json()
        assert (item["file_path"], item["agent_id"], item["status"]) == (
            "app.py",
            "unknown",
            "pending",
        )
        assert item["diff"] == DIFF and '<pre class="diff">' in item["diff_html"]
        decided = await client.post(f"/api/approvals/{ident}/approve", json={"user": "ana"})
        assert decided.status_code == 200, decided.text
        assert (decided.json()["status"], decided.json()["decided_by"]) == ("approved", "ana")
        again = await client.post(f"/api/approvals/{ident}/reject", json={"reason": "late"})
        assert again.status_code == 409
        assert again.json()["detail"] == "this approval is already approved"

    response = await wait_for_message(bus_pool, "approval_responses", request_id=ident)
    assert response["approved"] is True and "reason" in response
    async with nexus_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT approved, approved_at IS NOT NULL FROM approval_requests WHERE id = %s",
                (ident,),
            )
        ).fetchone()
        metric = await (
            await conn.execute(
                "SELECT request_type, response_time_ms >= 0, user_id FROM hitl_metrics "
                "WHERE request_id = %s",
                (ident,),
            )
        ).fetchall()
    assert row == (True, True)
    assert metric == [("approval", True, "ana")]
    assert ident not in await pending_ids(nexus, "approvals")


async def test_a_rejection_needs_a_reason_and_carries_it(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    ident = await send_approval(
        bus_pool, request_id=request_id, reply_to=reply_queue, agent_id="coder-1"
    )
    await shows(nexus, "approvals", ident)
    async with nexus.client() as client:
        missing = await client.post(f"/api/approvals/{ident}/reject", json={"reason": "  "})
        assert missing.status_code == 400
        assert "a rejection needs a reason" in missing.json()["detail"]
        done = await client.post(f"/api/approvals/{ident}/reject", json={"reason": "breaks API"})
        assert done.status_code == 200
    response = await wait_for_message(bus_pool, reply_queue, request_id=request_id)
    assert (response["approved"], response["reason"]) == (False, "breaks API")


async def test_a_question_is_answered_on_its_reply_queue(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool, nexus_db: AsyncConnectionPool
) -> None:
    ident = await send_question(bus_pool)
    await shows(nexus, "questions", ident)
    async with nexus.client() as client:
        item = (await client.get(f"/api/questions/{ident}")).json()
        assert item["context"] == {"options": ["pg", "sqlite"]}
        assert '"pg"' in item["context_text"]
        empty = await client.post(f"/api/questions/{ident}/answer", json={"response": ""})
        assert empty.status_code == 400
        done = await client.post(f"/api/questions/{ident}/answer", json={"response": "pg"})
        assert done.status_code == 200
    response = await wait_for_message(bus_pool, "question_responses", request_id=ident)
    assert response["response"] == "pg"
    async with nexus_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT response, response_at IS NOT NULL FROM question_requests WHERE id = %s",
                (ident,),
            )
        ).fetchone()
    assert row == ("pg", True)


async def test_a_request_past_its_deadline_expires(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    ident = await send_approval(bus_pool, deadline=deadline)
    response = await wait_for_message(bus_pool, "approval_responses", request_id=ident)
    assert (response["approved"], response["reason"], response["status"]) == (
        False,
        "expired",
        "expired",
    )
    async with nexus.client() as client:
        item = (await client.get(f"/api/approvals/{ident}")).json()
    assert item["status"] == "expired"


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        (f"/api/approvals/{uuid.uuid4()}/approve", 404, "no approval with id"),
        ("/api/approvals/not-a-uuid/approve", 400, "is not a approval id"),
    ],
)
async def test_bad_ids_get_a_clear_4xx(
    nexus: RunningNexus, path: str, status: int, detail: str
) -> None:
    async with nexus.client() as client:
        response = await client.post(path, json={})
    assert response.status_code == status
    assert detail in response.json()["detail"]


async def test_a_malformed_body_is_a_400_with_the_field(nexus: RunningNexus) -> None:
    async with nexus.client() as client:
        response = await client.post(f"/api/questions/{uuid.uuid4()}/answer", json={"x": 1})
    assert response.status_code == 400
    assert "response: Field required" in response.json()["detail"]


async def test_the_api_and_pages_need_the_token(nexus: RunningNexus) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=nexus.url) as anonymous:
        assert (await anonymous.get("/api/approvals")).status_code == 401
        assert (await anonymous.get("/approvals")).status_code == 401
        wrong = await anonymous.get("/api/approvals", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await anonymous.get("/healthz")).json()["status"] == "ok"
        signed_in = await anonymous.get(f"/approvals?token={nexus.token}")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/approvals"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = await anonymous.get("/approvals")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # A change made with the cookie alone (as a forged cross-site form would) is refused.
        forged = await anonymous.post(f"/api/approvals/{uuid.uuid4()}/approve", json={})
        assert forged.status_code == 403
        proper = await anonymous.post(
            f"/api/approvals/{uuid.uuid4()}/approve",
            json={},
            headers={"X-CSRF-Token": csrf_token(nexus.token)},
        )
        assert proper.status_code == 404


async def test_history_filters_and_exports(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    agent = f"hist-{uuid.uuid4().hex[:6]}"
    approved = await send_approval(bus_pool, agent_id=agent)
    rejected = await send_approval(bus_pool, agent_id=agent, file_path="=cmd|' /C calc'!A0")
    await shows(nexus, "approvals", rejected)
    async with nexus.client() as client:
        await client.post(f"/api/approvals/{approved}/approve", json={})
        await client.post(f"/api/approvals/{rejected}/reject", json={"reason": "no"})
        every = (await client.get("/api/history", params={"agent": agent})).json()["items"]
        assert {i["id"] for i in every} == {approved, rejected}
        only = await client.get("/api/history", params={"agent": agent, "outcome": "rejected"})
        assert [i["id"] for i in only.json()["items"]] == [rejected]
        today = datetime.now(UTC).date().isoformat()
        dated = await client.get(
            "/api/history", params={"agent": agent, "since": today, "until": today}
        )
        assert len(dated.json()["items"]) == 2
        before = await client.get("/api/history", params={"agent": agent, "until": "2000-01-01"})
        assert before.json()["items"] == []
        exported = await client.get("/api/history", params={"agent": agent, "format": "csv"})
        assert exported.headers["content-disposition"].startswith("attachment;")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert {r["status"] for r in rows} == {"approved", "rejected"}
        # A cell an agent wrote cannot become a spreadsheet formula.
        assert any(r["file_path"].startswith("'=") for r in rows)
        as_json = await client.get("/api/history", params={"agent": agent, "format": "json"})
        assert len(as_json.json()) == 2
        wrong = await client.get(
            "/api/history", params={"kind": "questions", "outcome": "approved"}
        )
        assert wrong.status_code == 400


async def test_the_dashboard_has_queues_pending_llm_and_decision_times(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    await send_question(bus_pool)
    async with nexus.client() as client:
        figures = (await client.get("/api/dashboard")).json()
        spec = (await client.get("/api/openapi.json")).json()
        models = (await client.get("/api/models")).json()["items"]
    queues = {q["queue"] for q in figures["queues"]}
    assert {"llm_requests", "approval_requests", "job_requests", "job_results_dlq"} <= queues
    assert set(figures["pending"]) == {"approvals", "questions"}
    assert set(figures["llm"]["today"]) >= {"requests", "prompt_tokens", "cost_usd"}
    assert set(figures["decisions"]) == {"count", "p50_ms", "p90_ms"}
    assert "/api/approvals/{ident}/approve" in spec["paths"]
    assert {"alpha", "beta", "gamma"} <= {m["name"] for m in models}


async def test_a_nul_character_or_the_last_day_of_the_calendar_is_no_server_error(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    # Found by tests/nexus/test_web_fuzz.py: PostgreSQL text cannot hold NUL, so these were
    # 500s; and the day after 9999-12-31 overflowed.
    ident = await send_approval(bus_pool)
    await shows(nexus, "approvals", ident)
    async with nexus.client() as client:
        for path in ("/api/history", "/api/llm/requests"):
            response = await client.get(path, params={"agent": "a\x00b"})
            assert response.status_code == 400
            assert response.json()["detail"] == "agent: Value error, may not contain NUL characters"
        response = await client.post(f"/api/approvals/{ident}/reject", json={"reason": "no\x00"})
        assert response.status_code == 400 and "NUL" in response.json()["detail"]
        response = await client.post(f"/api/approvals/{ident}/approve", json={"user": "\x00"})
        assert response.status_code == 400 and "NUL" in response.json()["detail"]
        last_day = await client.get("/api/history", params={"until": "9999-12-31"})
        assert last_day.status_code == 200, last_day.text
        # The approval is still pending: nothing was decided by the refused calls.
        assert (await client.get(f"/api/approvals/{ident}")).json()["status"] == "pending"


async def test_a_request_nexus_could_not_store_or_read_back_is_dead_lettered_at_once(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: an agent_id too long to index failed
    # the handler on every delivery; a deadline that reads back outside the years 1 to 9999
    # was stored, and every list of pending approvals then failed (the API, the web UI's
    # snapshot, the expiry sweeper).
    long_agent = await send_approval(bus_pool, agent_id="a" * 3000)
    far_deadline = await send_approval(bus_pool, deadline="9999-12-31T23:59:59-14:00")
    fine = await send_approval(bus_pool)
    await shows(nexus, "approvals", fine)

    async def dead() -> list[dict[str, object]]:
        async with bus_pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT message FROM pgmq.q_approval_requests_dlq")
            ).fetchall()
        ours = (long_agent, far_deadline)
        letters = [r[0] for r in rows if isinstance(r[0]["original"], dict)]
        return [letter for letter in letters if letter["original"].get("id") in ours]

    async def both_dead() -> bool:
        return len(await dead()) == 2

    await eventually(both_dead)
    assert all(letter["read_ct"] == 1 for letter in await dead())
    assert {"agent_id", "deadline"} == {
        str(letter["reason"]).split(":")[1].strip() for letter in await dead()
    }
    async with nexus.client() as client:
        pending = await client.get("/api/approvals")
    assert pending.status_code == 200
    assert fine in {item["id"] for item in pending.json()["items"]}


async def test_the_websocket_ignores_frames_that_are_not_pings(nexus: RunningNexus) -> None:
    # Found by tests/nexus/test_web_fuzz.py: JSON that is not an object, or a binary frame,
    # ended the session without a word.
    url = nexus.url.replace("http://", "ws://") + "/ws"
    headers = {"Authorization": f"Bearer {nexus.token}"}
    async with ws_connect(url, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        for frame in ("[1, 2]", '"ping"', "7", "null", "not json", b"\x00\xff"):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
