"""The FastAPI application: pages, the REST API (with its OpenAPI document), the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib.resources import files
from typing import Annotated, Any, Literal

import structlog
from fastapi import FastAPI, HTTPException, Query, Request, WebSocket, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect, WebSocketState

from singularity.config import Settings
from singularity.errors import NotFound, UsageError
from singularity.nexus.dashboard import dashboard
from singularity.nexus.hitl import AlreadyDecided, Hitl, Kind
from singularity.nexus.hitl_events import HitlEvents
from singularity.nexus.render import iso
from singularity.nexus.sql import QUERIES
from singularity.nexus.web.auth import COOKIE, Access
from singularity.nexus.web.guard import Guard
from singularity.text_safety import js_pattern

__all__ = ["WebContext", "create_app"]

log = structlog.get_logger(__name__)

PAGES = ("approvals", "questions", "history", "dashboard")
_PING_TIMEOUT_S = 60.0


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise ValueError("may not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


@dataclass(frozen=True)
class WebContext:
    """What the web application works with."""

    hitl: Hitl
    events: HitlEvents
    nexus_pool: AsyncConnectionPool
    bus_pool: AsyncConnectionPool
    access: Access
    models: Callable[[], list[dict[str, Any]]]
    version: str
    secure_cookie: bool = False
    # NEXUS_MAX_BODY_BYTES: the service passes the setting; this is its default.
    max_body_bytes: int = Settings.model_fields["nexus_max_body_bytes"].default


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Text | None = Field(None, max_length=100, description="Who decides (shown in history)")
    reason: Text | None = Field(None, max_length=4000, description="Required to reject")


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Text | None = Field(None, max_length=100)
    response: Text = Field(max_length=100_000)


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(
        title="Singularity Nexus",
        version=ctx.version,
        summary="Approvals, questions, history and LLM routing figures of a Singularity platform",
        docs_url=None,  # the interactive pages load scripts from a CDN; the document is enough
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    templates = Jinja2Templates(directory=str(files("singularity.nexus.web") / "templates"))
    static_dir = files("singularity.nexus.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    access = ctx.access
    # The token (API), the body limit and the security headers, before anything else runs.
    app.add_middleware(Guard, access=access, max_body_bytes=ctx.max_body_bytes)
    hidden_chars = js_pattern()  # computed once (a tenth of a second), at start-up

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors()[:3]:
            where = ".".join(str(p) for p in error["loc"] if p not in ("body", "query", "path"))
            problems.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
        return JSONResponse({"detail": "; ".join(problems)}, status.HTTP_400_BAD_REQUEST)

    @app.exception_handler(UsageError)
    async def usage_error(_: Request, exc: UsageError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_400_BAD_REQUEST)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_404_NOT_FOUND)

    @app.exception_handler(AlreadyDecided)
    async def already_decided(_: Request, exc: AlreadyDecided) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)

    # -- pages -----------------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "listening": ctx.events.listening.is_set()}

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return _page(request, "approvals")

    @app.get("/{page}", include_in_schema=False, response_model=None)
    async def page(request: Request, page: str) -> Response:
        if page not in PAGES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no page {page!r}")
        return _page(request, page)

    def _page(request: Request, page: str) -> Response:
        offered = request.query_params.get("token")
        if offered is not None:
            if not access.valid(offered):
                return _denied(request, "The token in the address is not this platform's token.")
            # Signed in: the token leaves the address bar (and the browser's history).
            response = RedirectResponse(f"/{page}", status.HTTP_303_SEE_OTHER)
            response.set_cookie(
                COOKIE,
                access.token,
                httponly=True,
                samesite="strict",
                secure=ctx.secure_cookie,
                max_age=60 * 60 * 24 * 30,
            )
            return response
        if not access.signed_in(request.headers):
            return _denied(request, "This page needs the platform's access token.")
        return templates.TemplateResponse(
            request,
            "page.html",
            {
                "page": page,
                "csrf_token": access.csrf,
                "version": ctx.version,
                "static_url": "/static",
                "hidden_chars": hidden_chars,
            },
            headers={"Cache-Control": "no-store"},
        )

    def _denied(request: Request, reason: str) -> Response:
        return templates.TemplateResponse(
            request,
            "denied.html",
            {"reason": reason, "static_url": "/static", "version": ctx.version},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )

    # -- approvals and questions -------------------------------------------------------------

    @app.get("/api/approvals", tags=["approvals"])
    async def list_approvals() -> dict[str, Any]:
        """Every pending approval, oldest first."""
        return {"items": await ctx.hitl.pending("approval")}

    @app.get("/api/approvals/{ident}", tags=["approvals"])
    async def get_approval(ident: str) -> dict[str, Any]:
        return await ctx.hitl.get("approval", ident)

    @app.post("/api/approvals/{ident}/approve", tags=["approvals"])
    async def approve(ident: str, body: DecisionBody) -> dict[str, Any]:
        """Approve: publishes `{request_id, approved: true}` to the request's reply queue."""
        return await ctx.hitl.approve(ident, user=body.user or "web", reason=body.reason)

    @app.post("/api/approvals/{ident}/reject", tags=["approvals"])
    async def reject(ident: str, body: DecisionBody) -> dict[str, Any]:
        """Reject with a reason: publishes `{request_id, approved: false, reason}`."""
        return await ctx.hitl.reject(ident, user=body.user or "web", reason=body.reason)

    @app.get("/api/questions", tags=["questions"])
    async def list_questions() -> dict[str, Any]:
        """Every pending question, oldest first."""
        return {"items": await ctx.hitl.pending("question")}

    @app.get("/api/questions/{ident}", tags=["questions"])
    async def get_question(ident: str) -> dict[str, Any]:
        return await ctx.hitl.get("question", ident)

    @app.post("/api/questions/{ident}/answer", tags=["questions"])
    async def answer(ident: str, body: AnswerBody) -> dict[str, Any]:
        """Answer: publishes `{request_id, response}` to the request's reply queue."""
        return await ctx.hitl.answer(ident, user=body.user or "web", response=body.response)

    # -- history, dashboard, LLM use --------------------------------------------------------

    @app.get("/api/history", tags=["history"], response_model=None)
    async def history(
        kind: Literal["approvals", "questions"] = "approvals",
        agent: Annotated[Text | None, Query(max_length=200)] = None,
        outcome: Literal["approved", "rejected", "expired", "answered"] | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
        format: Literal["json", "csv"] | None = None,
    ) -> Response | dict[str, Any]:
        """Decided approvals or answered questions, newest first; `format` makes a download."""
        which: Kind = "approval" if kind == "approvals" else "question"
        allowed = (
            ("approved", "rejected", "expired") if which == "approval" else ("answered", "expired")
        )
        if outcome is not None and outcome not in allowed:
            raise UsageError(f"outcome {outcome!r} does not apply to {kind}")
        items = await ctx.hitl.history(
            which,
            agent=agent,
            outcome=outcome,
            since=_day_start(since),
            until=_day_start(until + timedelta(days=1)) if until and until < date.max else None,
            limit=limit,
        )
        if format is None:
            return {"items": items}
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        filename = f"nexus-{kind}-{stamp}.{format}"
        disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if format == "json":
            return Response(
                json.dumps(items, indent=2, ensure_ascii=False),
                media_type="application/json",
                headers=disposition,
            )
        return Response(_csv(which, items), media_type="text/csv", headers=disposition)

    @app.get("/api/dashboard", tags=["dashboard"])
    async def dashboard_figures() -> dict[str, Any]:
        """Queue depths, pending work, LLM use today, time to decision."""
        return await dashboard(ctx.nexus_pool, ctx.bus_pool)

    @app.get("/api/llm/requests", tags=["llm"])
    async def llm_requests(
        agent: Annotated[Text | None, Query(max_length=200)] = None,
        outcome: Annotated[Text | None, Query(max_length=50)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        """The LLM request log, newest first: tier, candidates tried, model, tokens, cost."""
        async with ctx.nexus_pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                QUERIES["llm_history"], {"agent": agent, "outcome": outcome, "limit": limit}
            )
            rows = await cursor.fetchall()
        for row in rows:
            row["received_at"] = iso(row["received_at"])
            row["completed_at"] = iso(row["completed_at"])
        return {"items": rows}

    @app.get("/api/models", tags=["llm"])
    async def models() -> dict[str, Any]:
        """The model registry: credentials, prices and the rules that use each model."""
        return {"items": ctx.models()}

    # -- live updates ----------------------------------------------------------------------

    @app.websocket("/ws")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()  # the guard let only a holder of the token this far
        events = ctx.events.subscribe()  # before the snapshot: nothing falls in between
        try:
            await websocket.send_json(await ctx.events.snapshot())
            await _pump(websocket, events)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            ctx.events.unsubscribe(events)
            if websocket.client_state is WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError):
                    await websocket.close()

    return app


async def _pump(websocket: WebSocket, events: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Send events as they come and answer pings, until either side ends."""

    async def receive() -> None:
        while True:
            message = await asyncio.wait_for(websocket.receive(), _PING_TIMEOUT_S)
            if message["type"] == "websocket.disconnect":
                return
            # Anything but a ping (other JSON, other text, a binary frame) is ignored.
            with contextlib.suppress(ValueError):
                frame = json.loads(message.get("text") or "null")
                if isinstance(frame, dict) and frame.get("type") == "ping":
                    await websocket.send_json({"type": "pong"})

    async def send() -> None:
        while True:
            event = await events.get()
            if event is None:  # the server asks the browser to start over
                return
            await websocket.send_json(event)

    tasks = [asyncio.create_task(receive()), asyncio.create_task(send())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _day_start(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min) if day is not None else None


_CSV_COLUMNS: dict[Kind, tuple[str, ...]] = {
    "approval": (
        "id",
        "request_id",
        "agent_id",
        "file_path",
        "description",
        "status",
        "approved",
        "reason",
        "decided_by",
        "created_at",
        "decided_at",
    ),
    "question": (
        "id",
        "request_id",
        "agent_id",
        "question",
        "status",
        "response",
        "decided_by",
        "created_at",
        "response_at",
    ),
}


def _csv(kind: Kind, items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = _CSV_COLUMNS[kind]
    writer.writerow(columns)
    for item in items:
        writer.writerow([_cell(item.get(c)) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> Any:
    # A cell an agent wrote must not run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
