"""Fuzzing every HTTP endpoint of a running Nexus, its WebSocket and its process's health and
metrics server, over real HTTP.

Hypothesis draws the method, the path parameters (random text, non-UUIDs, UUIDs that do not
exist, real pending ids, `../` and percent-encodings sent exactly as written), query parameters
(random names and values, negative or huge limits, dates at the ends of the calendar), bodies
(random JSON, wrong types, NUL characters, hundreds of kilobytes, bytes that are not UTF-8),
the content type, and the credentials (none, wrong, malformed, the cookie with or without its
anti-forgery header). Requests are written with h11 on a plain socket, so that a path reaches
the server as drawn (an HTTP client would resolve `../` first).

Properties: no answer is a 5xx; a refusal is a 4xx that says why, in words (the API's
`{"detail": "..."}`, or a page or text); the WebSocket refuses a bad handshake, survives any
frame a client sends up to its limit (a larger one closes it with 1009), and keeps answering
pings. Afterwards Nexus still answers /healthz and still carries a real approval from the
queue, through the API, to `approval_responses`.

Run with more examples: HYPOTHESIS_PROFILE=thorough (see tests/conftest.py and docs/nexus.md).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import h11
import httpx
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from helpers import eventually
from nexus_support import RunningNexus, wait_for_message
from singularity.nexus.token import csrf_token
from singularity.nexus.web.auth import COOKIE
from singularity.nexus.web.server import WS_MAX_MESSAGE_BYTES
from singularity.observability.server import Observability, open_observability
from singularity.service_context import ServiceContext
from singularity.shared_queue import Publisher

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
# No shrinking: a failure names each request that went wrong and its answer (the calls are
# independent), and shrinking forty-four calls would take minutes.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)

# -- a request as drawn ---------------------------------------------------------------------


class Call:
    """One request. (A plain class: Hypothesis shows it by its short repr, not field by field,
    which for a huge body would be hundreds of kilobytes.)"""

    def __init__(
        self,
        server: str,  # "nexus" or "metrics"
        method: str,
        target: bytes,  # path and query, as they go on the wire
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes | None,
    ) -> None:
        self.server, self.method, self.target = server, method, target
        self.headers, self.body = headers, body

    def __repr__(self) -> str:
        body = None if self.body is None else self.body[:200]
        return f"{self.method} {self.target[:300]!r} {dict(self.headers)!r} body={body!r}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(port: int, call: Call) -> Answer:
    """One request on a fresh connection, written and read with h11."""
    conn = h11.Connection(h11.CLIENT)
    headers = [(b"host", f"127.0.0.1:{port}".encode()), (b"connection", b"close")]
    headers += list(call.headers)
    if call.body is not None:
        headers.append((b"content-length", str(len(call.body)).encode()))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(
                conn.send(h11.Request(method=call.method, target=call.target, headers=headers))
            )
            if call.body:
                sock.sendall(conn.send(h11.Data(data=call.body)))
            sock.sendall(conn.send(h11.EndOfMessage()))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading all of the body, and closed: allowed
        status, found, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                found = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return Answer(status, found, b"".join(chunks))


# -- what gets drawn ------------------------------------------------------------------------

TEXT = st.text(max_size=30)
# What a path segment may be: encoded text, or written raw (traversal, bad escapes).
RAW_SEGMENTS = st.sampled_from(
    [
        "..",
        "../..",
        "../../etc/passwd",
        "%2e%2e",
        "%2e%2e%2f%2e%2e",
        "..%2f..%2fhealthz",
        "%00",
        "%ff%fe",
        "%",
        "%zz",
        "%25",
        "a/b",
        "a;b",
        "~",
        "",
        ".",
        "approvals",
        "dashboard",
        "app.js",
        "../static/app.js",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "{8c9ad4b8-6f6f-4a5b-9c57-5c8f6f7b0b2a}",
        "8c9ad4b86f6f4a5b9c575c8f6f7b0b2a",
        "urn:uuid:8c9ad4b8-6f6f-4a5b-9c57-5c8f6f7b0b2a",
        "x" * 5000,
    ]
)


def _segment(pending: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        TEXT.map(lambda s: quote(s, safe="")),
        RAW_SEGMENTS,
        st.uuids().map(str),  # no such request
        st.sampled_from(pending),  # a real pending approval or question
    )


# Every route of the web app (FastAPI's and the static files), and of the metrics server.
NEXUS_ROUTES = [
    ("GET", "/healthz"),
    ("GET", "/"),
    ("GET", "/{x}"),
    ("GET", "/api/approvals"),
    ("GET", "/api/approvals/{x}"),
    ("POST", "/api/approvals/{x}/approve"),
    ("POST", "/api/approvals/{x}/reject"),
    ("GET", "/api/questions"),
    ("GET", "/api/questions/{x}"),
    ("POST", "/api/questions/{x}/answer"),
    ("GET", "/api/history"),
    ("GET", "/api/dashboard"),
    ("GET", "/api/llm/requests"),
    ("GET", "/api/models"),
    ("GET", "/api/openapi.json"),
    ("GET", "/static/{x}"),
    ("GET", "/ws"),  # a plain request to the WebSocket's path
    ("GET", "/{x}/{x}/{x}"),
]
METRICS_ROUTES = [("GET", "/healthz"), ("GET", "/livez"), ("GET", "/metrics"), ("GET", "/{x}")]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

NUL_TEXT = st.sampled_from(["\x00", "ok\x00", "\x00" * 10])
ANY_TEXT = st.one_of(TEXT, NUL_TEXT, st.sampled_from(["", "%", "x" * 5000, "'; DROP TABLE x; --"]))
INTEGERS = st.one_of(
    st.integers().map(str),
    st.sampled_from(["-1", "0", "1", "10000", "10001", "9" * 30, "1e3", "1.5", " 7", "0x10"]),
    TEXT,
)
DATES = st.one_of(
    st.dates().map(str),
    st.sampled_from(
        ["0001-01-01", "9999-12-31", "2024-02-30", "2024-13-01", "1700000000", "9" * 20, "-1"]
    ),
    TEXT,
)


def _one_of_or_any(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values) | ANY_TEXT


# The query parameters each route takes, with values at and beyond their edges; any route
# also gets parameters it does not know.
PARAMS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "/api/history": {
        "kind": _one_of_or_any("approvals", "questions"),
        "agent": ANY_TEXT,
        "outcome": _one_of_or_any("approved", "rejected", "expired", "answered"),
        "since": DATES,
        "until": DATES,
        "limit": INTEGERS,
        "format": _one_of_or_any("json", "csv"),
    },
    "/api/llm/requests": {"agent": ANY_TEXT, "outcome": ANY_TEXT, "limit": INTEGERS},
}


@st.composite
def queries(draw: st.DrawFn, template: str, token: str) -> str:
    known = {**PARAMS.get(template, {}), "token": st.just(token) | ANY_TEXT}
    pairs = [(name, draw(values)) for name, values in known.items() if draw(st.booleans())]
    pairs += draw(st.lists(st.tuples(TEXT, ANY_TEXT), max_size=2))
    if draw(st.integers(0, 5)) > 0:
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return draw(st.sampled_from(["", "&&", "=", "a=%zz", "%", "limit=1&limit=-5", "a=b=c"]))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | NUL_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES, NUL_TEXT, st.sampled_from(["", " ", "x" * 4001, "y" * 100_001, "ana"])
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["none", "json", "decision", "decision", "bytes", "huge"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=200))  # often not UTF-8
    if kind == "huge":
        return json.dumps({"reason": "r" * 300_000, "response": "a" * 300_000}).encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    fields = draw(
        st.dictionaries(st.sampled_from(["user", "reason", "response", "extra"]), FIELD_VALUES)
    )
    return json.dumps(fields).encode()


CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "application/vnd.api+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/",
        ";;;",
    ]
)
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)


def _credentials(token: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    csrf = csrf_token(token)
    cookie = f"{COOKIE}={token}"
    valid = st.just([("authorization", f"Bearer {token}")])  # most of what is behind the token
    return (
        valid
        | st.sampled_from(
            [
                [],
                [("authorization", f"Bearer {token}")],
                [("authorization", f"bearer   {token}  ")],
                [("authorization", "Bearer")],
                [("authorization", "Bearer wrong-token")],
                [("authorization", f"Basic {token}")],
                [("authorization", f"Bearer {token}x")],
                [("cookie", cookie)],
                [("cookie", cookie), ("x-csrf-token", csrf)],
                [("cookie", cookie), ("x-csrf-token", "wrong")],
                [("cookie", f"{COOKIE}=wrong"), ("x-csrf-token", csrf)],
                [("cookie", ";;=;" + cookie)],
            ]
        )
        | st.lists(
            st.tuples(st.sampled_from(["authorization", "cookie", "x-csrf-token"]), HEADER_TEXT),
            max_size=2,
        )
    )


@st.composite
def calls(
    draw: st.DrawFn, server: str, route: tuple[str, str], token: str, pending: list[str]
) -> Call:
    method, template = route
    if draw(st.integers(0, 4)) == 0:
        method = draw(st.sampled_from(METHODS))
    path = re.sub(r"\{x\}", lambda _: draw(_segment(pending)), template)
    query = draw(queries(template, token))
    target = path + ("?" + query if query else "")
    # (HTTP trims a header value's outer spaces: h11 will not send them.)
    headers = [(k, v.strip(" \t")) for k, v in draw(_credentials(token))]
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        headers.append(("content-type", content_type))
    if draw(st.booleans()):
        headers.append(("accept", draw(st.sampled_from(["*/*", "text/html", "application/json"]))))
    body = draw(bodies()) if method not in ("GET", "HEAD") or draw(st.integers(0, 5)) == 0 else None
    encoded = tuple((k.encode(), v.encode("latin-1")) for k, v in headers)
    return Call(server, method, target.encode("ascii"), encoded, body)


def rounds(token: str, pending: list[str]) -> st.SearchStrategy[tuple[Call, ...]]:
    """Two calls to every route of both servers: each example reaches every endpoint."""
    every = [("nexus", route) for route in NEXUS_ROUTES]
    every += [("metrics", route) for route in METRICS_ROUTES]
    return st.tuples(*[calls(server, route, token, pending) for server, route in every * 2])


# -- judging an answer ----------------------------------------------------------------------


def problem(call: Call, answer: Answer) -> str | None:
    """What is wrong with the answer to a call, or None."""
    if answer.status >= 500:
        if (
            call.server == "metrics"
            and answer.status == 503
            and call.target.startswith(b"/healthz")
        ):
            return None  # a designed answer: a service is not running or reachable
        return f"{answer.status}: {answer.body[:500]!r}"
    if answer.status < 400 or call.method == "HEAD":
        return None
    if not readable(answer):
        return f"{answer.status} without a message: {answer.headers} {answer.body[:300]!r}"
    return None


def readable(answer: Answer) -> bool:
    """Whether a refusal says why in words: the API's {"detail": text}, a page, or text."""
    kind = answer.headers.get("content-type", "")
    text = answer.body.decode("utf-8", "replace")
    if kind.startswith("application/json"):
        try:
            detail = json.loads(text).get("detail")
        except (ValueError, AttributeError):
            return False
        return isinstance(detail, str) and bool(re.search(r"[A-Za-z]{2}", detail))
    if kind.startswith("text/html"):
        return bool(re.search(r"[A-Za-z]{3}", re.sub(r"<[^>]*>", " ", text)))
    if kind.startswith("text/plain"):
        return bool(re.search(r"[A-Za-z]{3}", text))
    return False


# -- fixtures -------------------------------------------------------------------------------


@dataclass
class Site:
    nexus: RunningNexus
    metrics: Observability
    pending: list[str]

    @property
    def ports(self) -> dict[str, int]:
        assert self.nexus.parts.web is not None and self.metrics.socket is not None
        return {"nexus": self.nexus.parts.web.port, "metrics": self.metrics.socket.getsockname()[1]}


async def _publish(pool: AsyncConnectionPool, queue: str, **fields: Any) -> str:
    ident = str(uuid.uuid4())
    await Publisher(pool).send(queue, {"id": ident, **fields})
    return ident


@pytest.fixture
async def site(nexus: RunningNexus, bus_pool: AsyncConnectionPool) -> AsyncIterator[Site]:
    """Nexus with its web UI, its process's metrics server, and some pending requests."""
    context = ServiceContext(
        nexus.settings.model_copy(update={"singularity_metrics_port": 0}), nexus.context.cluster
    )
    metrics = open_observability(context, [nexus.service])
    assert metrics is not None
    # It serves until Nexus stops (its stop event), as it does beside `singularity up`'s.
    serving = asyncio.create_task(metrics.serve({nexus.task: nexus.service}, nexus.stop))
    pending = [
        *[
            await _publish(bus_pool, "approval_requests", file_path="a.py", diff=DIFF)
            for _ in "abc"
        ],
        *[await _publish(bus_pool, "question_requests", question="Which?") for _ in "ab"],
    ]

    async def shown() -> bool:
        async with nexus.client() as client:
            approvals = (await client.get("/api/approvals")).json()["items"]
            questions = (await client.get("/api/questions")).json()["items"]
        return set(pending) <= {i["id"] for i in approvals + questions}

    await eventually(shown)
    try:
        yield Site(nexus, metrics, pending)
    finally:
        nexus.stop.set()
        await asyncio.wait_for(serving, 30)


# -- the tests ------------------------------------------------------------------------------


async def test_no_request_gets_a_5xx_and_every_refusal_says_why(
    site: Site, bus_pool: AsyncConnectionPool
) -> None:
    ports = site.ports

    @settings(deadline=None, phases=NO_SHRINK)
    @given(rounds(site.nexus.token, site.pending))
    def fuzz(batch: tuple[Call, ...]) -> None:
        problems = []
        for call in batch:
            answer = exchange(ports[call.server], call)
            found = problem(call, answer)
            if found is not None:
                problems.append(f"{call!r}\n  -> {found}")
        assert not problems, "\n".join(problems)

    await asyncio.to_thread(fuzz)
    await still_serving(site, bus_pool)


@dataclass(frozen=True)
class Handshake:
    path: str
    headers: tuple[tuple[str, str], ...]
    admitted: bool  # whether the server must accept it


def _handshakes(token: str, port: int) -> st.SearchStrategy[Handshake]:
    cookie = ("Cookie", f"{COOKIE}={token}")
    good = (("Authorization", f"Bearer {token}"),)
    return st.one_of(
        st.just(Handshake("/ws", good, True)),
        st.just(Handshake("/ws", (cookie, ("Origin", f"http://127.0.0.1:{port}")), True)),
        st.sampled_from(
            [
                Handshake("/ws", (), False),
                Handshake("/ws", (("Authorization", "Bearer nope"),), False),
                Handshake("/ws", (("Authorization", f"Basic {token}"),), False),
                Handshake("/ws", (cookie, ("Origin", "http://evil.example")), False),
                # The cookie only from a page of this very origin (a browser always sends it).
                Handshake("/ws", (cookie,), False),
                Handshake("/ws", (cookie, ("Origin", "null")), False),
                Handshake("/ws", (cookie, ("Origin", f"https://127.0.0.1:{port}")), False),
                Handshake("/ws", (("Cookie", f"{COOKIE}=nope"),), False),
                Handshake(f"/ws?token={token}", (), False),
                Handshake("/ws/x", good, False),
                Handshake("/wss", good, False),
                Handshake("/api/approvals", good, False),
                Handshake("/ws/../ws", (), False),
            ]
        ),
        st.builds(
            lambda v: Handshake("/ws", (("Authorization", v),), False),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).filter(
                lambda v: token not in v
            ),
        ),
    )


FRAMES = st.one_of(
    st.text(max_size=50),
    JSON_VALUES.map(json.dumps),
    st.dictionaries(st.sampled_from(["type", "id", "data"]), JSON_VALUES, max_size=3).map(
        json.dumps
    ),
    st.sampled_from(['{"type": "ping"}', '{"type": "pong"}', '"ping"', "ping", "", "{"]),
    st.just("x" * 500_000),
    st.binary(max_size=100),
)


def _refused_as_too_big(ws: Any, frame: str | bytes) -> None:
    """A message over the limit closes the socket with 1009 (and the next socket works)."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.send(frame)
        for _ in range(50):
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value


def _ping(ws: Any) -> bool:
    """Whether the server answers a ping (other events may come first)."""
    ws.send(json.dumps({"type": "ping"}))
    return any(json.loads(ws.recv(timeout=10)).get("type") == "pong" for _ in range(50))


async def test_the_websocket_refuses_bad_handshakes_and_survives_any_frame(
    site: Site, bus_pool: AsyncConnectionPool
) -> None:
    port = site.ports["nexus"]

    @settings(deadline=None)
    @given(_handshakes(site.nexus.token, port), st.lists(FRAMES, max_size=6))
    def fuzz(handshake: Handshake, frames: list[str | bytes]) -> None:
        uri = f"ws://127.0.0.1:{port}{handshake.path}"
        try:
            ws = ws_connect(uri, additional_headers=list(handshake.headers), open_timeout=10)
        except InvalidStatus as exc:
            assert not handshake.admitted, f"refused: {exc}"
            assert exc.response.status_code < 500, exc
            return
        except InvalidHandshake as exc:
            raise AssertionError(f"a broken handshake answer: {exc}") from exc
        with ws:
            try:
                first = json.loads(ws.recv(timeout=10))
            except ConnectionClosed as exc:
                # Accepted, then closed at once: the server's way of saying "token required".
                assert not handshake.admitted, f"closed: {exc}"
                assert exc.rcvd is not None and exc.rcvd.code == 1008, exc
                return
            assert handshake.admitted, f"a socket it should refuse got {first}"
            assert first["type"] == "snapshot"
            for frame in frames:
                if len(frame) > WS_MAX_MESSAGE_BYTES:
                    _refused_as_too_big(ws, frame)
                    return
                ws.send(frame)
            assert _ping(ws), "the server stopped answering pings"

    await asyncio.to_thread(fuzz)
    await still_serving(site, bus_pool)


async def still_serving(site: Site, bus_pool: AsyncConnectionPool) -> None:
    """After the fuzzing: Nexus runs, answers /healthz, and carries a real approval through."""
    nexus = site.nexus
    assert not nexus.task.done(), "Nexus stopped"
    async with httpx.AsyncClient(timeout=10) as client:
        health = await client.get(f"{nexus.url}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        metrics_url = site.metrics.address
        assert (await client.get(f"{metrics_url}/healthz")).status_code == 200
        assert (await client.get(f"{metrics_url}/metrics")).status_code == 200
    ident = await _publish(
        bus_pool, "approval_requests", file_path="app.py", diff=DIFF, description="after"
    )
    async with nexus.client() as client:

        async def shown() -> bool:
            response = await client.get(f"/api/approvals/{ident}")
            return response.status_code == 200

        await eventually(shown)
        decided = await client.post(f"/api/approvals/{ident}/approve", json={"user": "ana"})
        assert decided.status_code == 200, decided.text
    answer = await wait_for_message(bus_pool, "approval_responses", request_id=ident)
    assert answer["approved"] is True and answer["decided_by"] == "ana"
